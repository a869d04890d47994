"""Selective execution (SelectiveExecutionConfig) as AWS runs and refuses it, through SDK v2's
``Pipeline.start(selective_execution_config=...)`` and boto3 against the emulator."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import aws_error
from pipeline_support import (
    create_pipeline, job_name, sdk_pipeline, start, steps_of, training_code, training_step, wait_execution, wait_step,
)  # fmt: skip

MODE = [{"Name": "Mode", "Type": "String", "DefaultValue": "ok"},
        {"Name": "Gate", "Type": "String", "DefaultValue": "s3://unused/gate"}]
PREPARED = {"Get": "Steps.Prepare.ModelArtifacts.S3ModelArtifacts"}


def _chain(s3, bucket: str) -> list[dict]:
    """Prepare → Train (reads Prepare's model artifacts) → Evaluate; Other stands alone."""
    code = training_code(s3, bucket)
    return [training_step("Prepare", bucket, code, env={"MODE": {"Get": "Parameters.Mode"}, "SLEEP": "120",
                                                           "GATE": {"Get": "Parameters.Gate"}}),
            training_step("Train", bucket, code, env={"FROM": PREPARED}),
            training_step("Evaluate", bucket, code, DependsOn=["Train"]),
            training_step("Other", bucket, code)]


def test_selective_rerun_takes_the_other_steps_from_the_source(sm, s3, bucket, client_env):
    from sagemaker.workflow.selective_execution_config import SelectiveExecutionConfig

    name = create_pipeline(sm, _chain(s3, bucket), MODE)
    pipeline = sdk_pipeline(name)
    source = start(sm, name)
    assert wait_execution(sm, source)["PipelineExecutionStatus"] == "Succeeded"
    before = steps_of(sm, source)

    # no ARN given: the SDK references the latest execution (the source)
    execution = pipeline.start(selective_execution_config=SelectiveExecutionConfig(selected_steps=["Train"]))
    execution.wait(delay=1, max_attempts=120)
    described = execution.describe()
    assert described["PipelineExecutionStatus"] == "Succeeded"
    assert described["SelectiveExecutionConfig"] == {"SourcePipelineExecutionArn": source,
                                                     "SelectedSteps": [{"StepName": "Train"}]}
    listed = execution.list_steps()
    assert [s["StepName"] for s in listed] == ["Train", "Prepare"]  # newest first; downstream/unrelated not run
    train, prepare = listed
    assert train["StepStatus"] == "Succeeded" and "SelectiveExecutionResult" not in train
    assert train["Metadata"]["TrainingJob"]["Arn"] != before["Train"]["Metadata"]["TrainingJob"]["Arn"]
    assert prepare["SelectiveExecutionResult"] == {"SourcePipelineExecutionArn": source}
    assert {k: v for k, v in prepare.items() if k != "SelectiveExecutionResult"} == before["Prepare"]
    # the selected step read the source's Prepare properties
    source_model = sm.describe_training_job(TrainingJobName=job_name(sm, before["Prepare"]))["ModelArtifacts"]
    rerun = sm.describe_training_job(TrainingJobName=job_name(sm, train))
    assert rerun["Environment"]["FROM"] == source_model["S3ModelArtifacts"]

    # steps with no upstream dependency run without any reference execution
    alone = pipeline.start(selective_execution_config=SelectiveExecutionConfig(
        selected_steps=["Prepare", "Train"], reference_latest_execution=False))
    alone.wait(delay=1, max_attempts=120)
    assert alone.describe()["PipelineExecutionStatus"] == "Succeeded"
    assert "SourcePipelineExecutionArn" not in alone.describe()["SelectiveExecutionConfig"]
    found = steps_of(sm, alone.arn)
    assert set(found) == {"Prepare", "Train"}
    assert not any("SelectiveExecutionResult" in step for step in found.values())

    # a retried selective execution runs its selection again, not the steps downstream of it
    gated = sm.start_pipeline_execution(
        PipelineName=name, PipelineParameters=[{"Name": "Mode", "Value": "gate"},
                                               {"Name": "Gate", "Value": f"s3://{bucket}/side-channel/gate"}],
        SelectiveExecutionConfig={"SelectedSteps": [{"StepName": "Prepare"}]})["PipelineExecutionArn"]
    assert wait_execution(sm, gated)["PipelineExecutionStatus"] == "Failed"
    s3.put_object(Bucket=bucket, Key="side-channel/gate", Body=b"open")
    sm.retry_pipeline_execution(PipelineExecutionArn=gated)
    assert wait_execution(sm, gated)["PipelineExecutionStatus"] == "Succeeded"
    assert set(steps_of(sm, gated)) == {"Prepare"}


def _refused(sm, name: str, config: dict) -> str:
    with pytest.raises(ClientError) as exc:
        sm.start_pipeline_execution(PipelineName=name, SelectiveExecutionConfig=config)
    code, message = aws_error(exc)
    assert code == "ValidationException"
    return message


def test_invalid_selective_configs_are_refused_with_aws_wording(sm, s3, bucket):
    steps = _chain(s3, bucket)
    name = create_pipeline(sm, steps, MODE)
    succeeded = start(sm, name)
    failed = start(sm, name, Mode="fail")
    assert wait_execution(sm, succeeded)["PipelineExecutionStatus"] == "Succeeded"
    assert wait_execution(sm, failed)["PipelineExecutionStatus"] == "Failed"
    other = start(sm, create_pipeline(sm, steps, MODE))
    running = start(sm, name, Mode="sleep")
    wait_step(sm, running, "Prepare")

    def selected(*names: str) -> list[dict]:
        return [{"StepName": n} for n in names]

    # AWS's own wording (as reported in aws/sagemaker-python-sdk#4444)
    assert _refused(sm, name, {"SelectedSteps": selected("Train")}) == (
        "Invalid SourcePipelineExecutionArn: null. The selected steps [Train] have dependencies on [Prepare]")
    message = _refused(sm, name, {"SourcePipelineExecutionArn": succeeded, "SelectedSteps": selected("Nope")})
    assert "[Nope]" in message
    # every step on a path between two selected steps must be selected
    message = _refused(sm, name, {"SourcePipelineExecutionArn": succeeded,
                                  "SelectedSteps": selected("Prepare", "Evaluate")})
    assert "not connected" in message and "[Train]" in message
    for source in (other, running):  # another pipeline's execution; one still Executing
        message = _refused(sm, name, {"SourcePipelineExecutionArn": source, "SelectedSteps": selected("Train")})
        assert message.startswith(f"Invalid SourcePipelineExecutionArn: {source}.")
    message = _refused(sm, name, {"SourcePipelineExecutionArn": failed, "SelectedSteps": selected("Train")})
    assert message.startswith(f"Invalid SourcePipelineExecutionArn: {failed}.") and "[Prepare]" in message
    sm.stop_pipeline_execution(PipelineExecutionArn=running)

    # a failed source is fine for steps whose dependencies succeeded in it: re-run the failed step and on
    rerun = sm.start_pipeline_execution(PipelineName=name, SelectiveExecutionConfig={
        "SourcePipelineExecutionArn": failed, "SelectedSteps": selected("Prepare", "Train")})["PipelineExecutionArn"]
    assert wait_execution(sm, rerun)["PipelineExecutionStatus"] == "Succeeded"
    assert set(steps_of(sm, rerun)) == {"Prepare", "Train"}
    assert wait_execution(sm, running)["PipelineExecutionStatus"] == "Stopped"
    executions = sm.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]
    assert len(executions) == 4  # no refused request made an execution
