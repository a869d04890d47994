"""Processing jobs through real boto3 against the running emulator: lifecycle, contract, errors."""

from __future__ import annotations

import gzip
import json
import textwrap
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, SKLEARN_IMAGE, aws_error, put_s3, read_s3, s3_keys, unique

ALGORITHM_ERROR = "AlgorithmError: See job logs for more information"
LOG_GROUP = "/aws/sagemaker/ProcessingJobs"


def _s3_input(name: str, uri: str, local: str, **extra) -> dict:
    return {"InputName": name, "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": "S3Prefix",
                                           "S3InputMode": "File", **extra}}


def _request(name: str, bucket: str, s3, script: str, *, inputs=(), outputs=(), count: int = 1,
             **extra) -> dict:
    """A CreateProcessingJob request shaped like the SDK's ScriptProcessor's."""
    code = put_s3(s3, bucket, f"{name}/input/code/job.py", textwrap.dedent(script))
    request = {
        "ProcessingJobName": name,
        "ProcessingInputs": [*inputs, _s3_input("code", code, "/opt/ml/processing/input/code")],
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": count, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE,
                             "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/job.py"]},
        "RoleArn": ROLE,
    }
    if outputs:
        request["ProcessingOutputConfig"] = {"Outputs": [
            {"OutputName": out, "S3Output": {"S3Uri": f"s3://{bucket}/{name}/output/{out}",
                                             "LocalPath": f"/opt/ml/processing/{out}",
                                             "S3UploadMode": "EndOfJob"}}
            for out in outputs]}
    request.update(extra)
    return request


def _wait(sm, name: str, timeout: float = 120.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = sm.describe_processing_job(ProcessingJobName=name)
        if job["ProcessingJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"processing job {name} did not finish in {timeout}s: {job['ProcessingJobStatus']}")


def _log_lines(emulator, name: str) -> dict[str, list[str]]:
    logs = emulator.client("logs")
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    return {s["logStreamName"]: [e["message"] for e in logs.get_log_events(
        logGroupName=LOG_GROUP, logStreamName=s["logStreamName"], startFromHead=True)["events"]]
        for s in streams}


# ---- boto3: lifecycle and the container contract
def test_completed_job_contract_shape_and_logs(sm, s3, bucket, emulator):
    data = put_s3(s3, bucket, "raw/data.csv", "a,b\n1,2\n")
    name = unique("proc")
    script = """
        import json, os, sys
        config = json.load(open('/opt/ml/config/processingjobconfig.json'))
        resources = json.load(open('/opt/ml/config/resourceconfig.json'))
        seen = {'argv': sys.argv[1:], 'stage': os.environ.get('STAGE'), 'name': config['ProcessingJobName'],
                'resources': resources, 'inputs': sorted(os.listdir('/opt/ml/processing/input')),
                'sklearn_version': os.environ.get('SAGEMAKER_SKLEARN_VERSION')}
        os.makedirs('/opt/ml/processing/out/nested', exist_ok=True)
        open('/opt/ml/processing/out/seen.json', 'w').write(json.dumps(seen))
        open('/opt/ml/processing/out/nested/n.txt', 'w').write('deep')
        open('/opt/ml/output/message', 'w').write('processed 1 row')
        print('hello from the processing container')
    """
    request = _request(name, bucket, s3, script, inputs=[_s3_input("raw", data, "/opt/ml/processing/input")],
                       outputs=["out"], Environment={"STAGE": "test"})
    request["AppSpecification"]["ContainerArguments"] = ["--rows", "1"]
    arn = sm.create_processing_job(**request)["ProcessingJobArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{name.lower()}"
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ExitMessage"] == "processed 1 row"
    assert "FailureReason" not in job
    assert job["CreationTime"] <= job["ProcessingStartTime"] <= job["ProcessingEndTime"]
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert job["Environment"] == {"STAGE": "test"}
    assert job["ProcessingInputs"][0]["AppManaged"] is False
    assert job["ProcessingInputs"][0]["S3Input"]["S3DataDistributionType"] == "FullyReplicated"
    assert job["ProcessingInputs"][0]["S3Input"]["S3CompressionType"] == "None"
    assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3UploadMode"] == "EndOfJob"

    seen = json.loads(read_s3(s3, f"s3://{bucket}/{name}/output/out/seen.json"))
    assert seen["argv"] == ["--rows", "1"]
    assert seen["stage"] == "test"
    assert seen["name"] == name
    assert seen["resources"] == {"current_host": "algo-1", "hosts": ["algo-1"]}
    assert seen["inputs"] == ["code", "data.csv"]
    assert seen["sklearn_version"] == "1.2-1"
    assert read_s3(s3, f"s3://{bucket}/{name}/output/out/nested/n.txt") == b"deep"

    streams = _log_lines(emulator, name)
    assert len(streams) == 1
    stream, lines = next(iter(streams.items()))
    assert stream.startswith(f"{name}/algo-1-") and stream.rsplit("-", 1)[1].isdigit()
    assert "hello from the processing container" in lines


def test_failing_container_fails_the_job_like_aws(sm, s3, bucket):
    name = unique("pfail")
    script = """
        import os
        os.makedirs('/opt/ml/processing/out', exist_ok=True)
        open('/opt/ml/processing/out/partial.txt', 'w').write('x')
        open('/opt/ml/output/message', 'w').write('bad input: 3 columns, expected 9')
        raise ValueError('boom')
    """
    sm.create_processing_job(**_request(name, bucket, s3, script, outputs=["out"]))
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"] == ALGORITHM_ERROR
    assert job["ExitMessage"] == "bad input: 3 columns, expected 9"
    assert s3_keys(s3, bucket, f"{name}/output/") == []  # nothing is uploaded for a failed job
    summary = sm.list_processing_jobs(NameContains=name)["ProcessingJobSummaries"][0]
    assert summary["FailureReason"] == ALGORITHM_ERROR
    assert summary["ExitMessage"] == "bad input: 3 columns, expected 9"


def test_sharded_input_across_two_hosts(sm, s3, bucket, emulator):
    prefix = unique("shards")
    for i in range(4):
        put_s3(s3, bucket, f"{prefix}/part-{i}.csv", f"{i}\n")
    name = unique("shard")
    script = """
        import json, os
        host = json.load(open('/opt/ml/config/resourceconfig.json'))['current_host']
        view = {'sharded': sorted(os.listdir('/opt/ml/processing/sharded')),
                'replicated': sorted(os.listdir('/opt/ml/processing/replicated'))}
        os.makedirs('/opt/ml/processing/out', exist_ok=True)
        open(f'/opt/ml/processing/out/{host}.json', 'w').write(json.dumps(view))
        print('host', host, 'sees', view['sharded'])
    """
    uri = f"s3://{bucket}/{prefix}/"
    inputs = [_s3_input("sharded", uri, "/opt/ml/processing/sharded", S3DataDistributionType="ShardedByS3Key"),
              _s3_input("replicated", uri, "/opt/ml/processing/replicated")]
    sm.create_processing_job(**_request(name, bucket, s3, script, inputs=inputs, outputs=["out"], count=2))
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    views = {host: json.loads(read_s3(s3, f"s3://{bucket}/{name}/output/out/{host}.json"))
             for host in ("algo-1", "algo-2")}
    everything = [f"part-{i}.csv" for i in range(4)]
    assert all(len(v["sharded"]) == 2 for v in views.values())
    assert sorted(views["algo-1"]["sharded"] + views["algo-2"]["sharded"]) == everything
    assert all(v["replicated"] == everything for v in views.values())
    streams = _log_lines(emulator, name)
    assert sorted(s.split("/")[1].rsplit("-", 1)[0] for s in streams) == ["algo-1", "algo-2"]


def test_manifest_and_gzip_pipe_inputs_are_staged_as_files(sm, s3, bucket, emulator):
    prefix = unique("inmodes")
    put_s3(s3, bucket, f"{prefix}/m/a.txt", "A")
    put_s3(s3, bucket, f"{prefix}/m/b.txt", "B")
    put_s3(s3, bucket, f"{prefix}/m/c.txt", "C")
    manifest = put_s3(s3, bucket, f"{prefix}/list.manifest",
                    json.dumps([{"prefix": f"s3://{bucket}/{prefix}/m/"}, "a.txt", "c.txt"]))
    packed = put_s3(s3, bucket, f"{prefix}/z/rows.csv.gz", gzip.compress(b"1,2\n3,4\n"))
    name = unique("modes")
    script = """
        import json, os
        out = {'manifest': sorted(os.listdir('/opt/ml/processing/manifest')),
               'gz': open('/opt/ml/processing/gz/rows.csv').read()}
        os.makedirs('/opt/ml/processing/out', exist_ok=True)
        open('/opt/ml/processing/out/seen.json', 'w').write(json.dumps(out))
    """
    manifest_input = _s3_input("listed", manifest, "/opt/ml/processing/manifest")
    manifest_input["S3Input"]["S3DataType"] = "ManifestFile"
    gz_input = _s3_input("packed", packed, "/opt/ml/processing/gz", S3CompressionType="Gzip")
    gz_input["S3Input"]["S3InputMode"] = "Pipe"
    sm.create_processing_job(**_request(name, bucket, s3, script, inputs=[manifest_input, gz_input],
                                        outputs=["out"]))
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert json.loads(read_s3(s3, f"s3://{bucket}/{name}/output/out/seen.json")) == {
        "manifest": ["a.txt", "c.txt"], "gz": "1,2\n3,4\n"}
    lines = next(iter(_log_lines(emulator, name).values()))
    assert any("'packed' asks for Pipe mode" in line for line in lines)


def test_entrypoint_less_framework_image_runs_its_arguments(sm, s3, bucket):
    name = unique("noentry")
    request = _request(name, bucket, s3, "open('/opt/ml/processing/out/x.txt', 'w').write('args ran')\n",
                       outputs=["out"])
    request["AppSpecification"] = {"ImageUri": SKLEARN_IMAGE,
                                   "ContainerArguments": ["python3", "/opt/ml/processing/input/code/job.py"]}
    sm.create_processing_job(**request)
    assert _wait(sm, name)["ProcessingJobStatus"] == "Completed"
    assert read_s3(s3, f"s3://{bucket}/{name}/output/out/x.txt") == b"args ran"
    # neither entrypoint nor arguments: the image's default command (bash, no input) ends at once
    bare = unique("bare")
    request = _request(bare, bucket, s3, "raise SystemExit(1)\n")
    request["AppSpecification"] = {"ImageUri": SKLEARN_IMAGE}
    sm.create_processing_job(**request)
    assert _wait(sm, bare)["ProcessingJobStatus"] == "Completed"


def test_network_isolation_has_no_network(sm, s3, bucket, emulator):
    script = f"""
        import os, socket
        try:
            socket.create_connection(('127.0.0.1', {emulator.port}), timeout=2); result = 'connected'
        except OSError:
            result = 'no network'
        open('/opt/ml/output/message', 'w').write(result)
    """
    results = {}
    for isolated in (True, False):
        name = unique("pnet")
        sm.create_processing_job(**_request(name, bucket, s3, script,
                                            NetworkConfig={"EnableNetworkIsolation": isolated}))
        results[isolated] = _wait(sm, name)["ExitMessage"]
    assert results == {True: "no network", False: "connected"}


def test_unmapped_image_fails_with_the_setting_named(sm, s3, bucket):
    name = unique("pimg")
    request = _request(name, bucket, s3, "print('never')\n")
    request["AppSpecification"]["ImageUri"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:latest"
    sm.create_processing_job(**request)
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Failed"
    assert "[tool.smlocal.images]" in job["FailureReason"]


def test_missing_input_data_fails_the_job(sm, s3, bucket):
    name = unique("pnodata")
    inputs = [_s3_input("raw", f"s3://{bucket}/absent/", "/opt/ml/processing/input")]
    sm.create_processing_job(**_request(name, bucket, s3, "print('never')\n", inputs=inputs))
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: No S3 objects found under S3 URL")


def test_one_failing_host_fails_the_job_and_ends_the_others(sm, s3, bucket):
    name = unique("phosts")
    script = """
        import json, sys, time
        host = json.load(open('/opt/ml/config/resourceconfig.json'))['current_host']
        if host == 'algo-2':
            sys.exit(3)
        time.sleep(600)  # algo-1 would hold the job for ten minutes if the hosts ran one by one
    """
    sm.create_processing_job(**_request(name, bucket, s3, script, count=2))
    job = _wait(sm, name, timeout=60)
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"] == ALGORITHM_ERROR


def test_recover_fails_jobs_a_dead_server_left_running(sm, emulator):
    name = unique("porphan")
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{name}"
    emulator.store.put("ProcessingJob", name, {
        "ProcessingJobName": name, "ProcessingJobArn": arn, "ProcessingJobStatus": "InProgress",
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE}, "RoleArn": ROLE,
        "CreationTime": time.time(), "LastModifiedTime": time.time()})
    assert emulator.processing.recover() >= 1
    job = sm.describe_processing_job(ProcessingJobName=name)
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("InternalServerError: the smlocal server stopped")
    assert "ProcessingEndTime" in job


# ---- boto3: errors, stopping, listing
def test_duplicate_name_is_resource_in_use(sm, s3, bucket):
    name = unique("pdup")
    request = _request(name, bucket, s3, "print('x')\n")
    sm.create_processing_job(**request)
    with pytest.raises(ClientError) as exc:
        sm.create_processing_job(**request)
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:processing-job/{name.lower()}"
    assert aws_error(exc) == ("ResourceInUse", "Job name must be unique within an AWS account and region, "
                                            f"and a job with this name already exists ({arn})")
    _wait(sm, name)


def test_describe_and_stop_unknown_job(sm):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:processing-job/no-such-job"
    for call in (sm.describe_processing_job, sm.stop_processing_job):
        with pytest.raises(ClientError) as exc:
            call(ProcessingJobName="no-such-job")
        assert aws_error(exc) == ("ValidationException", f"Could not find processing job '{arn}'.")


@pytest.mark.parametrize("change, fragment", [
    (lambda r: r["ProcessingInputs"][0]["S3Input"].update(LocalPath="/tmp/data"),
     "LocalPath /tmp/data is not valid. LocalPath must begin with /opt/ml/processing/"),
    (lambda r: r["ProcessingOutputConfig"]["Outputs"][0]["S3Output"].update(LocalPath="/opt/ml/model"),
     "LocalPath /opt/ml/model is not valid"),
    (lambda r: r["ProcessingInputs"][0]["S3Input"].update(LocalPath="/opt/ml/processing/input/code"),
     "is already used by ProcessingInput"),
    (lambda r: r["ProcessingInputs"][0]["S3Input"].update(S3CompressionType="Gzip"),
     "Gzip can only be used when Pipe mode"),
    (lambda r: r["ProcessingInputs"][0].update(InputName="code"), "Duplicate InputName: code"),
])
def test_invalid_requests_are_validation_exceptions(sm, s3, bucket, change, fragment):
    name = unique("pbad")
    request = _request(name, bucket, s3, "print('x')\n", outputs=["out"],
                       inputs=[_s3_input("raw", f"s3://{bucket}/raw/", "/opt/ml/processing/input")])
    change(request)
    with pytest.raises(ClientError) as exc:
        sm.create_processing_job(**request)
    code, message = aws_error(exc)
    assert code == "ValidationException"
    assert fragment in message
    with pytest.raises(ClientError):  # nothing was recorded
        sm.describe_processing_job(ProcessingJobName=name)


def test_stop_ends_a_sleeping_job(sm, s3, bucket):
    name = unique("pstop")
    script = """
        import os, time
        os.makedirs('/opt/ml/processing/out', exist_ok=True)
        open('/opt/ml/processing/out/partial', 'w').write('p')
        print('sleeping', flush=True)
        time.sleep(600)
    """
    sm.create_processing_job(**_request(name, bucket, s3, script, outputs=["out"]))
    deadline = time.time() + 30
    while "ProcessingStartTime" not in sm.describe_processing_job(ProcessingJobName=name):
        assert time.time() < deadline, "the job never started"
        time.sleep(0.05)
    time.sleep(0.5)
    sm.stop_processing_job(ProcessingJobName=name)
    assert sm.describe_processing_job(ProcessingJobName=name)["ProcessingJobStatus"] in ("Stopping", "Stopped")
    job = _wait(sm, name, timeout=30)
    assert job["ProcessingJobStatus"] == "Stopped"
    assert "FailureReason" not in job
    assert s3_keys(s3, bucket, f"{name}/output/") == []
    with pytest.raises(ClientError) as exc:
        sm.stop_processing_job(ProcessingJobName=name)
    assert aws_error(exc) == ("ValidationException",
                           "The request was rejected because the processing job is in status Stopped.")


def test_max_runtime_stops_the_job(sm, s3, bucket):
    name = unique("pmaxrt")
    sm.create_processing_job(**_request(name, bucket, s3, "import time\ntime.sleep(600)\n",
                                        StoppingCondition={"MaxRuntimeInSeconds": 2}))
    job = _wait(sm, name, timeout=60)
    assert job["ProcessingJobStatus"] == "Stopped"
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 2}


def test_list_processing_jobs_filters_sorts_and_pages(sm, s3, bucket):
    tag = unique("plst")
    names = [f"{tag}-{i}" for i in range(3)]
    for name in names:
        sm.create_processing_job(**_request(name, bucket, s3, "print('x')\n"))
    for name in names:
        _wait(sm, name)
    found = sm.list_processing_jobs(NameContains=tag, SortBy="Name", SortOrder="Ascending")
    assert [s["ProcessingJobName"] for s in found["ProcessingJobSummaries"]] == names
    assert set(found["ProcessingJobSummaries"][0]) == {
        "ProcessingJobName", "ProcessingJobArn", "CreationTime", "ProcessingEndTime", "LastModifiedTime",
        "ProcessingJobStatus"}
    page = sm.list_processing_jobs(NameContains=tag, MaxResults=2)
    assert len(page["ProcessingJobSummaries"]) == 2 and "NextToken" in page
    rest = sm.list_processing_jobs(NameContains=tag, MaxResults=2, NextToken=page["NextToken"])
    assert len(rest["ProcessingJobSummaries"]) == 1 and "NextToken" not in rest
    assert sm.list_processing_jobs(NameContains=tag, StatusEquals="Failed")["ProcessingJobSummaries"] == []

