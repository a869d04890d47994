"""Training jobs through real boto3 against the running emulator: lifecycle, errors, contract."""

from __future__ import annotations

import io
import json
import tarfile
import time

import pytest
from botocore.exceptions import ClientError

from conftest import aws_error, script_job, unique, upload_sourcedir, wait_for


def _model_files(s3, uri: str) -> dict[str, bytes]:
    bucket, key = uri[5:].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


def test_completed_job_has_aws_shape(sm, s3, bucket, emulator):
    s3.put_object(Bucket=bucket, Key="data/train/part1.csv", Body=b"1,2\n3,4\n")
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import os\n"
        "files = sorted(os.listdir(os.environ['SM_CHANNEL_TRAIN']))\n"
        "print('seen', files)\n"
        "print('loss=0.25')\n"
        "open(os.path.join(os.environ['SM_MODEL_DIR'], 'model.txt'), 'w').write('trained')\n"
        "os.makedirs('/opt/ml/output/data', exist_ok=True)\n"
        "open('/opt/ml/output/data/report.txt', 'w').write('extra')\n"
    )})
    name = unique("ok")
    request = script_job(name, bucket, code, channels={"train": f"s3://{bucket}/data/train"})
    request["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]
    arn = sm.create_training_job(**request)["TrainingJobArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name.lower()}"
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["SecondaryStatus"] == "Completed"
    statuses = [t["Status"] for t in job["SecondaryStatusTransitions"]]
    assert statuses == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert all("EndTime" in t for t in job["SecondaryStatusTransitions"])
    assert job["TrainingStartTime"] <= job["TrainingEndTime"]
    assert job["BillableTimeInSeconds"] >= 1
    assert job["FinalMetricDataList"][0]["MetricName"] == "loss"
    assert job["FinalMetricDataList"][0]["Value"] == pytest.approx(0.25)
    model_uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert model_uri == f"s3://{bucket}/output/{name}/output/model.tar.gz"
    assert _model_files(s3, model_uri) == {"model.txt": b"trained"}
    assert _model_files(s3, f"s3://{bucket}/output/{name}/output/output.tar.gz") == {"report.txt": b"extra"}
    # logs in CloudWatch under the AWS group and stream naming
    logs = emulator.client("logs")
    streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                        logStreamNamePrefix=f"{name}/")["logStreams"]
    assert len(streams) == 1 and streams[0]["logStreamName"].startswith(f"{name}/algo-1-")
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                 logStreamName=streams[0]["logStreamName"], startFromHead=True)["events"]
    assert "seen ['part1.csv']" in [e["message"] for e in events]


def test_list_training_jobs_filters_and_sorts(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": "print('x')\n"})
    tag = unique("lst")
    names = [f"{tag}-{i}" for i in range(3)]
    for name in names:
        sm.create_training_job(**script_job(name, bucket, code))
    for name in names:
        wait_for(sm, name)
    found = sm.list_training_jobs(NameContains=tag, SortBy="Name", SortOrder="Ascending")["TrainingJobSummaries"]
    assert [s["TrainingJobName"] for s in found] == names
    page = sm.list_training_jobs(NameContains=tag, MaxResults=2)
    assert len(page["TrainingJobSummaries"]) == 2 and "NextToken" in page
    rest = sm.list_training_jobs(NameContains=tag, MaxResults=2, NextToken=page["NextToken"])
    assert len(rest["TrainingJobSummaries"]) == 1 and "NextToken" not in rest
    assert sm.list_training_jobs(NameContains=tag, StatusEquals="Failed")["TrainingJobSummaries"] == []


@pytest.mark.parametrize(
    "change, fragment, count",
    [
        (lambda r: r.update(TrainingJobName="bad_name!"), "at 'trainingJobName' failed to satisfy constraint", 1),
        (lambda r: r["ResourceConfig"].update(InstanceType="local"), "at 'resourceConfig.instanceType'", 1),
        # too long AND (being 64 characters) off the name pattern: AWS reports both
        (lambda r: r.update(TrainingJobName="x" * 64), "length less than or equal to 63", 2),
    ],
)
def test_invalid_requests_are_validation_exceptions(sm, bucket, change, fragment, count):
    request = script_job(unique("bad"), bucket, "s3://b/c.tar.gz")
    change(request)
    with pytest.raises(ClientError) as exc:
        sm.create_training_job(**request)
    code, message = aws_error(exc)
    assert code == "ValidationException"
    assert fragment in message
    assert message.startswith(f"{count} validation error{'s' if count > 1 else ''} detected: ")


def test_missing_role_is_rejected_by_the_service(emulator, bucket):
    """botocore validates required members client-side; a raw request reaches our validation."""
    import urllib.request

    request = script_job(unique("norole"), bucket, "s3://b/c.tar.gz")
    del request["RoleArn"]
    req = urllib.request.Request(
        emulator.endpoint, data=json.dumps(request).encode(), method="POST",
        headers={"X-Amz-Target": "SageMaker.CreateTrainingJob", "Content-Type": "application/x-amz-json-1.1"},
    )
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req)
    body = json.loads(exc.value.read())
    assert exc.value.code == 400
    assert body["__type"] == "ValidationException"
    assert "Value null at 'roleArn' failed to satisfy constraint: Member must not be null" in body["message"]


def test_duplicate_name_is_resource_in_use(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": "print('x')\n"})
    name = unique("dup")
    sm.create_training_job(**script_job(name, bucket, code))
    with pytest.raises(ClientError) as exc:
        sm.create_training_job(**script_job(name, bucket, code))
    assert aws_error(exc)[0] == "ResourceInUse"
    assert "a training job with this name already exists" in aws_error(exc)[1]
    wait_for(sm, name)


def test_describe_and_stop_unknown_job(sm):
    for call in (sm.describe_training_job, sm.stop_training_job):
        with pytest.raises(ClientError) as exc:
            call(TrainingJobName="no-such-job")
        assert aws_error(exc) == ("ValidationException", "Requested resource not found.")


def test_unknown_operation_is_a_clear_error(sm):
    with pytest.raises(ClientError) as exc:
        sm.describe_compilation_job(CompilationJobName="x")
    code, message = aws_error(exc)
    assert code == "NotImplementedBySmlocal"
    assert "DescribeCompilationJob is not implemented by smlocal" in message


def test_stop_ends_a_sleeping_job(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import os, time\nopen(os.environ['SM_MODEL_DIR'] + '/partial', 'w').write('p')\n"
        "print('sleeping', flush=True)\ntime.sleep(600)\n")})
    name = unique("stop")
    sm.create_training_job(**script_job(name, bucket, code))
    _wait_secondary(sm, name, "Training")
    time.sleep(0.5)
    started = time.time()
    sm.stop_training_job(TrainingJobName=name)
    job = wait_for(sm, name, timeout=30)
    assert time.time() - started < 20
    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "Stopped"
    assert [t["Status"] for t in job["SecondaryStatusTransitions"]][-3:] == ["Stopping", "Uploading", "Stopped"]
    with pytest.raises(ClientError) as exc:
        sm.stop_training_job(TrainingJobName=name)
    assert aws_error(exc)[0] == "ValidationException"


def test_max_runtime_stops_the_job(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": "import time\ntime.sleep(600)\n"})
    name = unique("maxrt")
    sm.create_training_job(**script_job(name, bucket, code, StoppingCondition={"MaxRuntimeInSeconds": 2}))
    job = wait_for(sm, name, timeout=60)
    assert job["TrainingJobStatus"] == "Stopped"
    assert job["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert job["SecondaryStatusTransitions"][-1]["StatusMessage"] == \
        "Training job runtime exceeded MaxRuntimeInSeconds provided"


def test_a_job_without_resource_config_runs_to_its_end(sm, s3, bucket):
    """ResourceConfig is optional in the botocore model: such a job runs on one host and ends."""
    code = upload_sourcedir(s3, bucket, {"train.py": "print('trained')\n"})
    name = unique("noresources")
    request = script_job(name, bucket, code)
    del request["ResourceConfig"]
    sm.create_training_job(**request)
    job = wait_for(sm, name)
    assert (job["TrainingJobStatus"], job.get("FailureReason")) == ("Completed", None)
    assert job["BillableTimeInSeconds"] == job["TrainingTimeInSeconds"] >= 1


def test_script_error_becomes_failure_reason(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": "raise ValueError('boom: bad data')\n"})
    name = unique("fail")
    sm.create_training_job(**script_job(name, bucket, code))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["SecondaryStatus"] == "Failed"
    assert job["FailureReason"].startswith("AlgorithmError: ")
    assert "ValueError: boom: bad data" in job["FailureReason"]
    assert "ModelArtifacts" not in job


def test_failure_file_is_the_failure_reason(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import sys\nopen('/opt/ml/output/failure', 'w').write('Data has 3 columns, expected 9')\nsys.exit(3)\n")})
    name = unique("ffile")
    sm.create_training_job(**script_job(name, bucket, code))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == "Data has 3 columns, expected 9"


def test_concurrent_jobs_have_private_opt_ml(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import os, sys, time\n"
        "path = '/opt/ml/model/who.txt'\n"
        "open(path, 'w').write(os.environ['TRAINING_TAG'])\n"
        "time.sleep(1.5)\n"
        "assert open(path).read() == os.environ['TRAINING_TAG'], 'another job wrote my /opt/ml'\n"
    )})
    names = [unique("conc"), unique("conc")]
    for i, name in enumerate(names):
        sm.create_training_job(**script_job(name, bucket, code, Environment={"TRAINING_TAG": f"job-{i}"}))
    for i, name in enumerate(names):
        job = wait_for(sm, name)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        assert _model_files(s3, job["ModelArtifacts"]["S3ModelArtifacts"]) == {"who.txt": f"job-{i}".encode()}


def test_hyperparameters_reach_the_script(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import json, os, sys\n"
        "out = {'argv': sys.argv[1:], 'hp_epochs': os.environ.get('SM_HP_EPOCHS'),\n"
        "       'hps': json.loads(os.environ['SM_HPS'])}\n"
        "open(os.environ['SM_MODEL_DIR'] + '/seen.json', 'w').write(json.dumps(out))\n")})
    name = unique("hps")
    sm.create_training_job(**script_job(name, bucket, code, hyperparameters={"epochs": "3", "lr": "0.1"}))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    seen = json.loads(_model_files(s3, job["ModelArtifacts"]["S3ModelArtifacts"])["seen.json"])
    assert seen["argv"] == ["--epochs", "3", "--lr", "0.1"]
    assert seen["hp_epochs"] == "3"
    assert seen["hps"] == {"epochs": 3, "lr": 0.1}


def test_network_isolation_has_no_network(sm, s3, bucket, emulator):
    port = emulator.port
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import os, socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); result = 'connected'\n"
        "except OSError as exc:\n"
        "    result = 'no network'\n"
        "open(os.environ['SM_MODEL_DIR'] + '/net.txt', 'w').write(result)\n")})
    results = {}
    for isolated in (True, False):
        name = unique("net")
        sm.create_training_job(**script_job(name, bucket, code, EnableNetworkIsolation=isolated))
        job = wait_for(sm, name)
        assert job["EnableNetworkIsolation"] is isolated
        results[isolated] = _model_files(s3, job["ModelArtifacts"]["S3ModelArtifacts"])["net.txt"]
    assert results == {True: b"no network", False: b"connected"}


def test_unmapped_custom_image_fails_with_the_setting_named(sm, bucket):
    name = unique("img")
    request = script_job(name, bucket, "s3://b/c.tar.gz")
    request["AlgorithmSpecification"]["TrainingImage"] = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:latest"
    sm.create_training_job(**request)
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert "[tool.smlocal.images]" in job["FailureReason"]


def test_missing_input_data_fails_like_aws(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": "print('never')\n"})
    name = unique("nodata")
    sm.create_training_job(**script_job(name, bucket, code, channels={"train": f"s3://{bucket}/absent/"}))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert "No S3 objects found under S3 URL" in job["FailureReason"]


def _wait_secondary(sm, name: str, status: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if sm.describe_training_job(TrainingJobName=name)["SecondaryStatus"] == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached {status}")
