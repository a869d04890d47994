"""Training jobs with several hosts: a log stream per host, and channels given to instance groups.

Real script-mode training jobs on the emulator's process backend (each host a sandboxed process on
the job network); their logs are read back through CloudWatch Logs (DescribeLogStreams +
GetLogEvents) and ``smlocal logs``, their staged files through what each host uploads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from conftest import aws_error, put_s3, read_s3, script_job, unique, upload_sourcedir, wait_for

LOG_GROUP = "/aws/sagemaker/TrainingJobs"

# each host prints lines of its own; algo-2 the metric line
TALKER = """
import os
me = os.environ["SM_CURRENT_HOST"]
for i in range(3):
    print(f"line {i} from {me}", flush=True)
if me == "algo-2":
    print("train-loss=0.25", flush=True)
"""

# each host writes what it sees under /opt/ml/input/data/ and its instance group into model/<host>.json
LISTER = """
import json, os
root = "/opt/ml/input/data"
me = os.environ["SM_CURRENT_HOST"]
seen = {channel: sorted(os.listdir(os.path.join(root, channel))) for channel in sorted(os.listdir(root))}
resources = json.load(open("/opt/ml/input/config/resourceconfig.json"))
with open(os.path.join(os.environ["SM_MODEL_DIR"], me + ".json"), "w") as out:
    json.dump({"seen": seen, "group": resources["current_group_name"]}, out)
"""


def _streams(emulator, name: str) -> dict[str, list[str]]:
    """Each log stream of training job ``name`` (by its host) and its lines."""
    logs = emulator.client("logs")
    found = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    return {s["logStreamName"]: [e["message"] for e in logs.get_log_events(
        logGroupName=LOG_GROUP, logStreamName=s["logStreamName"], startFromHead=True)["events"]] for s in found}


def test_each_training_host_logs_to_its_own_stream(sm, s3, bucket, emulator):
    name = unique("hostlogs")
    code = upload_sourcedir(s3, bucket, {"train.py": TALKER})
    request = script_job(name, bucket, code)
    request["ResourceConfig"]["InstanceCount"] = 2
    request["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "train:loss", "Regex": r"train-loss=([0-9.]+)"}]
    sm.create_training_job(**request)
    job = wait_for(sm, name, timeout=180)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")

    streams = _streams(emulator, name)
    by_host = {stream.split("/", 1)[1].rsplit("-", 1)[0]: lines for stream, lines in streams.items()}
    assert sorted(by_host) == ["algo-1", "algo-2"], sorted(streams)
    for stream in streams:  # <job>/algo-N-<epoch seconds>, as SageMaker names them
        epoch = stream.rsplit("-", 1)[1]
        assert epoch.isdigit() and len(epoch) == 10, stream
    for host, other in (("algo-1", "algo-2"), ("algo-2", "algo-1")):
        mine = [line for line in by_host[host] if line.startswith("line ")]
        assert mine == [f"line {i} from {host}" for i in range(3)], by_host[host]
        assert not any(other in line for line in by_host[host] if line.startswith("line "))
    # the metric regexes still read every host's lines
    assert [(m["MetricName"], m["Value"]) for m in job["FinalMetricDataList"]] == [("train:loss", 0.25)]

    # `smlocal logs JOB` shows both hosts' streams
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_", "SAGEMAKER_"))
           and k != "PYTHONPATH"}
    env.update(SMLOCAL_AUTODETECT="0", SMLOCAL_ENDPOINT=emulator.endpoint)
    shown = subprocess.run([sys.executable, "-m", "smlocal.cli", "logs", name], capture_output=True, text=True,
                           env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert all(f"line {i} from {h}" in shown.stdout for i in range(3) for h in ("algo-1", "algo-2"))


def _hetero_request(name: str, bucket: str, code: str, data: str, extra: str) -> dict:
    request = script_job(name, bucket, code, channels={"train": data, "extra": extra})
    request["ResourceConfig"] = {"VolumeSizeInGB": 30, "InstanceGroups": [
        {"InstanceGroupName": "data-group", "InstanceType": "ml.c5.xlarge", "InstanceCount": 1},
        {"InstanceGroupName": "dnn-group", "InstanceType": "ml.m5.xlarge", "InstanceCount": 2}]}
    return request


def test_a_channel_named_for_an_instance_group_is_staged_only_on_its_hosts(sm, s3, bucket):
    name = unique("hetero")
    code = upload_sourcedir(s3, bucket, {"train.py": LISTER})
    for i in range(4):
        put_s3(s3, bucket, f"{name}/train/part-{i}.csv", f"{i}\n")
    put_s3(s3, bucket, f"{name}/extra/config.txt", "x")
    request = _hetero_request(name, bucket, code, f"s3://{bucket}/{name}/train/", f"s3://{bucket}/{name}/extra/")
    train, extra = request["InputDataConfig"]
    train["DataSource"]["S3DataSource"]["InstanceGroupNames"] = ["dnn-group"]
    train["DataSource"]["S3DataSource"]["S3DataDistributionType"] = "ShardedByS3Key"
    extra["DataSource"]["S3DataSource"]["InstanceGroupNames"] = ["data-group", "dnn-group"]
    sm.create_training_job(**request)
    job = wait_for(sm, name, timeout=180)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["InstanceGroupNames"] == ["dnn-group"]

    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(read_s3(s3, job["ModelArtifacts"]["S3ModelArtifacts"]))) as tar:
        seen = {m.name[:-len(".json")]: json.load(tar.extractfile(m)) for m in tar.getmembers() if m.isfile()}
    assert {host: report["group"] for host, report in seen.items()} == {
        "algo-1": "data-group", "algo-2": "dnn-group", "algo-3": "dnn-group"}
    # data-group's host has no file of the train channel; every host has the channel named for both groups
    assert seen["algo-1"]["seen"].get("train", []) == []
    for host in ("algo-1", "algo-2", "algo-3"):
        assert seen[host]["seen"]["extra"] == ["config.txt"]
    # ShardedByS3Key is dealt among the hosts that get the channel: dnn-group's two hosts
    shards = [seen[h]["seen"]["train"] for h in ("algo-2", "algo-3")]
    assert all(shards) and sorted(shards[0] + shards[1]) == [f"part-{i}.csv" for i in range(4)]


@pytest.mark.parametrize("case", ["mixed", "unknown", "both-shapes"])
def test_instance_group_names_that_cannot_apply_are_refused(sm, s3, bucket, case):
    name = unique("hetero-bad")
    request = _hetero_request(name, bucket, f"s3://{bucket}/code/sourcedir.tar.gz",
                              f"s3://{bucket}/{name}/train/", f"s3://{bucket}/{name}/extra/")
    train, extra = request["InputDataConfig"]
    train["DataSource"]["S3DataSource"]["InstanceGroupNames"] = ["dnn-group"]
    if case == "unknown":
        extra["DataSource"]["S3DataSource"]["InstanceGroupNames"] = ["no-such-group"]
    if case == "both-shapes":
        extra["DataSource"]["S3DataSource"]["InstanceGroupNames"] = ["dnn-group"]
        request["ResourceConfig"].update(InstanceType="ml.m5.xlarge", InstanceCount=1)
    with pytest.raises(ClientError) as caught:
        sm.create_training_job(**request)
    code, message = aws_error(caught)
    assert code == "ValidationException"
    if case == "mixed":
        assert message == "Some channels have assigned instance groups: [train] while others not: [extra]"
    elif case == "both-shapes":
        assert message == "InstanceType or InstanceCount cannot be specified with InstanceGroups"
    else:
        assert "no-such-group" in message and "extra" in message
    with pytest.raises(ClientError) as missing:  # nothing was created
        sm.describe_training_job(TrainingJobName=name)
    assert aws_error(missing)[0] == "ValidationException"
