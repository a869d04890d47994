"""Controlling pipeline executions: stop, retry, caching, retry policies, callbacks, selective runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import aws_error, unique
from pipeline_support import (
    create_pipeline, definition, job_name, start, steps_of, training_code, training_step, wait_execution, wait_step,
)  # fmt: skip


def _read(s3, uri: str) -> str:
    bucket, key = uri[5:].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_stop_stops_running_jobs_and_starts_nothing_new(sm, s3, bucket):
    code = training_code(s3, bucket)
    steps = [training_step("Slow", bucket, code, env={"MODE": "sleep", "SLEEP": "120"}),
             training_step("Later", bucket, code, DependsOn=["Slow"])]
    arn = start(sm, create_pipeline(sm, steps))
    running = wait_step(sm, arn, "Slow")
    sm.stop_pipeline_execution(PipelineExecutionArn=arn)
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] in ("Stopping",
                                                                                                   "Stopped")
    described = wait_execution(sm, arn, timeout=60)
    assert described["PipelineExecutionStatus"] == "Stopped"
    found = steps_of(sm, arn)
    assert set(found) == {"Slow"}
    assert found["Slow"]["StepStatus"] == "Stopped"
    assert sm.describe_training_job(TrainingJobName=job_name(sm, running))["TrainingJobStatus"] == "Stopped"
    with pytest.raises(ClientError) as exc:
        sm.stop_pipeline_execution(PipelineExecutionArn=arn.replace(arn.rsplit("/", 1)[-1], "nosuchexecut"))
    assert aws_error(exc)[0] == "ResourceNotFound"


def test_retry_reruns_only_failed_and_not_run_steps(sm, s3, bucket):
    code = training_code(s3, bucket)
    gate = f"s3://{bucket}/side-channel/gate"
    steps = [training_step("Good", bucket, code),
             training_step("Gated", bucket, code, env={"MODE": "gate", "GATE": gate}, DependsOn=["Good"]),
             training_step("Last", bucket, code, DependsOn=["Gated"])]
    arn = start(sm, create_pipeline(sm, steps))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"
    before = steps_of(sm, arn)
    assert set(before) == {"Good", "Gated"} and before["Gated"]["StepStatus"] == "Failed"
    with pytest.raises(ClientError) as exc:
        sm.retry_pipeline_execution(PipelineExecutionArn=arn.rsplit("/", 2)[0] + "/execution/aaaaaaaaaaaa")
    assert aws_error(exc)[0] == "ResourceNotFound"
    s3.put_object(Bucket=bucket, Key="side-channel/gate", Body=b"open")
    assert sm.retry_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionArn"] == arn
    described = wait_execution(sm, arn)
    assert described["PipelineExecutionStatus"] == "Succeeded" and "FailureReason" not in described
    after = steps_of(sm, arn)
    assert set(after) == {"Good", "Gated", "Last"}
    assert after["Good"] == before["Good"]  # reused as it was, job and all
    assert after["Gated"]["StepStatus"] == "Succeeded"
    assert after["Gated"]["Metadata"]["TrainingJob"]["Arn"] != before["Gated"]["Metadata"]["TrainingJob"]["Arn"]
    with pytest.raises(ClientError) as exc:
        sm.retry_pipeline_execution(PipelineExecutionArn=arn)
    assert aws_error(exc)[0] == "ConflictException"


def test_cache_hits_skip_the_work(sm, s3, bucket):
    code = training_code(s3, bucket)
    counter = f"s3://{bucket}/side-channel/runs"
    cached = training_step("Cached", bucket, code, env={"MODE": "count", "COUNTER": counter},
                           CacheConfig={"Enabled": True, "ExpireAfter": "PT1H"})
    downstream = {"Name": "Use", "Type": "Fail", "DependsOn": ["Cached"],
                  "Arguments": {"ErrorMessage": {"Get": "Steps.Cached.ModelArtifacts.S3ModelArtifacts"}}}
    pipeline = create_pipeline(sm, [cached, downstream])
    first = start(sm, pipeline)
    wait_execution(sm, first)
    second = start(sm, pipeline)
    wait_execution(sm, second)
    assert _read(s3, counter) == "run\n"  # the second execution did not train
    one, two = steps_of(sm, first), steps_of(sm, second)
    assert "CacheHitResult" not in one["Cached"]
    assert two["Cached"]["CacheHitResult"] == {"SourcePipelineExecutionArn": first}
    assert two["Cached"]["StepStatus"] == "Succeeded"
    assert two["Cached"]["Metadata"] == one["Cached"]["Metadata"]
    assert two["Use"]["FailureReason"] == one["Use"]["FailureReason"]  # properties came from the first run
    # different cache-key attributes → a new run; a third execution points at the original source
    third = start(sm, pipeline)
    wait_execution(sm, third)
    assert steps_of(sm, third)["Cached"]["CacheHitResult"]["SourcePipelineExecutionArn"] in (first, second)
    sm.update_pipeline(PipelineName=pipeline, PipelineDefinition=definition([
        training_step("Cached", bucket, code, env={"MODE": "count", "COUNTER": counter, "X": "1"},
                      CacheConfig={"Enabled": True, "ExpireAfter": "PT1H"})]))
    fourth = start(sm, pipeline)
    wait_execution(sm, fourth)
    assert "CacheHitResult" not in steps_of(sm, fourth)["Cached"]
    assert _read(s3, counter) == "run\nrun\n"


def test_retry_policy_retries_an_internal_job_error(sm, s3, bucket):
    code = training_code(s3, bucket)
    counter = f"s3://{bucket}/side-channel/attempts"
    policy = {"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 1, "BackoffRate": 1.0,
              "MaxAttempts": 2}
    step = training_step("Flaky", bucket, code, env={"MODE": "flaky", "COUNTER": counter}, RetryPolicies=[policy])
    arn = start(sm, create_pipeline(sm, [step]))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    found = steps_of(sm, arn)["Flaky"]
    assert found["AttemptCount"] == 2 and _read(s3, counter) == "2"
    # a failure type the policy does not name is not retried
    other = training_step("Flaky", bucket, code, env={"MODE": "fail"},
                          RetryPolicies=[{**policy, "ExceptionType": ["SageMaker.CAPACITY_ERROR"]}])
    arn = start(sm, create_pipeline(sm, [other]))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"
    assert steps_of(sm, arn)["Flaky"]["AttemptCount"] == 1


def _callback_pipeline(sm, queue_url: str) -> str:
    callback = {"Name": "Approve", "Type": "Callback", "SqsQueueUrl": queue_url,
                "OutputParameters": [{"OutputName": "verdict", "OutputType": "String"}],
                "Arguments": {"number": 5, "who": {"Get": "Parameters.Who"}}}
    after = {"Name": "Echo", "Type": "Fail", "Arguments": {"ErrorMessage": {
        "Get": "Steps.Approve.OutputParameters['verdict']"}}}
    return create_pipeline(sm, [callback, after], [{"Name": "Who", "Type": "String", "DefaultValue": "me"}])


def _receive(sqs, queue_url: str) -> dict:
    for _ in range(100):
        messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
        if messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
            return json.loads(messages[0]["Body"])
    raise AssertionError("no callback message arrived")


def test_callback_step_completed_through_boto3(sm, emulator):
    sqs = emulator.client("sqs")
    queue_url = sqs.create_queue(QueueName=unique("callbacks"))["QueueUrl"]
    arn = start(sm, _callback_pipeline(sm, queue_url), Who="alice")
    body = _receive(sqs, queue_url)
    assert body["pipelineExecutionArn"] == arn and body["status"] == "Executing"
    assert body["arguments"] == {"number": 5, "who": "alice"}
    assert len(body["token"]) == 10 and body["token"].isalnum()
    waiting = wait_step(sm, arn, "Approve")
    assert waiting["Metadata"]["Callback"] == {"CallbackToken": body["token"], "SqsQueueUrl": queue_url}
    answer = sm.send_pipeline_execution_step_success(CallbackToken=body["token"],
                                                     OutputParameters=[{"Name": "verdict", "Value": "approved"}])
    assert answer["PipelineExecutionArn"] == arn
    wait_execution(sm, arn)
    found = steps_of(sm, arn)
    assert found["Approve"]["StepStatus"] == "Succeeded"
    assert found["Approve"]["Metadata"]["Callback"]["OutputParameters"] == [{"Name": "verdict", "Value": "approved"}]
    assert found["Echo"]["FailureReason"] == "approved"
    with pytest.raises(ClientError) as exc:
        sm.send_pipeline_execution_step_success(CallbackToken=body["token"])
    assert aws_error(exc)[0] == "ConflictException"
    with pytest.raises(ClientError) as exc:
        sm.send_pipeline_execution_step_failure(CallbackToken="Zz00000000")
    assert aws_error(exc)[0] == "ResourceNotFound"


def test_callback_failure_and_stop_while_waiting(sm, emulator):
    sqs = emulator.client("sqs")
    queue_url = sqs.create_queue(QueueName=unique("callbacks"))["QueueUrl"]
    pipeline = _callback_pipeline(sm, queue_url)
    arn = start(sm, pipeline)
    token = _receive(sqs, queue_url)["token"]
    sm.send_pipeline_execution_step_failure(CallbackToken=token, FailureReason="rejected by a human")
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"
    assert steps_of(sm, arn)["Approve"]["FailureReason"] == "rejected by a human"
    # stopping: Pipelines sends a "Stopping" message and waits for the answer before stopping
    arn = start(sm, pipeline)
    token = _receive(sqs, queue_url)["token"]
    wait_step(sm, arn, "Approve")
    sm.stop_pipeline_execution(PipelineExecutionArn=arn)
    stopping = _receive(sqs, queue_url)
    assert stopping["status"] == "Stopping" and stopping["token"] == token
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Stopping"
    sm.send_pipeline_execution_step_success(CallbackToken=token)
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Stopped"
    assert set(steps_of(sm, arn)) == {"Approve"}


NOT_EXECUTING = "Only pipelines with 'Executing' status can be stopped"  # what Airflow's SageMakerHook matches


def test_stop_of_an_execution_not_executing_is_a_validation_error(sm, s3, bucket, emulator):
    def refused(arn: str) -> None:
        with pytest.raises(ClientError) as exc:
            sm.stop_pipeline_execution(PipelineExecutionArn=arn)
        assert aws_error(exc) == ("ValidationException", NOT_EXECUTING)

    finished = start(sm, create_pipeline(sm, [training_step("Quick", bucket, training_code(s3, bucket))]))
    assert wait_execution(sm, finished)["PipelineExecutionStatus"] == "Succeeded"
    refused(finished)
    assert sm.describe_pipeline_execution(PipelineExecutionArn=finished)["PipelineExecutionStatus"] == "Succeeded"
    # while Stopping (a Callback step holds the stop until it is answered) and once Stopped
    sqs = emulator.client("sqs")
    queue_url = sqs.create_queue(QueueName=unique("callbacks"))["QueueUrl"]
    arn = start(sm, _callback_pipeline(sm, queue_url))
    token = _receive(sqs, queue_url)["token"]
    wait_step(sm, arn, "Approve")
    # ClientRequestToken is an idempotency token: a retry of the same call gets the same answer
    token_of_the_stop = str(uuid.uuid4())
    for _ in range(2):
        assert sm.stop_pipeline_execution(PipelineExecutionArn=arn, ClientRequestToken=token_of_the_stop)[
            "PipelineExecutionArn"] == arn
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Stopping"
    refused(arn)
    sm.send_pipeline_execution_step_success(CallbackToken=token)
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Stopped"
    refused(arn)


def test_selective_execution_reuses_the_source_steps(sm, s3, bucket):
    code = training_code(s3, bucket)
    steps = [training_step("Prepare", bucket, code),
             training_step("Train", bucket, code, env={"FROM": {"Get": "Steps.Prepare.ModelArtifacts.S3ModelArtifacts"}}),
             training_step("Other", bucket, code)]
    pipeline = create_pipeline(sm, steps)
    source = start(sm, pipeline)
    assert wait_execution(sm, source)["PipelineExecutionStatus"] == "Succeeded"
    arn = sm.start_pipeline_execution(PipelineName=pipeline, SelectiveExecutionConfig={
        "SourcePipelineExecutionArn": source, "SelectedSteps": [{"StepName": "Train"}]})["PipelineExecutionArn"]
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    found = steps_of(sm, arn)
    assert set(found) == {"Prepare", "Train"}
    assert found["Prepare"]["SelectiveExecutionResult"] == {"SourcePipelineExecutionArn": source}
    assert found["Train"]["Metadata"] != steps_of(sm, source)["Train"]["Metadata"]
    with pytest.raises(ClientError) as exc:
        sm.start_pipeline_execution(PipelineName=pipeline, SelectiveExecutionConfig={
            "SourcePipelineExecutionArn": source, "SelectedSteps": [{"StepName": "Nope"}]})
    assert aws_error(exc)[0] == "ValidationException"


@pytest.mark.slow
def test_executions_of_a_killed_server_end_failed_after_restart(tmp_path):
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_"))}
    server = subprocess.Popen([sys.executable, "-m", "smlocal.cli", "up", "--port", "0", "--data-dir", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        line = server.stdout.readline()
        endpoint = line.split("listening on ", 1)[1].split()[0]
        import boto3

        clients = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="smlocal",
                       aws_secret_access_key="smlocal-secret")
        sm, sqs = boto3.client("sagemaker", **clients), boto3.client("sqs", **clients)
        queue_url = sqs.create_queue(QueueName="waiting")["QueueUrl"]
        arn = start(sm, _callback_pipeline(sm, queue_url))
        wait_step(sm, arn, "Approve")
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    with Emulator(load_settings(data_dir=tmp_path, port=0)) as emu:
        sm = emu.client("sagemaker")
        described = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        assert described["PipelineExecutionStatus"] == "Failed"
        assert "server stopped" in described["FailureReason"]
        step = steps_of(sm, arn)["Approve"]
        assert step["StepStatus"] == "Failed" and "server stopped" in step["FailureReason"]
        assert sm.describe_pipeline(PipelineName=arn.split("/")[1])["PipelineArn"]
