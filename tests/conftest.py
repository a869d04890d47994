"""Shared fixtures: one real emulator per test session (per xdist worker), real boto3 clients."""

from __future__ import annotations

import io
import os
import tarfile
import uuid

import pytest

from smlocal import compat
from smlocal.pytest_plugin import point_environment_at
from smlocal.config import load_settings

# tests never borrow a developer's running `smlocal up` on the default port
os.environ["SMLOCAL_AUTODETECT"] = "0"
os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    from smlocal.server import Emulator

    data_dir = tmp_path_factory.mktemp("smlocal-data")
    with Emulator(load_settings(data_dir=data_dir, port=0)) as emu:
        yield emu


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    """A private ``SMLOCAL_RUNTIME_DIR`` (server records, admin tokens) for the servers a module starts."""
    folder = tmp_path_factory.mktemp("smlocal-run") / "run"
    previous = os.environ.get("SMLOCAL_RUNTIME_DIR")
    os.environ["SMLOCAL_RUNTIME_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("SMLOCAL_RUNTIME_DIR", None)
    else:
        os.environ["SMLOCAL_RUNTIME_DIR"] = previous


@pytest.fixture(scope="session")
def client_env(emulator):
    """Points every boto3 / SDK client created in this process at the emulator."""
    patch = pytest.MonkeyPatch()
    point_environment_at(patch, emulator.client_env())
    compat.install()
    yield emulator.client_env()
    patch.undo()


@pytest.fixture
def sm(emulator):
    return emulator.client("sagemaker")


@pytest.fixture
def s3(emulator):
    return emulator.client("s3")


@pytest.fixture
def bucket(s3):
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tar_gz(files: dict[str, bytes], mode: int = 0o644) -> bytes:
    """A ``.tar.gz`` of ``files`` (member name → content), each member with ``mode``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def upload_sourcedir(s3, bucket: str, files: dict[str, str], key: str | None = None) -> str:
    """Packs ``files`` as the SDK's sourcedir.tar.gz and uploads it; returns its S3 URI."""
    key = key or f"code/{uuid.uuid4().hex[:8]}/sourcedir.tar.gz"
    body = tar_gz({name: text.encode() for name, text in files.items()}, mode=0o755)
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def script_job(name: str, bucket: str, submit_uri: str, program: str = "train.py", *, hyperparameters=None,
               channels=None, **extra) -> dict:
    """A CreateTrainingJob request shaped like the SDK v2 SKLearn estimator's."""
    hps = {
        "sagemaker_program": f'"{program}"',
        "sagemaker_submit_directory": f'"{submit_uri}"',
        "sagemaker_region": '"us-east-1"',
        "sagemaker_container_log_level": "20",
        "sagemaker_job_name": f'"{name}"',
    }
    hps.update(hyperparameters or {})
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "HyperParameters": hps,
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    if channels:
        request["InputDataConfig"] = [
            {"ChannelName": ch, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                                                  "S3DataDistributionType": "FullyReplicated"}}}
            for ch, uri in channels.items()
        ]
    request.update(extra)
    return request


_TRANSITIONAL = ("InProgress", "Stopping", "Creating", "Updating")


def wait_status(describe, key: str, timeout: float = 180.0) -> dict:
    """Calls ``describe()`` until its ``key`` status is no longer transitional (InProgress, Creating...).

    Args:
        describe: A call answering a Describe* document, e.g. ``lambda: sm.describe_endpoint(...)``.
        key: The status member, e.g. ``"EndpointStatus"``.
        timeout: Seconds before the wait fails the test.
    """
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        doc = describe()
        if doc[key] not in _TRANSITIONAL:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"{key} still {doc[key]} after {timeout}s")


def wait_for(sm, name: str, timeout: float = 120.0) -> dict:
    """Waits for training job ``name`` to end; returns its description."""
    return wait_status(lambda: sm.describe_training_job(TrainingJobName=name), "TrainingJobStatus", timeout)


def aws_error(exc_info) -> tuple[str, str]:
    """(Code, Message) of a botocore ClientError caught by pytest.raises."""
    err = exc_info.value.response["Error"]
    return err["Code"], err["Message"]


def put_s3(s3, bucket: str, key: str, body: str | bytes) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)
    return f"s3://{bucket}/{key}"


def read_s3(s3, uri: str) -> bytes:
    bucket, key = uri[5:].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def s3_keys(s3, bucket: str, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))
