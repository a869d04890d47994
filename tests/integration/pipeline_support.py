"""Helpers for the pipeline tests: definitions built from raw JSON, waits, step listings."""

from __future__ import annotations

import json
import time

from conftest import ROLE, script_job, unique, upload_sourcedir

TERMINAL = ("Succeeded", "Failed", "Stopped")

# One training script for every Training step of the tests; MODE (Environment) picks the behaviour.
TRAIN = """
import os, pathlib, sys, time
import boto3

mode = os.environ.get("MODE", "ok")

def _s3_object(uri):  # the job's side channel to the test: an S3 object (jobs see no host file)
    bucket, key = uri[5:].split("/", 1)
    return boto3.client("s3"), bucket, key

def read_text(uri):
    s3, bucket, key = _s3_object(uri)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except s3.exceptions.NoSuchKey:
        return None

def write_text(uri, text):
    s3, bucket, key = _s3_object(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode())

if mode == "sleep":
    time.sleep(float(os.environ.get("SLEEP", "60")))
if mode == "fail":
    raise ValueError("training failed on purpose")
if mode == "gate" and read_text(os.environ["GATE"]) is None:
    sys.exit("the gate object does not exist yet")
if mode == "flaky":
    count = int(read_text(os.environ["COUNTER"]) or 0)
    write_text(os.environ["COUNTER"], str(count + 1))
    if count == 0:
        pathlib.Path("/opt/ml/output/failure").write_text("InternalServerError: simulated transient fault")
        sys.exit(1)
if mode == "count":
    write_text(os.environ["COUNTER"], (read_text(os.environ["COUNTER"]) or "") + "run\\n")
print("score=" + os.environ.get("SCORE", "0.75"))
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write(os.environ.get("TRAINING_JOB_NAME", ""))
"""


def training_code(s3, bucket: str) -> str:
    return upload_sourcedir(s3, bucket, {"train.py": TRAIN})


def training_step(name: str, bucket: str, code: str, env: dict | None = None, **extra) -> dict:
    """A Training step whose Arguments are a CreateTrainingJob request without the job name (as the SDK emits)."""
    args = script_job("unused", bucket, code)
    args.pop("TrainingJobName")
    args["HyperParameters"].pop("sagemaker_job_name")
    args["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "score", "Regex": r"score=([0-9.]+)"}]
    if env:
        args["Environment"] = env
    return {"Name": name, "Type": "Training", "Arguments": args, **extra}


def fail_step(name: str, message, **extra) -> dict:
    """A Fail step ending the execution with ``message`` (a string or an expression)."""
    return {"Name": name, "Type": "Fail", "Arguments": {"ErrorMessage": message}, **extra}


def condition_step(name: str, conditions: list, if_steps=(), else_steps=(), **extra) -> dict:
    """A Condition step running ``if_steps`` when all ``conditions`` hold, else ``else_steps``."""
    return {"Name": name, "Type": "Condition", **extra,
            "Arguments": {"Conditions": conditions, "IfSteps": list(if_steps), "ElseSteps": list(else_steps)}}


def sdk_pipeline(name: str):
    """SDK v2's ``Pipeline`` object for an existing pipeline (needs the ``client_env`` fixture)."""
    import sagemaker
    from sagemaker.workflow.pipeline import Pipeline

    return Pipeline(name=name, sagemaker_session=sagemaker.Session())


def definition(steps: list, parameters: list | None = None, experiment: bool = False) -> str:
    doc = {"Version": "2020-12-01", "Metadata": {}, "Parameters": parameters or [], "Steps": steps,
           "PipelineExperimentConfig": {"ExperimentName": {"Get": "Execution.PipelineName"},
                                        "TrialName": {"Get": "Execution.PipelineExecutionId"}} if experiment else None}
    return json.dumps(doc)


def create_pipeline(sm, steps: list, parameters: list | None = None, *, prefix: str = "pl", **kwargs) -> str:
    name = unique(prefix)
    sm.create_pipeline(PipelineName=name, RoleArn=ROLE,
                       PipelineDefinition=definition(steps, parameters, kwargs.pop("experiment", False)), **kwargs)
    return name


def start(sm, pipeline: str, **parameters) -> str:
    items = [{"Name": k, "Value": str(v)} for k, v in parameters.items()]
    return sm.start_pipeline_execution(PipelineName=pipeline, PipelineParameters=items)["PipelineExecutionArn"]


def wait_execution(sm, arn: str, timeout: float = 180.0, until=TERMINAL) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        described = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        if described["PipelineExecutionStatus"] in until:
            return described
        time.sleep(0.1)
    raise AssertionError(f"execution {arn} still {described['PipelineExecutionStatus']} after {timeout}s")


def wait_step(sm, arn: str, step: str, status: str = "Executing", timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = steps_of(sm, arn).get(step)
        if found and found["StepStatus"] == status and (status != "Executing" or found.get("Metadata")):
            return found
        time.sleep(0.1)
    raise AssertionError(f"step {step} of {arn} did not reach {status}")


def steps_of(sm, arn: str) -> dict[str, dict]:
    pages = sm.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn)
    return {s["StepName"]: s for page in pages for s in page["PipelineExecutionSteps"]}


def job_name(sm, step: dict, kind: str = "TrainingJob") -> str:
    """The name of the job a step ran, in its own case: its ARN carries it lower-cased, which Describe* accepts."""
    describe = {"TrainingJob": sm.describe_training_job, "ProcessingJob": sm.describe_processing_job}[kind]
    return describe(**{f"{kind}Name": step["Metadata"][kind]["Arn"].rsplit("/", 1)[-1]})[f"{kind}Name"]
