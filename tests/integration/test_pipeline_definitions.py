"""Pipeline definitions as CreatePipeline/UpdatePipeline validate them, and booleans as executions render them.

Real boto3 and the real SageMaker SDK v2 against the running emulator. The AWS facts come from the SDK's own
integration tests (tests/integ/sagemaker/workflow/test_fail_steps.py): a step depending on a FailStep is refused
with "CondStep can not depends on FailStep", and a Join of a ConditionStep's Outcome reads
"Failed due to xxx == yyy returns: false".
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from pipeline_support import (
    condition_step, create_pipeline, definition, fail_step, job_name, start, steps_of, training_code, training_step,
    wait_execution,
)  # fmt: skip

from conftest import ROLE, aws_error, unique

PREFIX = "Unable to parse pipeline definition. "
FLAG = [{"Name": "Flag", "Type": "Boolean", "DefaultValue": False}]


def _join(on: str, *values) -> dict:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def _get(reference: str) -> dict:
    return {"Get": reference}


CODE = "s3://not-read-at-create/code/sourcedir.tar.gz"
INVALID = {
    "depends on a fail step": (
        [fail_step("Stop", "stop"), condition_step("CondStep", [], DependsOn=["Stop"])], [],
        "Step CondStep can not depends on FailStep Stop."),
    "depends on a fail step in a branch": (
        [condition_step("Gate", [], else_steps=[fail_step("Stop", "stop")]), condition_step("After", [], DependsOn=["Stop"])],
        [], "Step After can not depends on FailStep Stop."),
    "unknown property of a training step": (
        [training_step("Train", "bkt", CODE), fail_step("Stop", _get("Steps.Train.ModelArtifact.S3ModelArtifacts"))],
        [], "'Steps.Train.ModelArtifact.S3ModelArtifacts' in step 'Stop' references property 'ModelArtifact', "
            "which a Training step such as 'Train' does not have."),
    "unknown nested property of a processing step": (
        [{"Name": "Pre", "Type": "Processing", "Arguments": {}},
         fail_step("Stop", _get("Steps.Pre.ProcessingOutputConfig.Outputs['train'].S3Output.Uri"))],
        [], "'Steps.Pre.ProcessingOutputConfig.Outputs['train'].S3Output.Uri' in step 'Stop' references property "
            "'ProcessingOutputConfig.Outputs['train'].S3Output.Uri', which a Processing step such as 'Pre' does "
            "not have."),
    "unknown property of a condition step": (
        [condition_step("Gate", []), fail_step("Stop", _join(" ", _get("Steps.Gate.Result")))], [],
        "'Steps.Gate.Result' in step 'Stop' references property 'Result', which a Condition step such as 'Gate' "
        "does not have."),
    "a fail step's property": (
        [condition_step("Gate", [], else_steps=[fail_step("Stop", "stop")]), fail_step("Later", _get("Steps.Stop.ErrorMessage"))],
        [], "'Steps.Stop.ErrorMessage' in step 'Later' references step 'Stop', a FailStep, which has no properties."),
    "step name with a space": (
        [fail_step("Bad name", "x")], [],
        "Value 'Bad name' at 'Steps.Name' failed to satisfy constraint: Member must satisfy regular expression "
        "pattern: [A-Za-z0-9\\-_]*"),
    "step name longer than 64": (
        [fail_step("S" * 65, "x")], [],
        f"Value '{'S' * 65}' at 'Steps.Name' failed to satisfy constraint: Member must have length less than or "
        "equal to 64"),
    "ordering a boolean": (
        [condition_step("Gate", [{"Type": "GreaterThan", "LeftValue": _get("Parameters.Flag"), "RightValue": 1}])], FLAG,
        "Condition of type GreaterThan in step 'Gate' is not supported between [Parameters.Flag] of type Boolean and "
        "[1] of type Integer."),
    "a condition outcome equal to a number": (
        [condition_step("First", []),
         condition_step("Gate", [{"Type": "Equals", "LeftValue": _get("Steps.First.Outcome"), "RightValue": 1}])], [],
        "Condition of type Equals in step 'Gate' is not supported between [Steps.First.Outcome] of type Boolean and "
        "[1] of type Integer."),
}


def _document(steps: list, parameters: list, version: str = "2020-12-01") -> str:
    doc = json.loads(definition(steps, parameters))
    doc["Version"] = version
    return json.dumps(doc)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_definitions_are_refused_at_create_and_update(sm, case):
    steps, parameters, message = INVALID[case]
    name = unique("def")
    with pytest.raises(ClientError) as exc:
        sm.create_pipeline(PipelineName=name, RoleArn=ROLE, PipelineDefinition=_document(steps, parameters))
    assert aws_error(exc) == ("ValidationException", PREFIX + message)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    good = _document([condition_step("Only", [])], [])
    sm.create_pipeline(PipelineName=name, RoleArn=ROLE, PipelineDefinition=good)
    with pytest.raises(ClientError) as exc:
        sm.update_pipeline(PipelineName=name, PipelineDefinition=_document(steps, parameters))
    assert aws_error(exc) == ("ValidationException", PREFIX + message)
    assert sm.describe_pipeline(PipelineName=name)["PipelineDefinition"] == good  # the refused update changed nothing


def test_unknown_definition_version_is_refused(sm):
    with pytest.raises(ClientError) as exc:
        sm.create_pipeline(PipelineName=unique("ver"), RoleArn=ROLE,
                           PipelineDefinition=_document([condition_step("Only", [])], [], version="2019-01-01"))
    assert aws_error(exc) == ("ValidationException", PREFIX + "Model Validation failed: Value '2019-01-01' for "
                              "'Version' failed to satisfy enum value set: [2020-12-01]")


def test_sdk_step_depending_on_a_fail_step_is_refused(client_env):
    """The SDK's test_invalid_pipeline_depended_on_fail_step, unchanged but for the session."""
    import sagemaker
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionEquals
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.parameters import ParameterInteger
    from sagemaker.workflow.pipeline import Pipeline

    param = ParameterInteger(name="MyInt", default_value=2)
    step_fail = FailStep(name="FailStep", error_message="Failed pipeline execution")
    step_cond = ConditionStep(name="CondStep", conditions=[ConditionEquals(left=param, right=1)], if_steps=[],
                              else_steps=[], depends_on=["FailStep"])
    pipeline = Pipeline(name=unique("sdk-fail-dep"), steps=[step_cond, step_fail], parameters=[param],
                        sagemaker_session=sagemaker.Session())
    with pytest.raises(ClientError) as error:
        pipeline.create(ROLE)
    assert "CondStep can not depends on FailStep" in str(error.value)
    assert aws_error(error)[0] == "ValidationException"


def test_sdk_join_of_a_condition_outcome_reads_false(client_env, sm):
    """The SDK's test_two_step_fail_pipeline_with_join_fn: the Outcome joins as ``false``, Metadata keeps ``False``."""
    import sagemaker
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionEquals
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import Join
    from sagemaker.workflow.parameters import ParameterInteger
    from sagemaker.workflow.pipeline import Pipeline

    param = ParameterInteger(name="MyInt", default_value=2)
    step_cond = ConditionStep(name="CondStep", conditions=[ConditionEquals(left=param, right=1)], if_steps=[],
                              else_steps=[])
    step_fail = FailStep(name="FailStep", error_message=Join(
        on=": ", values=["Failed due to xxx == yyy returns", step_cond.properties.Outcome]))
    pipeline = Pipeline(name=unique("sdk-join"), steps=[step_cond, step_fail], parameters=[param],
                        sagemaker_session=sagemaker.Session())
    pipeline.create(ROLE)
    execution = pipeline.start(parameters={"MyInt": 3})
    assert wait_execution(sm, execution.arn)["PipelineExecutionStatus"] == "Failed"  # the FailStep ends it
    found = {s["StepName"]: s for s in execution.list_steps()}
    assert found["CondStep"]["StepStatus"] == "Succeeded"
    assert found["CondStep"]["Metadata"] == {"Condition": {"Outcome": "False"}}  # the API's ConditionOutcome enum
    assert found["FailStep"]["FailureReason"] == "Failed due to xxx == yyy returns: false"
    assert found["FailStep"]["Metadata"]["Fail"]["ErrorMessage"] == "Failed due to xxx == yyy returns: false"


def test_booleans_reach_a_job_and_a_join_as_true_and_false(sm, s3, bucket):
    """A Boolean parameter and a condition's Outcome, joined and as plain values, in a training job's environment."""
    gate = condition_step("Gate", [{"Type": "Equals", "LeftValue": _get("Parameters.Flag"), "RightValue": True}])
    env = {"JOINED": _join(",", _get("Parameters.Flag"), _get("Steps.Gate.Outcome")),
           "FLAG": _join("", _get("Parameters.Flag")),  # ParameterBoolean.to_string()
           "OUTCOME": _get("Steps.Gate.Outcome")}
    show = training_step("Show", bucket, training_code(s3, bucket), env=env)
    report = fail_step("Report", _join(": ", "Flag and outcome", _get("Parameters.Flag"), _get("Steps.Gate.Outcome")),
                   DependsOn=["Show"])
    pipeline = create_pipeline(sm, [gate, show, report], FLAG)
    for flag, text in ((None, "false"), ("true", "true")):
        arn = start(sm, pipeline, **({"Flag": flag} if flag else {}))
        assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"  # the Fail step ends it
        found = steps_of(sm, arn)
        assert found["Gate"]["Metadata"] == {"Condition": {"Outcome": text.capitalize()}}
        environment = sm.describe_training_job(TrainingJobName=job_name(sm, found["Show"]))["Environment"]
        assert {k: environment[k] for k in env} == {"JOINED": f"{text},{text}", "FLAG": text, "OUTCOME": text}
        assert found["Report"]["FailureReason"] == f"Flag and outcome: {text}: {text}"


def test_a_retry_reads_a_condition_outcome_stored_as_a_string_by_an_older_release(tmp_path):
    """Executions recorded before Outcome became a JSON boolean stored "True"/"False"; a retry still takes their branch."""
    import sqlite3

    from smlocal.config import load_settings
    from smlocal.server import Emulator

    gate = condition_step("Gate", [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}],
                          [fail_step("IfBranch", "took the if branch")], [fail_step("ElseBranch", "took the else branch")])
    with Emulator(load_settings(data_dir=tmp_path, port=0)) as emu:
        sm = emu.client("sagemaker")
        arn = start(sm, create_pipeline(sm, [gate], prefix="oldoutcome"))
        wait_execution(sm, arn)
        assert steps_of(sm, arn)["IfBranch"]["FailureReason"] == "took the if branch"
    with sqlite3.connect(next(tmp_path.rglob("state.sqlite3"))) as db:
        query = "SELECT data FROM records WHERE kind='PipelineExecution' AND name=?"
        (data,) = db.execute(query, (arn,)).fetchone()
        doc = json.loads(data)
        assert doc["_Steps"]["Gate"]["_Properties"] == {"Outcome": True}
        doc["_Steps"]["Gate"]["_Properties"] = {"Outcome": "True"}  # as the older release stored it
        db.execute("UPDATE records SET data=? WHERE kind='PipelineExecution' AND name=?", (json.dumps(doc), arn))
    with Emulator(load_settings(data_dir=tmp_path, port=0)) as emu:
        sm = emu.client("sagemaker")
        sm.retry_pipeline_execution(PipelineExecutionArn=arn)
        assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"
        found = steps_of(sm, arn)
        assert found["IfBranch"]["FailureReason"] == "took the if branch" and "ElseBranch" not in found
