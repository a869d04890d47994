"""A processing job with InstanceCount=3 whose hosts form a cluster over the job network.

A small stdlib coordinator on algo-1 (as a Dask scheduler or a Spark master would) accepts the
other hosts' registrations by host name over TCP; each host sums its ShardedByS3Key shard of
the input and the coordinator writes the total. The config files are checked as AWS writes them.
Real processing jobs on the emulator's process backend.
"""

from __future__ import annotations

import json
import textwrap

from conftest import ROLE, SKLEARN_IMAGE, put_s3, read_s3, s3_keys, unique, wait_status
from test_processing import _log_lines

CLUSTER = textwrap.dedent(
    """
    import glob, json, os, socket, time
    resources = json.load(open("/opt/ml/config/resourceconfig.json"))
    config = json.load(open("/opt/ml/config/processingjobconfig.json"))
    me, hosts = resources["current_host"], resources["hosts"]
    files = sorted(os.path.basename(p) for p in glob.glob("/opt/ml/processing/input/data/*.txt"))
    total = sum(int(open("/opt/ml/processing/input/data/" + f).read()) for f in files)
    out = "/opt/ml/processing/output"
    mine = {"host": me, "files": files, "sum": total, "resources": resources,
            "cluster": config["ProcessingResources"]["ClusterConfig"], "job": config["ProcessingJobName"]}
    if me == hosts[0]:  # the coordinator: every other host registers with it
        server = socket.create_server(("0.0.0.0", 7077))
        server.settimeout(60)
        workers = {}
        while len(workers) < len(hosts) - 1:
            conn, (address, _) = server.accept()
            worker = json.loads(conn.makefile().readline())
            workers[worker["host"]] = dict(worker, address=address)
            conn.sendall((json.dumps({"rank": len(workers), "coordinator": me}) + "\\n").encode())
            conn.close()
            print("coordinator registered", worker["host"], "from", address, flush=True)
        mine.update(workers=workers, cluster_total=total + sum(w["sum"] for w in workers.values()))
    else:
        for _ in range(600):
            try:
                conn = socket.create_connection((hosts[0], 7077), timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        conn.sendall((json.dumps({"host": me, "sum": total, "files": files}) + "\\n").encode())
        mine["ack"] = json.loads(conn.makefile().readline())
        print(me, "registered with", mine["ack"]["coordinator"], "as rank", mine["ack"]["rank"], flush=True)
    open(os.path.join(out, me + ".json"), "w").write(json.dumps(mine))
    """
)


def _host_lines(emulator, name: str) -> dict[str, list[str]]:
    """Each host's log lines, by host name (its stream is ``<job>/algo-N-<epoch>``)."""
    return {stream.split("/")[1].rsplit("-", 1)[0]: lines for stream, lines in _log_lines(emulator, name).items()}


def test_three_processing_hosts_form_a_cluster_by_host_name(sm, s3, bucket, emulator):
    name = unique("cluster")
    numbers = {f"part-{i:02d}.txt": i * 7 + 1 for i in range(9)}
    for key, value in numbers.items():
        put_s3(s3, bucket, f"{name}/data/{key}", str(value))
    code = put_s3(s3, bucket, f"{name}/code/cluster.py", CLUSTER)
    sm.create_processing_job(
        ProcessingJobName=name, RoleArn=ROLE,
        AppSpecification={"ImageUri": SKLEARN_IMAGE,
                          "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/cluster.py"]},
        ProcessingInputs=[
            {"InputName": "code", "S3Input": {"S3Uri": code, "LocalPath": "/opt/ml/processing/input/code",
                                              "S3DataType": "S3Prefix", "S3InputMode": "File"}},
            {"InputName": "data", "S3Input": {"S3Uri": f"s3://{bucket}/{name}/data/", "S3DataType": "S3Prefix",
                                              "LocalPath": "/opt/ml/processing/input/data", "S3InputMode": "File",
                                              "S3DataDistributionType": "ShardedByS3Key"}}],
        ProcessingOutputConfig={"Outputs": [{"OutputName": "out", "S3Output": {
            "S3Uri": f"s3://{bucket}/{name}/out", "LocalPath": "/opt/ml/processing/output",
            "S3UploadMode": "EndOfJob"}}]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 3, "InstanceType": "ml.m5.xlarge",
                                               "VolumeSizeInGB": 10}},
        StoppingCondition={"MaxRuntimeInSeconds": 300})
    job = wait_status(lambda: sm.describe_processing_job(ProcessingJobName=name), "ProcessingJobStatus")
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    hosts = ["algo-1", "algo-2", "algo-3"]
    assert s3_keys(s3, bucket, f"{name}/out/") == [f"{name}/out/{h}.json" for h in hosts]
    seen = {h: json.loads(read_s3(s3, f"s3://{bucket}/{name}/out/{h}.json")) for h in hosts}
    for host, part in seen.items():  # the config files, as AWS writes them on each host
        assert part["resources"] == {"current_host": host, "hosts": hosts}
        assert part["cluster"] == {"InstanceCount": 3, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 10,
                                   "VolumeKmsKeyId": None}
        assert part["job"] == name
    # ShardedByS3Key: disjoint shards that cover the input
    shards = [seen[h]["files"] for h in hosts]
    assert sorted(f for shard in shards for f in shard) == sorted(numbers) and all(shards)
    coordinator = seen["algo-1"]
    assert sorted(coordinator["workers"]) == ["algo-2", "algo-3"]
    assert coordinator["cluster_total"] == sum(numbers.values())
    addresses = {w["address"] for w in coordinator["workers"].values()}
    assert len(addresses) == 2 and not any(a.startswith("127.") for a in addresses)  # each host its own address
    assert sorted(seen[h]["ack"]["rank"] for h in ("algo-2", "algo-3")) == [1, 2]
    lines = _host_lines(emulator, name)
    assert sum("coordinator registered" in line for line in lines["algo-1"]) == 2
    for host in ("algo-2", "algo-3"):
        assert any(line.startswith(f"{host} registered with algo-1 as rank") for line in lines[host])
