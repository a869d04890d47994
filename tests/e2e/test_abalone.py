"""The abalone pipeline end to end: through the SDK, as raw boto3 JSON, and as `smlocal run abalone`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from botocore.exceptions import WaiterError

pytestmark = pytest.mark.slow

EXPECTED_IF = {"AbaloneProcess", "AbaloneTrain", "AbaloneEval", "AbaloneMSECond",
               "AbaloneRegisterModel-RegisterModel", "AbaloneCreateModel-CreateModel", "AbaloneTransform"}
EXPECTED_ELSE = {"AbaloneProcess", "AbaloneTrain", "AbaloneEval", "AbaloneMSECond", "AbaloneMSEFail"}


def _wait(sm, arn: str, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        described = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        if described["PipelineExecutionStatus"] in ("Succeeded", "Failed", "Stopped"):
            return described
        time.sleep(0.5)
    raise AssertionError(f"{arn} did not finish")


def _steps(sm, arn: str) -> dict[str, dict]:
    pages = sm.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn)
    return {s["StepName"]: s for page in pages for s in page["PipelineExecutionSteps"]}


@pytest.fixture(scope="module")
def abalone(client_env):
    """The abalone pipeline built by the workflow's own SDK code, upserted once."""
    import sagemaker

    from smlocal.workflows.abalone import fixtures_dir
    from smlocal.workflows.abalone.main import build_pipeline, upload_data

    session = sagemaker.Session()
    bucket = session.default_bucket()
    input_uri, batch_uri = upload_data(session, bucket, fixtures_dir() / "data")
    pipeline = build_pipeline(sagemaker.get_execution_role(), bucket, input_uri, batch_uri, fixtures_dir() / "code")
    pipeline.upsert(role_arn=sagemaker.get_execution_role())
    return pipeline


def test_sdk_pipeline_takes_both_branches(abalone, sm, s3):
    execution = abalone.start()
    described = _wait(sm, execution.arn)
    steps = _steps(sm, execution.arn)
    assert described["PipelineExecutionStatus"] == "Succeeded", {n: s.get("FailureReason") for n, s in steps.items()}
    assert set(steps) == EXPECTED_IF
    assert steps["AbaloneMSECond"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    package = sm.describe_model_package(
        ModelPackageName=steps["AbaloneRegisterModel-RegisterModel"]["Metadata"]["RegisterModel"]["Arn"])
    assert package["ModelPackageGroupName"] == "AbaloneModelPackageGroupName"
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    stats = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    bucket, key = stats[5:].split("/", 1)
    report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert report["regression_metrics"]["mse"]["value"] <= 6.0
    model = steps["AbaloneCreateModel-CreateModel"]["Metadata"]["Model"]["Arn"]
    assert model.startswith("arn:aws:sagemaker:us-east-1:123456789012:model/pipelines-")
    transform = steps["AbaloneTransform"]["Metadata"]["TransformJob"]["Arn"]
    listed = sm.list_transform_jobs(NameContains=transform.rsplit("/", 1)[-1])["TransformJobSummaries"]
    assert [j["TransformJobStatus"] for j in listed] == ["Completed"]

    failing = abalone.start(parameters={"MseThreshold": 3.0})
    with pytest.raises(WaiterError):  # the SDK's waiter stops at Failed
        failing.wait(delay=1, max_attempts=1200)
    described = failing.describe()
    assert described["PipelineExecutionStatus"] == "Failed"
    assert described["FailureReason"] == "Step failure: One or multiple steps failed."
    steps = _steps(sm, failing.arn)
    assert set(steps) == EXPECTED_ELSE
    assert steps["AbaloneMSEFail"]["FailureReason"] == "Execution failed due to MSE > 3.0"
    assert {p["Name"]: p["Value"] for p in failing.list_parameters()["PipelineParameters"]}["MseThreshold"] == "3.0"


def test_same_definition_through_raw_boto3_runs_identically(abalone, sm):
    from conftest import ROLE, unique

    name = unique("abalone-raw")
    sm.create_pipeline(PipelineName=name, RoleArn=ROLE, PipelineDefinition=abalone.definition())
    for threshold, expected, status in (("6.0", EXPECTED_IF, "Succeeded"), ("3.0", EXPECTED_ELSE, "Failed")):
        arn = sm.start_pipeline_execution(PipelineName=name, PipelineParameters=[
            {"Name": "MseThreshold", "Value": threshold}])["PipelineExecutionArn"]
        described, steps = _wait(sm, arn), _steps(sm, arn)
        assert described["PipelineExecutionStatus"] == status, {
            name: (s["StepStatus"], s.get("FailureReason")) for name, s in steps.items()}
        assert set(steps) == expected


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_", "SAGEMAKER_"))}
    env["SMLOCAL_AUTODETECT"] = "0"
    return subprocess.run([sys.executable, "-m", "smlocal.cli", "run", "abalone", *args], capture_output=True,
                          text=True, env=env, timeout=900)


def test_smlocal_run_abalone():
    done = _run()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Pipeline execution Succeeded" in done.stdout
    assert "AbaloneTransform" in done.stdout and "Evaluation report" in done.stdout
    assert "Registered model package arn:aws:sagemaker:us-east-1:123456789012:model-package/" in done.stdout


def test_smlocal_run_abalone_failing_threshold():
    done = _run("--param", "MseThreshold=3.0")
    assert done.returncode != 0
    assert "Execution failed due to MSE > 3.0" in done.stdout
    assert "Pipeline execution Failed" in done.stdout
