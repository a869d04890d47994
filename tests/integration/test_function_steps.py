"""SDK v2 ``@step`` function steps and ``@remote`` functions, unchanged, against the emulator.

Each function runs as a training job with the SDK's job driver (ContainerEntrypoint) on the SDK's
serialized function and arguments in S3; results and exceptions come back through S3 as on AWS.
"""

from __future__ import annotations

import json

import pytest

from conftest import unique

pytestmark = pytest.mark.slow

# what a user outside Studio names on AWS (the SDK's own default, image_uris.get_base_python_image_uri)
IMAGE = "081325390199.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-310:1.0"
INSTANCE = "ml.m5.large"


@pytest.fixture
def session(client_env):
    import sagemaker

    return sagemaker.Session()


def _settings(session) -> dict:
    import sagemaker

    return dict(image_uri=IMAGE, instance_type=INSTANCE, role=sagemaker.get_execution_role())


def _run(pipeline, session):
    pipeline.upsert(role_arn=_settings(session)["role"])
    execution = pipeline.start()
    try:
        execution.wait(delay=1, max_attempts=600)
    except Exception:  # noqa: BLE001 - a Failed execution is an outcome the tests look at
        pass
    return execution, {step["StepName"]: step for step in execution.list_steps()}


def test_step_pipeline_passes_data_and_reports_the_failing_function(session):
    from sagemaker.remote_function.errors import RemoteFunctionError
    from sagemaker.workflow.function_step import step
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.step_outputs import get_step

    settings = _settings(session)

    @step(name="make", **settings)
    def make(n):
        return [i * i for i in range(n)]

    @step(name="total", **settings)
    def total(values):
        return {"total": sum(values), "count": len(values)}

    @step(name="check", **settings)
    def check(summary):
        raise ValueError(f"total {summary['total']} of {summary['count']} is too small")

    last = check(total(make(4)))
    pipeline = Pipeline(name=unique("fn-fail"), steps=[last], sagemaker_session=session)
    execution, steps = _run(pipeline, session)

    assert execution.describe()["PipelineExecutionStatus"] == "Failed"
    assert (steps["make"]["StepStatus"], steps["total"]["StepStatus"]) == ("Succeeded", "Succeeded")
    assert steps["check"]["StepStatus"] == "Failed"
    # as AWS words it (the SDK's integration tests check this text)
    assert steps["check"]["FailureReason"].startswith(
        "ClientError: AlgorithmError: ValueError('total 14 of 4 is too small')")
    assert execution.result(step_name="make") == [0, 1, 4, 9]
    assert execution.result(step_name="total") == {"total": 14, "count": 4}
    with pytest.raises(RemoteFunctionError, match="not in Completed status"):
        execution.result(step_name=get_step(last).name)


def test_step_pipeline_result_through_a_condition(session):
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionGreaterThan
    from sagemaker.workflow.function_step import step
    from sagemaker.workflow.parameters import ParameterInteger
    from sagemaker.workflow.pipeline import Pipeline

    settings = _settings(session)
    size = ParameterInteger(name="Size", default_value=3)

    @step(name="load", **settings)
    def load(n):
        return list(range(1, n + 1))

    @step(name="add", **settings)
    def add(values, extra):
        return sum(values) + extra

    @step(name="report", **settings)
    def report(values, total):
        return f"{len(values)} values, total {total}"

    values = load(size)
    total = add(values, 10)
    gate = ConditionStep(name="big-enough", conditions=[ConditionGreaterThan(left=total, right=5)],
                         if_steps=[report(values, total)], else_steps=[])
    pipeline = Pipeline(name=unique("fn-ok"), steps=[gate], parameters=[size], sagemaker_session=session)
    execution, steps = _run(pipeline, session)

    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded", steps
    assert steps["big-enough"]["Metadata"]["Condition"]["Outcome"] in ("True", "true")
    assert execution.result(step_name="add") == 16
    assert execution.result(step_name="report") == "3 values, total 16"


def test_remote_returns_the_value_and_raises_the_functions_exception(session):
    from sagemaker.remote_function import remote

    @remote(sagemaker_session=session, **_settings(session))
    def divide(a, b):
        return {"quotient": a / b}

    assert divide(7, 2) == {"quotient": 3.5}
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        divide(1, 0)
    failed = [job for job in session.sagemaker_client.list_training_jobs(
        NameContains="divide", StatusEquals="Failed")["TrainingJobSummaries"]]
    reason = session.describe_training_job(failed[0]["TrainingJobName"])["FailureReason"]
    assert "ZeroDivisionError('division by zero')" in reason


def test_a_tampered_serialized_function_is_refused(session, s3):
    import cloudpickle

    from sagemaker.workflow.function_step import step
    from sagemaker.workflow.pipeline import Pipeline

    @step(name="honest", **_settings(session))
    def honest():
        return "the original function"

    pipeline = Pipeline(name=unique("fn-tamper"), steps=[honest()], sagemaker_session=session)
    pipeline.upsert(role_arn=_settings(session)["role"])
    stored = session.sagemaker_client.describe_pipeline(PipelineName=pipeline.name)["PipelineDefinition"]
    args = json.loads(stored)["Steps"][0]["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    base, build = args[args.index("--s3_base_uri") + 1], args[args.index("--func_step_s3_dir") + 1]
    bucket, prefix = base[5:].split("/", 1)
    # someone with write access to the bucket swaps the function (its metadata.json hash is unchanged)
    s3.put_object(Bucket=bucket, Key=f"{prefix}/honest/{build}/function/payload.pkl",
                  Body=cloudpickle.dumps(lambda: "a replaced function"))
    execution = pipeline.start()
    try:
        execution.wait(delay=1, max_attempts=600)
    except Exception:  # noqa: BLE001 - the execution fails
        pass
    (record,) = execution.list_steps()
    assert record["StepStatus"] == "Failed"
    assert "Integrity check for the serialized function or data failed" in record["FailureReason"]
    assert record["FailureReason"].startswith("ClientError: AlgorithmError: DeserializationError(")
