"""Custom images' ContainerEntrypoint / ContainerArguments, run as AWS runs them (boto3, real jobs).

The images are mapped in the emulator's ``[tool.smlocal.images]`` settings; each job's program
records what it saw (argv, interpreter, environment) in its model or processing output.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile

import pytest

from conftest import ROLE, read_s3, unique

pytestmark = pytest.mark.slow

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
MAPPED = f"{REGISTRY}/my-trainer:1"  # ENTRYPOINT: the mapped command
OWN_PYTHON = f"{REGISTRY}/own-python:1"  # a mapped command naming its own interpreter
# the interpreter behind smlocal's virtualenv: another Python than the one running smlocal
BASE_PYTHON = os.path.realpath(sys.executable)
# What every program here does: write what it saw to the model dir (training) or the output (processing).
# (Each ContainerEntrypoint entry is at most 256 characters.)
RECORD = (
    "import json,os,sys;o=os.environ.get('OUT','/opt/ml/model');os.makedirs(o,exist_ok=True);"
    "json.dump([sys.argv[1:],sys.executable,sys.prefix,os.environ.get('MARKER'),os.environ.get('PROGRAM'),"
    "'{who}'],open(o+'/seen.json','w'))"
)
FIELDS = ("argv", "executable", "prefix", "marker", "program", "who")


@pytest.fixture(scope="module")
def mapped(tmp_path_factory, runtime_dir):
    from smlocal.config import ImageMapping, load_settings
    from smlocal.server import Emulator

    images = (
        ImageMapping(image=MAPPED, command=("python", "-c", RECORD.format(who="mapped")), environment={"PROGRAM": "mapped"}),
        ImageMapping(image=OWN_PYTHON, command=(BASE_PYTHON, "-c", RECORD.format(who="own"))),
    )
    data = tmp_path_factory.mktemp("entrypoints")
    with Emulator(load_settings(data_dir=data, port=0, images=images)) as emu:
        yield emu


@pytest.fixture
def clients(mapped):
    sm, s3 = mapped.client("sagemaker"), mapped.client("s3")
    bucket = unique("entry")
    s3.create_bucket(Bucket=bucket)
    return sm, s3, bucket


def _train(sm, s3, bucket: str, image: str, **algorithm) -> dict:
    name = unique("entry")
    sm.create_training_job(
        TrainingJobName=name, RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File", **algorithm},
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 300}, Environment={"MARKER": "from-request"})
    waiter = sm.get_waiter("training_job_completed_or_stopped")
    waiter.wait(TrainingJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    job = sm.describe_training_job(TrainingJobName=name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    with tarfile.open(fileobj=io.BytesIO(read_s3(s3, job["ModelArtifacts"]["S3ModelArtifacts"]))) as archive:
        return dict(zip(FIELDS, json.load(archive.extractfile("seen.json"))))


def test_training_entrypoint_replaces_the_images_and_gets_the_arguments(clients):
    sm, s3, bucket = clients
    seen = _train(sm, s3, bucket, MAPPED, ContainerEntrypoint=["python3", "-c", RECORD.format(who="entrypoint")],
                  ContainerArguments=["--alpha", "0.5", "two words"])
    assert seen["argv"] == ["--alpha", "0.5", "two words"]
    assert seen["who"] == "entrypoint"  # the mapped command did not run
    assert (seen["marker"], seen["program"]) == ("from-request", "mapped")  # the request's and the image's ENV


def test_training_arguments_alone_go_to_the_images_entrypoint(clients):
    sm, s3, bucket = clients
    seen = _train(sm, s3, bucket, MAPPED, ContainerArguments=["serve-not", "--beta=2"])
    assert (seen["argv"], seen["who"]) == (["serve-not", "--beta=2"], "mapped")


def test_mapped_image_keeps_its_own_interpreter(clients):
    sm, s3, bucket = clients
    seen = _train(sm, s3, bucket, OWN_PYTHON)
    assert (seen["executable"], seen["who"]) == (BASE_PYTHON, "own")
    assert seen["prefix"] == sys.base_prefix != sys.prefix
    # plain `python` is smlocal's interpreter (its virtualenv)
    assert _train(sm, s3, bucket, MAPPED)["prefix"] == sys.prefix


def test_processing_entrypoint_with_the_images_own_interpreter(clients):
    sm, s3, bucket = clients
    name = unique("entry-proc")
    sm.create_processing_job(
        ProcessingJobName=name, RoleArn=ROLE,
        AppSpecification={"ImageUri": MAPPED, "ContainerEntrypoint": [BASE_PYTHON, "-c", RECORD.format(who="proc")],
                          "ContainerArguments": ["--gamma", "3"]},
        Environment={"OUT": "/opt/ml/processing/out", "MARKER": "proc"},
        ProcessingOutputConfig={"Outputs": [{"OutputName": "out", "S3Output": {
            "S3Uri": f"s3://{bucket}/proc", "LocalPath": "/opt/ml/processing/out", "S3UploadMode": "EndOfJob"}}]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                               "VolumeSizeInGB": 5}},
        StoppingCondition={"MaxRuntimeInSeconds": 300})
    sm.get_waiter("processing_job_completed_or_stopped").wait(
        ProcessingJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    job = sm.describe_processing_job(ProcessingJobName=name)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    seen = dict(zip(FIELDS, json.loads(read_s3(s3, f"s3://{bucket}/proc/seen.json"))))
    assert seen["argv"] == ["--gamma", "3"] and seen["marker"] == "proc"
    # the request's entrypoint names a path inside the image: without Docker, the job's Python
    assert seen["prefix"] == sys.prefix != sys.base_prefix


def test_aws_python_image_runs_the_entrypoint_under_the_jobs_python(clients):
    sm, s3, bucket = clients
    image = "081325390199.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-310:1.0"  # not mapped
    seen = _train(sm, s3, bucket, image, ContainerEntrypoint=["/usr/local/bin/python3", "-c", RECORD.format(who="aws")],
                  ContainerArguments=["x"])
    assert seen["argv"] == ["x"] and seen["prefix"] == sys.prefix
