"""GPU instance types (ml.g*, ml.p*) on a machine without GPUs: the CPU and a log line, or a failure.

Real jobs against the emulator on the process backend: boto3 requests shaped like the SDK's, and
processing jobs. On a machine with NVIDIA GPUs these tests skip (they are about the fallback).
"""

from __future__ import annotations

import json
import textwrap

import pytest

from smlocal.config import load_settings
from smlocal.runtime import gpus

from conftest import ROLE, SKLEARN_IMAGE, put_s3, read_s3, script_job, unique, upload_sourcedir, wait_for, wait_status

pytestmark = pytest.mark.skipif(bool(gpus.machine_gpus()),
                                reason="this machine has GPUs: the fallback does not apply")

REPORT = textwrap.dedent(
    """
    import json, os
    seen = {k: os.environ.get(k) for k in ("SM_NUM_GPUS", "SM_CURRENT_INSTANCE_TYPE", "SM_NUM_CPUS")}
    seen["resourceconfig"] = json.load(open("/opt/ml/input/config/resourceconfig.json"))
    seen["training_env_gpus"] = json.loads(os.environ["SM_TRAINING_ENV"])["num_gpus"]
    print("seen " + json.dumps(seen))
    open(os.path.join(os.environ["SM_MODEL_DIR"], "seen.json"), "w").write(json.dumps(seen))
    """
)
FALLBACK = "smlocal: {kind} has {count}; this machine has none: running on the CPU (SM_NUM_GPUS=0)"


def _training_log(emulator, name: str) -> list[str]:
    logs, group = emulator.client("logs"), "/aws/sagemaker/TrainingJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    return [e["message"] for s in streams for e in logs.get_log_events(
        logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True)["events"]]


def _seen(s3, job: dict) -> dict:
    import io
    import tarfile

    body = read_s3(s3, job["ModelArtifacts"]["S3ModelArtifacts"])
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return json.loads(tar.extractfile("seen.json").read())


def _gpu_job(sm, s3, bucket, instance_type: str) -> tuple[str, dict]:
    name = unique("gpu")
    source = upload_sourcedir(s3, bucket, {"train.py": REPORT})
    sm.create_training_job(**script_job(name, bucket, source, ResourceConfig={
        "InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 30}))
    return name, wait_for(sm, name)


def test_g5_job_runs_on_the_cpu_with_no_gpus_and_says_so_first(sm, s3, bucket, emulator):
    name, job = _gpu_job(sm, s3, bucket, "ml.g5.xlarge")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    seen = _seen(s3, job)
    assert seen["SM_NUM_GPUS"] == "0" and seen["training_env_gpus"] == 0
    assert seen["SM_CURRENT_INSTANCE_TYPE"] == "ml.g5.xlarge"
    import os
    assert seen["SM_NUM_CPUS"] == str(os.cpu_count())  # this machine's share, not the type's 4 vCPUs
    lines = _training_log(emulator, name)
    assert lines[0] == FALLBACK.format(kind="ml.g5.xlarge", count="1 GPU")
    assert lines.count(lines[0]) == 1


def test_cpu_instance_type_says_nothing_about_gpus(sm, s3, bucket, emulator):
    name, job = _gpu_job(sm, s3, bucket, "ml.m5.large")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _seen(s3, job)["SM_NUM_GPUS"] == "0"
    assert not any(line.startswith("smlocal:") and "GPU" in line for line in _training_log(emulator, name))


def test_p4d_resourceconfig_is_what_aws_writes(sm, s3, bucket, emulator):
    """AWS's resourceconfig.json of an ml.p4d.24xlarge host (as the training toolkit logs it on
    AWS): the type named in current_instance_type and its group; GPUs are not in the file."""
    name, job = _gpu_job(sm, s3, bucket, "ml.p4d.24xlarge")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    seen = _seen(s3, job)
    assert seen["resourceconfig"] == {
        "current_host": "algo-1", "current_instance_type": "ml.p4d.24xlarge",
        "current_group_name": "homogeneousCluster", "hosts": ["algo-1"],
        "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "ml.p4d.24xlarge",
                             "hosts": ["algo-1"]}],
        "network_interface_name": "eth0", "topology": None}
    assert list(seen["resourceconfig"]) == ["current_host", "current_instance_type", "current_group_name",
                                            "hosts", "instance_groups", "network_interface_name", "topology"]
    assert seen["SM_NUM_GPUS"] == "0"
    assert _training_log(emulator, name)[0] == FALLBACK.format(kind="ml.p4d.24xlarge", count="8 GPUs")


def _processing(sm, s3, bucket, instance_type: str, count: int = 1) -> tuple[str, dict]:
    name = unique("gpu-proc")
    code = put_s3(s3, bucket, f"{name}/code/run.py", "import os; print('visible', os.environ.get('CUDA_VISIBLE_DEVICES'))")
    sm.create_processing_job(
        ProcessingJobName=name, RoleArn=ROLE,
        AppSpecification={"ImageUri": SKLEARN_IMAGE,
                          "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/run.py"]},
        ProcessingInputs=[{"InputName": "code", "S3Input": {
            "S3Uri": code, "LocalPath": "/opt/ml/processing/input/code", "S3DataType": "S3Prefix",
            "S3InputMode": "File"}}],
        ProcessingResources={"ClusterConfig": {"InstanceCount": count, "InstanceType": instance_type,
                                               "VolumeSizeInGB": 10}},
        StoppingCondition={"MaxRuntimeInSeconds": 300})
    return name, wait_status(lambda: sm.describe_processing_job(ProcessingJobName=name), "ProcessingJobStatus", 120)


def test_processing_on_a_gpu_type_logs_the_fallback_first_on_every_host(sm, s3, bucket, emulator):
    name, job = _processing(sm, s3, bucket, "ml.g4dn.12xlarge")
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    logs, group = emulator.client("logs"), "/aws/sagemaker/ProcessingJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    assert streams
    for stream in streams:
        lines = [e["message"] for e in logs.get_log_events(
            logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True)["events"]]
        assert lines[0] == FALLBACK.format(kind="ml.g4dn.12xlarge", count="4 GPUs")


# ---- gpu = "fail": a server whose setting refuses to fall back
@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    """(sagemaker client, s3 client, a bucket) of a server whose gpu setting is "fail"."""
    from smlocal.server import Emulator

    with Emulator(load_settings(data_dir=tmp_path_factory.mktemp("gpu-fail"), port=0, gpu="fail")) as emu:
        sm, s3 = emu.client("sagemaker"), emu.client("s3")
        bucket = unique("gpu-fail")
        s3.create_bucket(Bucket=bucket)
        yield sm, s3, bucket


def test_gpu_fail_setting_fails_the_job_with_the_reason(failing):
    sm, s3, bucket = failing
    name, job = _gpu_job(sm, s3, bucket, "ml.g5.2xlarge")
    assert job["TrainingJobStatus"] == "Failed"
    job_reason = job["FailureReason"]
    assert job_reason == (
        "CapacityError: Unable to provision requested ML compute capacity: ml.g5.2xlarge has 1 GPU; "
        'this machine has none (smlocal\'s gpu setting is "fail"; "cpu-fallback" runs the job on the CPU).')
    assert "ModelArtifacts" not in job or not job["ModelArtifacts"].get("S3ModelArtifacts")
    # a CPU type still runs there
    name, job = _gpu_job(sm, s3, bucket, "ml.c5.xlarge")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    _, proc = _processing(sm, s3, bucket, "ml.p3.2xlarge")
    assert proc["ProcessingJobStatus"] == "Failed"
    assert proc["FailureReason"] == job_reason.replace("ml.g5.2xlarge", "ml.p3.2xlarge")  # the same failure


def test_gpu_setting_is_checked(monkeypatch):
    monkeypatch.setenv("SMLOCAL_GPU", "sometimes")
    with pytest.raises(ValueError, match="gpu must be one of cpu-fallback, fail"):
        load_settings()
    monkeypatch.setenv("SMLOCAL_GPU", "FAIL")
    monkeypatch.setenv("SMLOCAL_GPU_DEVICES", "all")
    settings = load_settings()
    assert (settings.gpu, settings.gpu_devices) == ("fail", "all")


# ---- hosting: an endpoint on a GPU type runs on the CPU and its log says so first
def _gpu_endpoint(sm, s3, bucket, instance_type: str) -> tuple[str, dict]:
    import io

    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from conftest import tar_gz

    name = unique("gpu-ep")
    buf = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=300).fit(*load_iris(return_X_y=True)), buf)
    inference = b"import joblib, os\ndef model_fn(d):\n    return joblib.load(os.path.join(d, 'model.joblib'))\n"
    uri = put_s3(s3, bucket, f"models/{name}/model.tar.gz",
                 tar_gz({"model.joblib": buf.getvalue(), "code/inference.py": inference}))
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": SKLEARN_IMAGE, "ModelDataUrl": uri,
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": instance_type}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name, wait_status(lambda: sm.describe_endpoint(EndpointName=name), "EndpointStatus", 120)


def test_endpoint_on_a_gpu_type_serves_on_the_cpu_and_logs_it_first(sm, s3, bucket, emulator):
    name, doc = _gpu_endpoint(sm, s3, bucket, "ml.g4dn.xlarge")
    try:
        assert doc["EndpointStatus"] == "InService", doc.get("FailureReason")
        logs, group = emulator.client("logs"), f"/aws/sagemaker/Endpoints/{name}"
        stream = logs.describe_log_streams(logGroupName=group)["logStreams"][0]["logStreamName"]
        first = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"][0]
        assert first["message"] == FALLBACK.format(kind="ml.g4dn.xlarge", count="1 GPU")
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_gpu_fail_setting_fails_an_endpoint(failing):
    sm, s3, bucket = failing
    name, doc = _gpu_endpoint(sm, s3, bucket, "ml.g5.xlarge")
    assert doc["EndpointStatus"] == "Failed"
    assert "ml.g5.xlarge has 1 GPU; this machine has none" in doc["FailureReason"]


# ---- heterogeneous clusters: a real SDK estimator with instance_groups
HETERO = textwrap.dedent(
    """
    import json, os
    keys = ("SM_CURRENT_HOST", "SM_HOSTS", "SM_CURRENT_INSTANCE_TYPE", "SM_CURRENT_INSTANCE_GROUP",
            "SM_CURRENT_INSTANCE_GROUP_HOSTS", "SM_INSTANCE_GROUPS", "SM_INSTANCE_GROUPS_DICT",
            "SM_DISTRIBUTION_INSTANCE_GROUPS", "SM_IS_HETERO", "SM_NUM_GPUS")
    seen = {k: os.environ.get(k) for k in keys}
    seen["resourceconfig"] = json.load(open("/opt/ml/input/config/resourceconfig.json"))
    seen["training_env"] = json.loads(os.environ["SM_TRAINING_ENV"])
    open(os.path.join(os.environ["SM_MODEL_DIR"], os.environ["SM_CURRENT_HOST"] + ".json"), "w").write(json.dumps(seen))
    """
)


def test_heterogeneous_cluster_gives_every_host_its_group(client_env, tmp_path, emulator):
    import io
    import tarfile

    import boto3
    import sagemaker
    from sagemaker.instance_group import InstanceGroup
    from sagemaker.pytorch import PyTorch

    (tmp_path / "train.py").write_text(HETERO)
    groups = [InstanceGroup("data_group", "ml.c5.xlarge", 1), InstanceGroup("dnn_group", "ml.g5.xlarge", 2)]
    estimator = PyTorch(entry_point="train.py", source_dir=str(tmp_path), framework_version="2.1", py_version="py310",
                        instance_groups=groups, role=sagemaker.get_execution_role(),
                        sagemaker_session=sagemaker.Session())
    estimator.fit(wait=True, logs=False)
    job = estimator.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ResourceConfig"]["InstanceGroups"] == [
        {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "InstanceGroupName": "data_group"},
        {"InstanceType": "ml.g5.xlarge", "InstanceCount": 2, "InstanceGroupName": "dnn_group"}]
    bucket, key = estimator.model_data[5:].split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        seen = {m.name.removesuffix(".json"): json.loads(tar.extractfile(m).read())
                for m in tar.getmembers() if m.isfile()}
    hosts = ["algo-1", "algo-2", "algo-3"]
    assert sorted(seen) == hosts
    # every host sees the same groups: a partition of the hosts, with the counts and types asked for
    configs = [part["resourceconfig"] for part in seen.values()]
    written = configs[0]["instance_groups"]
    assert all(c["instance_groups"] == written and c["hosts"] == hosts for c in configs)
    by_name = {g["instance_group_name"]: g for g in written}
    assert sorted(by_name) == ["data_group", "dnn_group"]
    assert (len(by_name["data_group"]["hosts"]), len(by_name["dnn_group"]["hosts"])) == (1, 2)
    assert sorted(by_name["data_group"]["hosts"] + by_name["dnn_group"]["hosts"]) == hosts
    assert [list(g) for g in written] == [["instance_group_name", "instance_type", "hosts"]] * 2
    for host, part in seen.items():
        group = next(g for g in written if host in g["hosts"])
        config = part["resourceconfig"]
        assert (config["current_host"], config["current_group_name"], config["current_instance_type"]) == (
            host, group["instance_group_name"], group["instance_type"])
        # the SM_* variables, as the training toolkit derives them from the file
        assert part["SM_CURRENT_HOST"] == host
        assert part["SM_CURRENT_INSTANCE_GROUP"] == group["instance_group_name"]
        assert part["SM_CURRENT_INSTANCE_TYPE"] == group["instance_type"]
        assert json.loads(part["SM_CURRENT_INSTANCE_GROUP_HOSTS"]) == group["hosts"]
        assert json.loads(part["SM_INSTANCE_GROUPS"]) == ["data_group", "dnn_group"]
        assert json.loads(part["SM_INSTANCE_GROUPS_DICT"]) == by_name
        assert json.loads(part["SM_DISTRIBUTION_INSTANCE_GROUPS"]) == []
        assert part["SM_IS_HETERO"] == "true" and json.loads(part["SM_HOSTS"]) == hosts
        assert part["SM_NUM_GPUS"] == "0"  # the g5 hosts run on the CPU here
        assert part["training_env"]["is_hetero"] is True
        assert part["training_env"]["master_hostname"] == "algo-1"
    lines = _training_log(emulator, job["TrainingJobName"])
    assert lines.count(FALLBACK.format(kind="ml.g5.xlarge", count="1 GPU")) == 1
    assert not any("ml.c5.xlarge has" in line for line in lines)
