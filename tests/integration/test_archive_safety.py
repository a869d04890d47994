"""Archives and job outputs cannot reach the host: crafted archives fail training, processing,
transform and endpoints with a reason and write nothing outside; links a job makes in its outputs
are never followed by the server."""

from __future__ import annotations

import io
import os
import tarfile
import textwrap
import uuid

import pytest

from archive_cases import TarMaker, realpath_overflow
from conftest import (
    ROLE, SKLEARN_IMAGE, put_s3, read_s3, script_job, unique, upload_sourcedir, wait_for, wait_status,
)  # fmt: skip

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
INSTANCE = "i-" + "0" * 17  # the length of an instance id (the model folder's path length matters)
ABOVE_DATA_DIR = 6  # <data>/jobs/<kind>/<name>/<host>/<folder>: six levels up is outside the data dir


def _data_dir(emulator) -> str:
    return os.path.realpath(emulator.settings.data_dir)


def _crafted(dest: str, marker: str, climb: int = ABOVE_DATA_DIR) -> bytes:
    return realpath_overflow(dest, marker, climb=climb)


def _nothing_escaped(emulator, marker: str) -> None:
    root = emulator.settings.data_dir
    assert not (root.parent / marker).exists()
    assert list(root.parent.rglob(marker)) == []

# ---- crafted archives
def test_training_sourcedir_realpath_overflow_fails_the_job(sm, s3, bucket, emulator):
    name, marker = unique("cve-train"), f"pwned-{uuid.uuid4().hex[:8]}"
    code_dir = f"{_data_dir(emulator)}/jobs/training/{name}/algo-1/code"
    key = f"code/{name}/sourcedir.tar.gz"
    put_s3(s3, bucket, key, _crafted(code_dir, marker))
    sm.create_training_job(**script_job(name, bucket, f"s3://{bucket}/{key}"))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert f"Archive s3://{bucket}/{key} contains an unsafe path: a/b/c/" in job["FailureReason"]
    assert "written through the symbolic link a" in job["FailureReason"]
    _nothing_escaped(emulator, marker)


def test_training_sourcedir_link_chain_fails_the_job(sm, s3, bucket):
    name, key = unique("chain-train"), f"code/{uuid.uuid4().hex[:8]}/sourcedir.tar.gz"
    put_s3(s3, bucket, key, TarMaker().file("train.py", b"print('hi')\n").symlink("a", ".")
           .symlink("b", "a/a/a/../..").bytes())
    sm.create_training_job(**script_job(name, bucket, f"s3://{bucket}/{key}"))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert "contains an unsafe path: b (is a symbolic link to 'a/a/a/../..', which leaves" in job["FailureReason"]


@pytest.fixture
def crafted_xgboost_model(sm, s3, bucket, emulator):
    """A built-in XGBoost Model whose model.tar.gz is the CVE construction (plain data, no code)."""
    def make(kind: str, name: str, marker: str) -> str:
        model_dir = f"{_data_dir(emulator)}/jobs/{kind}/{name}/{INSTANCE}/model"
        data = put_s3(s3, bucket, f"models/{name}/model.tar.gz", _crafted(model_dir, marker))
        model = unique("crafted-xgb")
        sm.create_model(ModelName=model, ExecutionRoleArn=ROLE,
                        PrimaryContainer={"Image": XGBOOST_IMAGE, "ModelDataUrl": data})
        return model
    return make


@pytest.mark.slow
def test_transform_with_a_crafted_model_archive_fails(sm, s3, bucket, emulator, crafted_xgboost_model):
    name, marker = unique("cve-transform"), f"pwned-{uuid.uuid4().hex[:8]}"
    model = crafted_xgboost_model("transform", name, marker)
    data = put_s3(s3, bucket, f"{name}/in/data.csv", "1,2,3\n")
    sm.create_transform_job(
        TransformJobName=name, ModelName=model,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": data}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://{bucket}/{name}/out"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
    job = wait_status(lambda: sm.describe_transform_job(TransformJobName=name), "TransformJobStatus")
    assert job["TransformJobStatus"] == "Failed"
    assert "Failed to extract model data archive" in job["FailureReason"]
    assert "contains an unsafe path: a/b/c/" in job["FailureReason"]
    _nothing_escaped(emulator, marker)


@pytest.mark.slow
def test_endpoint_with_a_crafted_model_archive_fails(sm, s3, bucket, emulator, crafted_xgboost_model):
    endpoint, marker = unique("cve-ep"), f"pwned-{uuid.uuid4().hex[:8]}"
    model = crafted_xgboost_model("endpoint", endpoint, marker)
    sm.create_endpoint_config(EndpointConfigName=endpoint, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)
    doc = wait_status(lambda: sm.describe_endpoint(EndpointName=endpoint), "EndpointStatus")
    assert doc["EndpointStatus"] == "Failed"
    assert doc["FailureReason"].startswith("Failed to extract model data archive from URL")
    assert "contains an unsafe path: a/b/c/" in doc["FailureReason"]
    _nothing_escaped(emulator, marker)
    sm.delete_endpoint(EndpointName=endpoint)


def test_processing_code_bundle_realpath_overflow_fails_the_job(sm, s3, bucket, emulator):
    name, marker = unique("cve-proc"), f"pwned-{uuid.uuid4().hex[:8]}"
    # FrameworkProcessor's layout: runproc.sh unpacks sourcedir.tar.gz; smlocal unpacks it first
    # (server side) to build the requirements.txt environment
    unpacked = f"{_data_dir(emulator)}/envs/_sourcedirs/{'0' * 16}"
    crafted = _with_requirements(realpath_overflow(unpacked, marker, climb=4))
    code = put_s3(s3, bucket, f"{name}/code/sourcedir.tar.gz", crafted)
    entry = put_s3(s3, bucket, f"{name}/entry/runproc.sh", "tar -xzf sourcedir.tar.gz\n")
    sm.create_processing_job(
        ProcessingJobName=name, RoleArn=ROLE,
        ProcessingInputs=[
            {"InputName": "code", "S3Input": {"S3Uri": code, "LocalPath": "/opt/ml/processing/input/code",
                                             "S3DataType": "S3Prefix", "S3InputMode": "File"}},
            {"InputName": "entrypoint", "S3Input": {"S3Uri": entry, "S3DataType": "S3Prefix",
                                                   "LocalPath": "/opt/ml/processing/input/entrypoint",
                                                   "S3InputMode": "File"}}],
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                               "VolumeSizeInGB": 30}},
        AppSpecification={"ImageUri": SKLEARN_IMAGE,
                          "ContainerEntrypoint": ["/bin/bash", "/opt/ml/processing/input/entrypoint/runproc.sh"]})
    job = wait_status(lambda: sm.describe_processing_job(ProcessingJobName=name), "ProcessingJobStatus")
    assert job["ProcessingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: Archive sourcedir.tar.gz contains an unsafe path: a/b/c/")
    _nothing_escaped(emulator, marker)


def _with_requirements(crafted: bytes) -> bytes:
    """The same members preceded by a requirements.txt (what makes smlocal unpack the bundle)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(crafted)) as source, \
            tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as target:
        info = tarfile.TarInfo("requirements.txt")
        target.addfile(info, io.BytesIO(b""))
        for member in source:
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
    return out.getvalue()


# ---- outputs: links the job made are not followed
@pytest.fixture
def host_secret(tmp_path):
    secret = f"host-secret-{uuid.uuid4().hex}"
    path = tmp_path / "secret.txt"
    path.write_text(secret)
    return str(path), secret


def _tar_members(s3, uri: str) -> dict[str, tuple[bytes, bytes | None, str]]:
    with tarfile.open(fileobj=io.BytesIO(read_s3(s3, uri))) as archive:
        return {m.name: (m.type, archive.extractfile(m).read() if m.isfile() else None, m.linkname)
                for m in archive.getmembers()}


def test_failed_job_links_to_host_files_are_not_followed(sm, s3, bucket, emulator, host_secret):
    path, secret = host_secret
    code = upload_sourcedir(s3, bucket, {"train.py": textwrap.dedent(f"""
        import os, sys
        os.makedirs('/opt/ml/output/data/inside', exist_ok=True)
        open('/opt/ml/output/data/inside/ok.txt', 'w').write('mine')
        os.symlink('/etc', '/opt/ml/output/data/x')
        os.symlink({path!r}, '/opt/ml/output/data/secret')
        os.symlink('inside/ok.txt', '/opt/ml/output/data/ok-link')
        os.symlink({path!r}, '/opt/ml/output/failure')
        sys.exit(3)
        """)})
    name = unique("links-fail")
    sm.create_training_job(**script_job(name, bucket, code))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert secret not in job["FailureReason"]
    assert job["FailureReason"].startswith("AlgorithmError: ")  # the exit code's reason
    members = _tar_members(s3, f"s3://{bucket}/output/{name}/output/output.tar.gz")
    assert set(members) == {"inside", "inside/ok.txt", "ok-link"}
    assert members["inside/ok.txt"][1] == b"mine"
    assert members["ok-link"][0] == tarfile.SYMTYPE and members["ok-link"][2] == "inside/ok.txt"
    logs = _training_log(emulator, name)
    assert any("skipped output/data/x: a symbolic link to '/etc'" in line for line in logs)


def test_completed_job_output_folders_replaced_by_links_are_not_followed(sm, s3, bucket, host_secret):
    path, secret = host_secret
    code = upload_sourcedir(s3, bucket, {"train.py": textwrap.dedent(f"""
        import os
        os.rmdir('/opt/ml/output/data')
        os.symlink('/etc', '/opt/ml/output/data')
        os.symlink({path!r}, '/opt/ml/model/weights.bin')
        os.mkfifo('/opt/ml/model/fifo')
        open('/opt/ml/model/real.txt', 'w').write('model')
        """)})
    name = unique("links-ok")
    sm.create_training_job(**script_job(name, bucket, code))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    members = _tar_members(s3, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert set(members) == {"real.txt"}
    assert f"output/{name}/output/output.tar.gz" not in str(
        s3.list_objects_v2(Bucket=bucket, Prefix=f"output/{name}/").get("Contents", []))


def test_processing_output_links_to_host_files_are_not_uploaded(sm, s3, bucket, host_secret):
    path, secret = host_secret
    name = unique("proc-links")
    script = textwrap.dedent(f"""
        import os
        os.makedirs('/opt/ml/processing/out/sub', exist_ok=True)
        open('/opt/ml/processing/out/sub/real.csv', 'w').write('1,2')
        os.symlink({path!r}, '/opt/ml/processing/out/secret.txt')
        os.symlink('/etc', '/opt/ml/processing/out/etc')
        os.symlink('sub/real.csv', '/opt/ml/processing/out/alias.csv')
        """)
    code = put_s3(s3, bucket, f"{name}/code/job.py", script)
    sm.create_processing_job(
        ProcessingJobName=name, RoleArn=ROLE,
        ProcessingInputs=[{"InputName": "code", "S3Input": {
            "S3Uri": code, "LocalPath": "/opt/ml/processing/input/code", "S3DataType": "S3Prefix",
            "S3InputMode": "File"}}],
        ProcessingOutputConfig={"Outputs": [{"OutputName": "out", "S3Output": {
            "S3Uri": f"s3://{bucket}/{name}/out", "LocalPath": "/opt/ml/processing/out",
            "S3UploadMode": "EndOfJob"}}]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                               "VolumeSizeInGB": 30}},
        AppSpecification={"ImageUri": SKLEARN_IMAGE,
                          "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/job.py"]})
    job = wait_status(lambda: sm.describe_processing_job(ProcessingJobName=name), "ProcessingJobStatus")
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{name}/out/")["Contents"])
    assert keys == [f"{name}/out/alias.csv", f"{name}/out/sub/real.csv"]
    assert read_s3(s3, f"s3://{bucket}/{name}/out/alias.csv") == b"1,2"


def _training_log(emulator, name: str) -> list[str]:
    logs, group = emulator.client("logs"), "/aws/sagemaker/TrainingJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    return [e["message"] for s in streams for e in logs.get_log_events(
        logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True)["events"]]
