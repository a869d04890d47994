"""`smlocal promote --to aws` as users run it (a subprocess with their own AWS environment).

AWS itself cannot exist here, so the "AWS account" is a second emulator the target environment's
``AWS_ENDPOINT_URL`` points at (the only stand-in in these tests): promote talks to it through the
same boto3 resolution it would use against AWS, and the promoted pipeline then really runs there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import unique
from pipeline_support import training_code, training_step, wait_execution

SMLOCAL = [sys.executable, "-m", "smlocal.cli"]
PROD_ROLE = "arn:aws:iam::123456789012:role/ProductionSageMakerRole"


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """The stand-in for the target AWS account: a separate emulator with its own state."""
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    with Emulator(load_settings(data_dir=tmp_path_factory.mktemp("aws"), port=0)) as target:
        yield target


def _env(source_endpoint: str, target_endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_", "SAGEMAKER_"))
           and k != "PYTHONPATH"}
    return {**env, "SMLOCAL_AUTODETECT": "0", "SMLOCAL_ENDPOINT": source_endpoint,
            "AWS_ENDPOINT_URL": target_endpoint, "AWS_ACCESS_KEY_ID": "AKIAPROMOTE", "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_DEFAULT_REGION": "us-east-1", "SAGEMAKER_SUPPRESS_V2_WARNING": "1"}


def _local_pipeline(sm, s3, bucket: str) -> str:
    """A training pipeline whose code and input data live only in the source's S3."""
    code = training_code(s3, bucket)
    s3.put_object(Bucket=bucket, Key="data/train/rows.csv", Body=b"1,2\n3,4\n")
    step = training_step("Train", bucket, code)
    step["Arguments"]["InputDataConfig"] = [{"ChannelName": "train", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": {"Get": "Parameters.TrainData"},
        "S3DataDistributionType": "FullyReplicated"}}}]
    name = unique("promoted")
    sm.create_pipeline(PipelineName=name, RoleArn="arn:aws:iam::123456789012:role/SageMakerExecutionRole",
                       PipelineDisplayName="Local-display", PipelineDefinition=json.dumps({
                           "Version": "2020-12-01", "Steps": [step], "Parameters": [
                               {"Name": "TrainData", "Type": "String", "DefaultValue": f"s3://{bucket}/data/train"}]}))
    return name


def test_pipeline_is_copied_with_its_inputs_and_runs_in_the_target(emulator, aws, sm, s3, bucket):
    name = _local_pipeline(sm, s3, bucket)
    target_bucket = unique("prod")
    done = subprocess.run([*SMLOCAL, "promote", "--to", "aws", "--pipeline", name, "--role", PROD_ROLE,
                           "--bucket", target_bucket, "--start"], env=_env(emulator.endpoint, aws.endpoint),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Copied 2 object(s)" in done.stdout

    target_sm, target_s3 = aws.client("sagemaker"), aws.client("s3")
    promoted = target_sm.describe_pipeline(PipelineName=name)
    assert promoted["RoleArn"] == PROD_ROLE and promoted["PipelineDisplayName"] == "Local-display"
    text = promoted["PipelineDefinition"]
    assert bucket not in text and f"s3://{target_bucket}/data/train" in text
    keys = sorted(o["Key"] for o in target_s3.list_objects_v2(Bucket=target_bucket)["Contents"])
    assert "data/train/rows.csv" in keys and any(k.endswith("sourcedir.tar.gz") for k in keys)
    assert target_s3.get_object(Bucket=target_bucket, Key="data/train/rows.csv")["Body"].read() == b"1,2\n3,4\n"

    arn = done.stdout.split("Started ", 1)[1].split()[0]
    assert wait_execution(target_sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    model_keys = [o["Key"] for o in target_s3.list_objects_v2(Bucket=target_bucket, Prefix="output/")["Contents"]]
    assert any(k.endswith("model.tar.gz") for k in model_keys)
    # promoting again updates the same pipeline
    again = subprocess.run([*SMLOCAL, "promote", "--to", "aws", "--pipeline", name, "--role", PROD_ROLE,
                            "--bucket", target_bucket], env=_env(emulator.endpoint, aws.endpoint),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert sm.describe_pipeline(PipelineName=name)["RoleArn"].endswith("/SageMakerExecutionRole")  # source intact


def test_dry_run_prints_the_definition_and_writes_nothing(emulator, aws, sm, s3, bucket):
    name = _local_pipeline(sm, s3, bucket)
    target_bucket = unique("dry")
    done = subprocess.run([*SMLOCAL, "promote", "--to", "aws", "--pipeline", name, "--role", PROD_ROLE,
                           "--bucket", target_bucket, "--dry-run"], env=_env(emulator.endpoint, aws.endpoint),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout.split("The definition that would be created:\n", 1)[1])
    assert printed["Steps"][0]["Arguments"]["RoleArn"] == PROD_ROLE
    assert f"copy s3://{bucket}/data/train -> s3://{target_bucket}/data/train" in done.stdout
    target_sm = aws.client("sagemaker")
    assert name not in [p["PipelineName"] for p in target_sm.list_pipelines()["PipelineSummaries"]]
    assert target_bucket not in [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]]


def test_blocking_problems_and_bad_targets_write_nothing(emulator, aws, sm, s3, bucket):
    name = _local_pipeline(sm, s3, bucket)
    env = _env(emulator.endpoint, aws.endpoint)
    # a us-east-1 image cannot run in eu-west-1
    other_region = subprocess.run([*SMLOCAL, "promote", "--to", "aws", "--pipeline", name, "--role", PROD_ROLE,
                                   "--region", "eu-west-1", "--bucket", unique("eu")], env=env,
                                  capture_output=True, text=True, timeout=120)
    assert other_region.returncode == 1
    assert "is in region us-east-1, but the target is eu-west-1" in other_region.stderr
    assert "nothing was written to the target" in other_region.stderr
    # the target resolving to the source emulator (promote run inside `smlocal exec`)
    itself = subprocess.run([*SMLOCAL, "promote", "--to", "aws", "--pipeline", name, "--role", PROD_ROLE],
                            env=_env(emulator.endpoint, emulator.endpoint), capture_output=True, text=True,
                            timeout=120)
    assert itself.returncode == 1 and "resolves to smlocal itself" in itself.stderr
    # an input that exists nowhere
    s3.delete_object(Bucket=bucket, Key="data/train/rows.csv")
    missing = subprocess.run([*SMLOCAL, "promote", "--to", "aws", "--pipeline", name, "--role", PROD_ROLE],
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1
    assert f"s3://{bucket}/data/train (at Parameters/DefaultValue) is read by the pipeline" in missing.stderr
    assert name not in [p["PipelineName"] for p in aws.client("sagemaker").list_pipelines()["PipelineSummaries"]]
    # usage errors
    no_role = subprocess.run([*SMLOCAL, "promote", "--to", "aws", "--pipeline", name], env=env,
                             capture_output=True, text=True)
    assert no_role.returncode == 2 and "--role" in no_role.stderr
    both = subprocess.run([*SMLOCAL, "promote", "abalone", "--to", "aws", "--pipeline", name, "--role", PROD_ROLE],
                          env=env, capture_output=True, text=True)
    assert both.returncode == 2 and "either a WORKFLOW or --pipeline" in both.stderr


def test_unknown_pipeline_is_the_aws_error(emulator, aws):
    done = subprocess.run([*SMLOCAL, "promote", "--to", "aws", "--pipeline", "no-such-pipeline", "--role",
                           PROD_ROLE], env=_env(emulator.endpoint, aws.endpoint), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "ResourceNotFound" in done.stderr and "no-such-pipeline" in done.stderr


@pytest.mark.slow
def test_promote_abalone_runs_the_same_workflow_in_the_target(aws, tmp_path):
    env = _env("", aws.endpoint)
    env.pop("SMLOCAL_ENDPOINT")  # the source is an embedded emulator started for the command
    target_bucket = unique("abalone")
    done = subprocess.run([*SMLOCAL, "promote", "abalone", "--to", "aws", "--role", PROD_ROLE, "--bucket",
                           target_bucket, "--start"], env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "copy s3://sagemaker-us-east-1-123456789012/abalone/abalone-dataset.csv" in done.stdout
    target_sm = aws.client("sagemaker")
    arn = done.stdout.split("Started ", 1)[1].split()[0]
    described = wait_execution(target_sm, arn, timeout=600)
    assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
    packages = target_sm.list_model_packages(ModelPackageGroupName="AbaloneModelPackageGroupName")
    assert packages["ModelPackageSummaryList"]
    keys = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=target_bucket)["Contents"]]
    assert any(k.endswith(".out") for k in keys)  # the batch transform wrote its predictions there
