"""Unit tests for smlocal.pipelines.definition: parsing, validation, dependencies, parameters."""

from __future__ import annotations

import copy
import json
import socket

import pytest

from smlocal.errors import ValidationError
from smlocal.pipelines.conditions import evaluate_conditions
from smlocal.pipelines.definition import (
    CacheConfig,
    ParameterDefinition,
    PropertyFileDefinition,
    RetryPolicy,
    branch_owner,
    dependencies,
    parse_definition,
    parse_duration,
    resolve_parameters,
)
from smlocal.pipelines.expressions import EvaluationContext, evaluate, referenced_steps

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
PREFIX = "Unable to parse pipeline definition."


def _build_sdk_pipeline_definition() -> str:
    """Build an abalone-like pipeline with the real SageMaker Python SDK, without any network."""
    import boto3
    from sagemaker import image_uris
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.model import Model
    from sagemaker.processing import ProcessingInput, ProcessingOutput
    from sagemaker.sklearn.processing import SKLearnProcessor
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import (
        ConditionEquals, ConditionGreaterThan, ConditionIn, ConditionLessThanOrEqualTo,
        ConditionNot, ConditionOr,
    )  # fmt: skip
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import Join, JsonGet
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.parameters import (
        ParameterBoolean, ParameterFloat, ParameterInteger, ParameterString,
    )  # fmt: skip
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_context import PipelineSession
    from sagemaker.workflow.properties import PropertyFile
    from sagemaker.workflow.retry import (
        SageMakerJobExceptionTypeEnum, SageMakerJobStepRetryPolicy, StepExceptionTypeEnum,
        StepRetryPolicy,
    )  # fmt: skip
    from sagemaker.workflow.steps import CacheConfig as SdkCacheConfig
    from sagemaker.workflow.steps import ProcessingStep, TrainingStep

    no_telemetry = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
    session = PipelineSession(boto_session=boto3.Session(region_name="us-east-1"),
                              default_bucket="my-bucket", sagemaker_config=no_telemetry)
    session.default_bucket = lambda: "my-bucket"  # skip the S3 bucket existence check

    input_data = ParameterString("InputData", default_value="s3://my-bucket/abalone/abalone.csv")
    instance_count = ParameterInteger("ProcessingInstanceCount", default_value=1)
    mse_threshold = ParameterFloat("MseThreshold", default_value=6.0)
    approval = ParameterString("ModelApprovalStatus", default_value="PendingManualApproval",
                               enum_values=["PendingManualApproval", "Approved"])
    strict = ParameterBoolean("Strict", default_value=False)
    region = ParameterString("Region")  # no default: must be supplied at start

    processor = SKLearnProcessor(framework_version="0.23-1", role=ROLE, instance_type="ml.m5.xlarge",
                                 instance_count=instance_count, sagemaker_session=session)
    pre = ProcessingStep(
        name="Pre",
        step_args=processor.run(
            inputs=[ProcessingInput(source=input_data, destination="/opt/ml/processing/input")],
            outputs=[ProcessingOutput(output_name="train", source="/opt/ml/processing/train"),
                     ProcessingOutput(output_name="test", source="/opt/ml/processing/test")],
            code="s3://my-bucket/code/preprocess.py"),
        cache_config=SdkCacheConfig(enable_caching=True, expire_after="P30D"),
        retry_policies=[StepRetryPolicy(exception_types=[StepExceptionTypeEnum.THROTTLING],
                                        max_attempts=3)],
    )
    baseline = ProcessingStep(
        name="Baseline",
        step_args=processor.run(
            outputs=[ProcessingOutput(output_name="baseline", source="/opt/ml/processing/out")],
            code="s3://my-bucket/code/baseline.py"),
    )
    image = image_uris.retrieve("xgboost", "us-east-1", "1.0-1")
    estimator = Estimator(image_uri=image, role=ROLE, instance_type="ml.m5.xlarge", instance_count=1,
                          output_path="s3://my-bucket/model", sagemaker_session=session)
    estimator.set_hyperparameters(objective="reg:linear", num_round=50)
    train = TrainingStep(
        name="Train",
        step_args=estimator.fit({"train": TrainingInput(
            s3_data=pre.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri,
            content_type="text/csv")}),
        retry_policies=[SageMakerJobStepRetryPolicy(
            exception_types=[SageMakerJobExceptionTypeEnum.CAPACITY_ERROR], expire_after_mins=30,
            interval_seconds=5, backoff_rate=1.5)],
    )
    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluation = ProcessingStep(
        name="Eval",
        step_args=processor.run(
            inputs=[ProcessingInput(source=train.properties.ModelArtifacts.S3ModelArtifacts,
                                    destination="/opt/ml/processing/model"),
                    ProcessingInput(
                        source=pre.properties.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri,
                        destination="/opt/ml/processing/test")],
            outputs=[ProcessingOutput(output_name="evaluation", source="/opt/ml/processing/evaluation")],
            code="s3://my-bucket/code/evaluate.py"),
        property_files=[report],
        depends_on=["Baseline"],
    )
    model = Model(image_uri=image, model_data=train.properties.ModelArtifacts.S3ModelArtifacts,
                  role=ROLE, sagemaker_session=session)
    register = ModelStep(name="Register", step_args=model.register(
        content_types=["text/csv"], response_types=["text/csv"],
        inference_instances=["ml.m5.xlarge"], transform_instances=["ml.m5.xlarge"],
        model_package_group_name="abalone", approval_status=approval))
    create = ModelStep(name="Create", step_args=model.create(instance_type="ml.m5.xlarge"))
    mse = JsonGet(step_name=evaluation.name, property_file=report, json_path="regression_metrics.mse.value")
    fail = FailStep(name="Fail", error_message=Join(
        on=" ", values=["MSE", mse, "above", mse_threshold, "in", ExecutionVariables.PIPELINE_EXECUTION_ID]))
    stop = FailStep(name="Stop", error_message="strict mode")
    check_more = ConditionStep(
        name="CheckMore",
        conditions=[ConditionGreaterThan(
            left=train.properties.FinalMetricDataList["validation:rmse"].Value, right=10)],
        if_steps=[stop], else_steps=[fail])
    check = ConditionStep(
        name="Check",
        conditions=[ConditionLessThanOrEqualTo(left=mse, right=mse_threshold),
                    ConditionNot(ConditionOr([ConditionIn(value=input_data, in_values=["a", "b"]),
                                              ConditionEquals(left=strict, right=True)]))],
        if_steps=[register, create], else_steps=[check_more])
    pipeline = Pipeline(
        name="Abalone",
        parameters=[input_data, instance_count, mse_threshold, approval, strict, region],
        steps=[pre, baseline, train, evaluation, check],
        sagemaker_session=session,
    )
    return pipeline.definition()


@pytest.fixture(scope="module")
def sdk_text():
    import sagemaker  # noqa: F401 - SDK v2 is a test dependency: never skipped

    def no_network(*args, **kwargs):
        raise OSError("network access is disabled in unit tests")

    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1", "SAGEMAKER_SUPPRESS_V2_WARNING": "1"}.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setattr(socket.socket, "connect", no_network)
        patch.setattr(socket, "getaddrinfo", no_network)
        return _build_sdk_pipeline_definition()


@pytest.fixture
def sdk_doc(sdk_text):
    return json.loads(sdk_text)


@pytest.fixture
def sdk(sdk_text):
    return parse_definition(sdk_text)


def step(name, kind="Fail", arguments=None, **extra):
    return {"Name": name, "Type": kind, "Arguments": {} if arguments is None else arguments, **extra}


def cond(name, **extra):
    """A Condition step with no conditions: a step others may depend on and read (``Outcome``)."""
    return step(name, "Condition", {"Conditions": [], "IfSteps": [], "ElseSteps": []}, **extra)


def doc(*steps, parameters=None, **extra):
    return {"Version": "2020-12-01", "Parameters": parameters or [], "Steps": list(steps), **extra}


def rejects(document, match):
    with pytest.raises(ValidationError, match=match) as caught:
        parse_definition(document)
    assert caught.value.message.startswith(PREFIX)
    assert (caught.value.code, caught.value.status) == ("ValidationException", 400)
    return caught.value


# --- the SDK-generated abalone pipeline --------------------------------------------------------


def test_sdk_definition_parses(sdk, sdk_doc):
    assert sdk.version == "2020-12-01" and sdk.metadata == {}
    assert [s.name for s in sdk.steps] == ["Pre", "Baseline", "Train", "Eval", "Check"]
    assert [s.name for s in sdk.all_steps()] == [
        "Pre", "Baseline", "Train", "Eval", "Check", "Register-RegisterModel",
        "Create-CreateModel", "CheckMore", "Stop", "Fail"]
    assert {s.name: s.type for s in sdk.all_steps()} == {
        "Pre": "Processing", "Baseline": "Processing", "Train": "Training", "Eval": "Processing",
        "Check": "Condition", "Register-RegisterModel": "RegisterModel", "Create-CreateModel": "Model",
        "CheckMore": "Condition", "Stop": "Fail", "Fail": "Fail"}
    assert sdk.experiment_config == {"ExperimentName": {"Get": "Execution.PipelineName"},
                                     "TrialName": {"Get": "Execution.PipelineExecutionId"}}
    assert sdk.step("Train").arguments == sdk_doc["Steps"][2]["Arguments"]
    assert sdk.step("Fail").raw["Name"] == "Fail"
    with pytest.raises(KeyError):
        sdk.step("Nope")


def test_sdk_parameters(sdk):
    assert sdk.parameters == (
        ParameterDefinition("InputData", "String", "s3://my-bucket/abalone/abalone.csv", True),
        ParameterDefinition("ProcessingInstanceCount", "Integer", 1, True),
        ParameterDefinition("MseThreshold", "Float", 6.0, True),
        ParameterDefinition("ModelApprovalStatus", "String", "PendingManualApproval", True,
                            ("PendingManualApproval", "Approved")),
        ParameterDefinition("Strict", "Boolean", False, True),
        ParameterDefinition("Region", "String", None, False),
    )


def test_sdk_step_options(sdk):
    assert sdk.step("Pre").cache_config == CacheConfig(True, "P30D", 30 * 86400)
    assert sdk.step("Pre").retry_policies == (RetryPolicy(("Step.THROTTLING",), 1, 2.0, 3, None),)
    assert sdk.step("Train").retry_policies == (
        RetryPolicy(("SageMaker.CAPACITY_ERROR",), 5, 1.5, None, 30),)
    assert sdk.step("Train").cache_config is None
    assert sdk.step("Eval").property_files == (
        PropertyFileDefinition("EvaluationReport", "evaluation", "evaluation.json"),)
    assert sdk.step("Eval").property_file("EvaluationReport").output_name == "evaluation"
    assert sdk.step("Eval").property_file("Other") is None
    assert sdk.step("Eval").depends_on == ("Baseline",)
    check = sdk.step("Check")
    assert [c["Type"] for c in check.conditions] == ["LessThanOrEqualTo", "Not"]
    assert [s.name for s in check.if_steps] == ["Register-RegisterModel", "Create-CreateModel"]
    assert [s.name for s in check.else_steps] == ["CheckMore"]
    assert [s.name for s in sdk.step("CheckMore").else_steps] == ["Fail"]


def test_sdk_dependency_graph(sdk):
    assert dependencies(sdk) == {
        "Pre": set(),
        "Baseline": set(),
        "Train": {"Pre"},
        "Eval": {"Pre", "Train", "Baseline"},
        "Check": {"Eval"},
        "Register-RegisterModel": {"Train"},
        "Create-CreateModel": {"Train"},
        "CheckMore": {"Train"},
        "Stop": set(),
        "Fail": {"Eval"},
    }
    with_owners = dependencies(sdk, include_branch_owner=True)
    assert with_owners["Register-RegisterModel"] == {"Train", "Check"}
    assert with_owners["CheckMore"] == {"Train", "Check"}
    assert with_owners["Stop"] == {"CheckMore"}
    assert with_owners["Fail"] == {"Eval", "CheckMore"}
    assert with_owners["Eval"] == {"Pre", "Train", "Baseline"}


def test_sdk_branch_owner(sdk):
    assert branch_owner(sdk) == {
        "Register-RegisterModel": ("Check", "if"),
        "Create-CreateModel": ("Check", "if"),
        "CheckMore": ("Check", "else"),
        "Stop": ("CheckMore", "if"),
        "Fail": ("CheckMore", "else"),
    }


def _sdk_context(sdk, execution_id="exec-1", mse=4.5, supplied=(("Region", "us-east-1"),)):
    parameters = resolve_parameters(sdk, [{"Name": n, "Value": v} for n, v in supplied])
    prefix = f"s3://my-bucket/Abalone/{execution_id}/Pre/output"
    properties = {
        "Pre": {"ProcessingOutputConfig": {"Outputs": [
            {"OutputName": "train", "S3Output": {"S3Uri": f"{prefix}/train"}},
            {"OutputName": "test", "S3Output": {"S3Uri": f"{prefix}/test"}},
        ]}},
        "Train": {"ModelArtifacts": {"S3ModelArtifacts": "s3://my-bucket/model/t/output/model.tar.gz"},
                  "FinalMetricDataList": [{"MetricName": "validation:rmse", "Value": 2.1}]},
    }
    return EvaluationContext(
        parameters=parameters,
        execution_variables={"PipelineExecutionId": execution_id, "PipelineName": "Abalone"},
        step_properties=properties.get,
        read_property_file=lambda step, name: {"regression_metrics": {"mse": {"value": mse}}},
    )


def test_sdk_arguments_evaluate_with_step_properties(sdk):
    ctx = _sdk_context(sdk)
    train = evaluate(sdk.step("Train").arguments, ctx)
    channel = train["InputDataConfig"][0]
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == "s3://my-bucket/Abalone/exec-1/Pre/output/train"
    assert train["HyperParameters"] == {"objective": "reg:linear", "num_round": "50"}
    pre = evaluate(sdk.step("Pre").arguments, ctx)
    assert pre["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    assert pre["ProcessingInputs"][0]["S3Input"]["S3Uri"] == "s3://my-bucket/abalone/abalone.csv"
    assert pre["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == (
        "s3://my-bucket/Abalone/exec-1/Pre/output/train")
    register = evaluate(sdk.step("Register-RegisterModel").arguments, ctx)
    assert register["ModelApprovalStatus"] == "PendingManualApproval"
    assert register["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == (
        "s3://my-bucket/model/t/output/model.tar.gz")
    assert evaluate(sdk.experiment_config, ctx) == {"ExperimentName": "Abalone", "TrialName": "exec-1"}
    assert json.dumps(train)  # fully evaluated: plain JSON again
    assert referenced_steps(train) == set()


@pytest.mark.parametrize(
    ("mse", "supplied", "outcome"),
    [
        (4.5, (("Region", "r"),), True),
        (6.0, (("Region", "r"),), True),
        (6.01, (("Region", "r"),), False),
        (7.0, (("Region", "r"), ("MseThreshold", "7.5")), True),
        (4.5, (("Region", "r"), ("Strict", "True")), False),
        (4.5, (("Region", "r"), ("InputData", "a")), False),
    ],
)
def test_sdk_condition_outcome(sdk, mse, supplied, outcome):
    ctx = _sdk_context(sdk, mse=mse, supplied=supplied)
    assert evaluate_conditions(sdk.step("Check").conditions, ctx) is outcome
    assert evaluate_conditions(sdk.step("CheckMore").conditions, ctx) is False


def test_sdk_fail_step_message(sdk):
    ctx = _sdk_context(sdk, execution_id="0a1b2c", mse=7.25)
    message = evaluate(sdk.step("Fail").arguments["ErrorMessage"], ctx)
    assert message == "MSE 7.25 above 6.0 in 0a1b2c"


def test_sdk_definition_as_dict_and_bytes(sdk_text, sdk_doc, sdk):
    assert parse_definition(sdk_doc) == sdk
    assert parse_definition(sdk_text.encode()) == sdk


def test_sdk_start_parameters_round_trip(sdk):
    from sagemaker.workflow.pipeline import format_start_parameters

    wire = format_start_parameters({"ProcessingInstanceCount": 3, "MseThreshold": 2.5, "Strict": True,
                                    "Region": "eu-west-1", "ModelApprovalStatus": "Approved"})
    assert all(isinstance(item["Value"], str) for item in wire)
    assert resolve_parameters(sdk, wire) == {
        "InputData": "s3://my-bucket/abalone/abalone.csv", "ProcessingInstanceCount": 3,
        "MseThreshold": 2.5, "ModelApprovalStatus": "Approved", "Strict": True, "Region": "eu-west-1"}


def test_sdk_definition_mutations_are_rejected(sdk_doc):
    broken = copy.deepcopy(sdk_doc)
    broken["Steps"][2]["Arguments"]["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = {
        "Get": "Steps.Prep.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"}
    rejects(broken, "step 'Prep', which does not exist")
    broken = copy.deepcopy(sdk_doc)
    broken["Steps"][4]["Arguments"]["ElseSteps"][0]["Arguments"]["ElseSteps"].append(step("Pre"))
    rejects(broken, "'Pre' is used more than once")
    broken = copy.deepcopy(sdk_doc)
    broken["Steps"][0]["DependsOn"] = ["Check"]  # Check reads Eval, which reads Pre
    rejects(broken, "Cycle detected")


# --- top-level structure -----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "{", "not json", '{"Steps": [}', b"\xff\xfe"])
def test_invalid_json_is_rejected(text):
    rejects(text, "Invalid JSON")


@pytest.mark.parametrize("document", ["[]", "3", '"text"', "null", []])
def test_non_object_definition_is_rejected(document):
    rejects(document, "must be a JSON object")


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ({"Version": "2020-12-01"}, "Steps must be lists"),
        ({"Steps": {}}, "Steps must be lists"),
        ({"Steps": [], "Parameters": {}}, "Steps must be lists"),
        ({"Steps": [], "Metadata": []}, "must be objects"),
        ({"Steps": [], "PipelineExperimentConfig": "x"}, "must be objects"),
        ({"Steps": [], "Expression": 1}, "Cannot parse object, unknown property 'Expression'."),
    ],
)
def test_malformed_top_level_is_rejected(document, match):
    rejects(document, match)


def test_minimal_definitions():
    empty = parse_definition('{"Steps": []}')
    assert (empty.version, empty.metadata, empty.parameters, empty.steps) == (None, {}, (), ())
    assert empty.experiment_config is None and dependencies(empty) == {} and branch_owner(empty) == {}
    one = parse_definition(doc(step("Only", arguments={"ErrorMessage": "x"}),
                               PipelineExperimentConfig=None, Metadata={"k": "v"}))
    assert one.metadata == {"k": "v"} and one.steps[0].arguments == {"ErrorMessage": "x"}


# --- steps -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    ["Training", "Processing", "Transform", "Tuning", "Model", "RegisterModel", "Fail", "Lambda",
     "Callback", "QualityCheck", "ClarifyCheck", "EMR", "AutoML", "EndpointConfig", "Endpoint"],
)
def test_known_step_types_are_accepted(kind):
    assert parse_definition(doc(step("S", kind))).steps[0].type == kind


@pytest.mark.parametrize("kind", ["training", "Notebook", "ConditionStep", None, 3])
def test_unknown_step_type_is_rejected(kind):
    rejects(doc(step("S", kind)), "unknown Type")


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("x", "Each step must be an object"),
        ({"Type": "Fail", "Arguments": {}}, "Invalid step name None"),
        ({"Name": "", "Type": "Fail", "Arguments": {}}, "Invalid step name"),
        ({"Name": "S", "Type": "Fail"}, "requires an Arguments object"),
        ({"Name": "S", "Type": "Fail", "Arguments": []}, "requires an Arguments object"),
        (step("S", DependsOn="A"), "DependsOn of step 'S' must be a list"),
        (step("S", DependsOn=[1]), "DependsOn of step 'S' must be a list of step names"),
        (step("S", PropertyFiles={}), "PropertyFiles of step 'S' must be a list"),
        (step("S", PropertyFiles=[{"PropertyFileName": "R"}]), "PropertyFileName/OutputName/FilePath"),
        (step("S", RetryPolicies="x"), "RetryPolicies of step 'S' must be a list"),
    ],
)
def test_malformed_steps_are_rejected(raw, match):
    rejects(doc(raw), match)


def test_duplicate_step_names_are_rejected():
    rejects(doc(step("A"), step("A")), "'A' is used more than once")
    condition = step("C", "Condition", {"Conditions": [], "IfSteps": [step("A")], "ElseSteps": []})
    rejects(doc(step("A"), condition), "'A' is used more than once")
    nested = step("C", "Condition", {"Conditions": [], "IfSteps": [step("B")], "ElseSteps": [step("B")]})
    rejects(doc(nested), "'B' is used more than once")


def test_extra_step_fields_are_kept_raw():
    raw = step("L", "Lambda", {"x": 1}, FunctionArn="arn:aws:lambda:us-east-1:1:function:f",
               OutputParameters=[{"OutputName": "out", "OutputType": "String"}],
               DisplayName="Lambda step", Description="calls f")
    parsed = parse_definition(doc(raw)).steps[0]
    assert parsed.raw["FunctionArn"] == "arn:aws:lambda:us-east-1:1:function:f"
    assert (parsed.display_name, parsed.description) == ("Lambda step", "calls f")
    assert parsed.depends_on == () and parsed.cache_config is None and parsed.retry_policies == ()


def test_duplicate_depends_on_entries_are_collapsed():
    parsed = parse_definition(doc(cond("A"), step("B", DependsOn=["A", "A"])))
    assert parsed.step("B").depends_on == ("A",)


def test_depends_on_unknown_step_is_rejected():
    rejects(doc(step("A", DependsOn=["Missing"])), "Step 'A' DependsOn 'Missing', which does not exist")


def test_condition_step_requires_valid_conditions():
    rejects(doc(step("C", "Condition", {})), "Conditions must be a list")
    bad = {"Conditions": [{"Type": "ConditionEquals", "LeftValue": 1, "RightValue": 1}]}
    rejects(doc(step("C", "Condition", bad)), "unknown condition Type 'ConditionEquals'")
    legacy = {"Conditions": [{"Type": "Not", "Expression": {"Type": "Equals", "LeftValue": 1,
                                                            "RightValue": 1}}]}
    rejects(doc(step("C", "Condition", legacy)), "Cannot parse object, unknown property 'Expression'.")
    rejects(doc(step("C", "Condition", {"Conditions": [], "IfSteps": {}})), "IfSteps of step 'C'")


def test_nested_condition_steps():
    inner = step("Inner", "Condition", {
        "Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Steps.A.Outcome"}, "RightValue": "x"}],
        "IfSteps": [step("Deep", DependsOn=["B"])], "ElseSteps": []})
    outer = step("Outer", "Condition", {"Conditions": [], "IfSteps": [cond("B")], "ElseSteps": [inner]})
    parsed = parse_definition(doc(cond("A"), outer))
    assert [s.name for s in parsed.all_steps()] == ["A", "Outer", "B", "Inner", "Deep"]
    assert branch_owner(parsed) == {"B": ("Outer", "if"), "Inner": ("Outer", "else"),
                                    "Deep": ("Inner", "if")}
    assert dependencies(parsed) == {"A": set(), "Outer": set(), "B": set(), "Inner": {"A"},
                                    "Deep": {"B"}}
    assert dependencies(parsed, include_branch_owner=True)["Deep"] == {"B", "Inner"}


def test_condition_step_arguments_exclude_branch_steps_from_its_dependencies():
    condition = step("C", "Condition", {
        "Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Steps.A.Outcome"}, "RightValue": "x"}],
        "IfSteps": [step("B", arguments={"X": {"Get": "Steps.A2.Outcome"}})], "ElseSteps": []})
    parsed = parse_definition(doc(cond("A"), cond("A2"), condition))
    assert dependencies(parsed)["C"] == {"A"}
    assert dependencies(parsed)["B"] == {"A2"}


def test_step_level_fields_are_scanned_for_references():
    raw = step("Q", "QualityCheck", {}, ModelName={"Get": "Steps.M.ModelName"})
    parsed = parse_definition(doc(step("M", "Model"), raw))
    assert dependencies(parsed)["Q"] == {"M"}
    rejects(doc(step("Q", "QualityCheck", {}, ModelName={"Get": "Steps.Nope.ModelName"})),
            "step 'Nope', which does not exist")


# --- references --------------------------------------------------------------------------------


PARAMS = [{"Name": "P", "Type": "String", "DefaultValue": "x"}]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"Get": "Parameters.Nope"}, "references parameter 'Nope', which is not defined"),
        ({"Get": "Execution.Nope"}, "unknown execution variable 'Nope'"),
        ({"Get": "PipelineExperimentConfig.Nope"}, "unknown property 'Nope'"),
        ({"Get": "Steps.Nope.Outcome"}, "step 'Nope', which does not exist"),
        ({"Get": "Steps.A.PropertyFiles.Nope"}, "property file that step 'A' does not define"),
        ({"Get": "Steps.A.PropertyFiles"}, "property file that step 'A' does not define"),
        ({"Get": "Bogus.X"}, "Invalid Get reference 'Bogus.X'"),
        ({"Get": "Steps.A..X"}, "Invalid Get reference"),
        ({"Get": 5}, "Get expects a string"),
        ({"Std:Join": {"On": "/"}}, "Std:Join in step 'B' requires a Values list"),
        ({"Std:Join": "x"}, "must be an object"),
        ({"Std:Join": {"Values": [], "Separator": "/"}}, "unknown property 'Separator'"),
        ({"Std:Join": {"Values": [{"Get": "Parameters.Nope"}]}}, "parameter 'Nope'"),
        ({"Std:JsonGet": {"Path": "a"}}, "requires a Path and one of PropertyFile or S3Uri"),
        ({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.A.PropertyFiles.R"}}}, "requires a Path"),
        ({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.A.PropertyFiles.R"}, "S3Uri": "s3://b/k",
                          "Path": "a"}}, "one of PropertyFile or S3Uri"),
        ({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.A.PropertyFiles.Nope"}, "Path": "a"}},
         "property file that step 'A' does not define"),
        ({"Std:JsonGet": {"PropertyFile": "Steps.Nope.PropertyFiles.R", "Path": "a"}},
         "step 'Nope', which does not exist"),
        ({"Std:JsonGet": {"PropertyFile": {"Get": "Parameters.P"}, "Path": "a"}},
         "must be 'Steps.<step>.PropertyFiles.<name>'"),
        ({"Std:JsonGet": {"PropertyFile": 7, "Path": "a"}}, "PropertyFiles"),
        ({"Std:JsonGet": {"S3Uri": {"Get": "Steps.Nope.X"}, "Path": "a"}}, "step 'Nope'"),
        ({"Std:JsonGet": {"PropertyFile": {"Get": "Steps.A.PropertyFiles.R"}, "Path": "a", "X": 1}},
         "unknown property 'X'"),
        ({"Std:Concat": {"Values": []}}, "Unknown function 'Std:Concat' in step 'B'"),
    ],
)
def test_invalid_references_are_rejected(value, match):
    producer = step("A", "Processing", {}, PropertyFiles=[
        {"PropertyFileName": "R", "OutputName": "o", "FilePath": "r.json"}])
    rejects(doc(producer, step("B", arguments={"Deep": [{"Value": value}]}), parameters=PARAMS), match)


def test_valid_references_are_accepted():
    producer = step("A", "Processing", {}, PropertyFiles=[
        {"PropertyFileName": "R", "OutputName": "o", "FilePath": "r.json"}])
    arguments = {
        "P": {"Get": "Parameters.P"},
        "E": [{"Get": f"Execution.{v}"} for v in ("PipelineExecutionId", "PipelineExecutionArn",
                                                   "StartDateTime", "CurrentDateTime", "PipelineName",
                                                   "PipelineArn", "TrainingJobName", "ProcessingJobName")],
        "X": {"Get": "PipelineExperimentConfig.TrialName"},
        "S": {"Get": "Steps.A.ProcessingOutputConfig.Outputs['o'].S3Output.S3Uri"},
        "J1": {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.A.PropertyFiles.R"}, "Path": "a.b"}},
        "J2": {"Std:JsonGet": {"PropertyFile": "Steps.A.PropertyFiles.R", "Path": "a"}},
        "J3": {"Std:JsonGet": {"S3Uri": {"Std:Join": {"On": "/", "Values": [
            "s3://b", {"Get": "Execution.PipelineExecutionId"}, "r.json"]}}, "Path": "a"}},
        "Data": {"Get": "Parameters.P", "Other": 1},  # not an expression: plain data
    }
    parsed = parse_definition(doc(producer, step("B", arguments=arguments), parameters=PARAMS))
    assert dependencies(parsed) == {"A": set(), "B": {"A"}}


def test_experiment_config_references_are_validated():
    rejects(doc(PipelineExperimentConfig={"ExperimentName": {"Get": "Parameters.Nope"}}),
            "in PipelineExperimentConfig references parameter 'Nope'")
    parsed = parse_definition(doc(parameters=PARAMS, PipelineExperimentConfig={
        "ExperimentName": {"Get": "Parameters.P"}, "TrialName": {"Get": "Execution.PipelineExecutionId"}}))
    assert parsed.experiment_config["ExperimentName"] == {"Get": "Parameters.P"}


def test_references_to_branch_steps_are_allowed():
    condition = step("C", "Condition", {"Conditions": [], "IfSteps": [cond("InBranch")], "ElseSteps": []})
    after = step("After", arguments={"X": {"Get": "Steps.InBranch.Outcome"}}, DependsOn=["C"])
    parsed = parse_definition(doc(condition, after))
    assert dependencies(parsed)["After"] == {"InBranch", "C"}


# --- cycles ------------------------------------------------------------------------------------


def test_self_dependency_is_a_cycle():
    rejects(doc(cond("A", DependsOn=["A"])), "Cycle detected in pipeline step graph: A -> A.")
    rejects(doc(cond("A", Arguments={"Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Steps.A.Outcome"},
                                                     "RightValue": "x"}]})), "A -> A")


def test_cycles_through_depends_on_and_data_are_rejected():
    rejects(doc(cond("A", DependsOn=["B"]), cond("B", DependsOn=["A"])), "Cycle detected")
    three = doc(cond("A", DependsOn=["B"]), step("B", "Lambda", {"X": {"Get": "Steps.C.OutputParameters['o']"}}),
                step("C", "Lambda", {"X": {"Std:Join": {"Values": [{"Get": "Steps.A.Outcome"}]}}},
                     DependsOn=["B"]))
    error = rejects(three, "Cycle detected")
    assert all(name in error.message for name in "ABC")
    json_get = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.P.PropertyFiles.R"}, "Path": "a"}}
    producer = step("P", "Processing", {"X": {"Get": "Steps.Q.OutputParameters['o']"}},
                    PropertyFiles=[{"PropertyFileName": "R", "OutputName": "o", "FilePath": "f"}])
    rejects(doc(producer, step("Q", "Lambda", {"V": json_get})), "Cycle detected")


def test_condition_reading_its_own_branch_is_a_cycle():
    condition = step("C", "Condition", {
        "Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Steps.B.Outcome"}, "RightValue": "x"}],
        "IfSteps": [cond("B")], "ElseSteps": []})
    rejects(doc(condition), "Cycle detected")
    # C waits for E, E for D, and D (in C's branch) can only run once C decided.
    nested = step("C", "Condition", {"Conditions": [], "IfSteps": [cond("D")], "ElseSteps": []},
                  DependsOn=["E"])
    rejects(doc(nested, cond("E", DependsOn=["D"])), "C -> E -> D -> C")
    fine = step("C", "Condition", {"Conditions": [], "IfSteps": [step("D", DependsOn=["E"])],
                                   "ElseSteps": []})
    assert dependencies(parse_definition(doc(fine, cond("E", DependsOn=["C"]))))["D"] == {"E"}


def test_diamond_is_not_a_cycle():
    parsed = parse_definition(doc(cond("A"), cond("B", DependsOn=["A"]), cond("C", DependsOn=["A"]),
                                  step("D", DependsOn=["B", "C"])))
    assert dependencies(parsed)["D"] == {"B", "C"}


# --- parameters --------------------------------------------------------------------------------


def param(name="P", kind="String", **extra):
    return {"Name": name, "Type": kind, **extra}


@pytest.mark.parametrize(
    ("kind", "default", "typed"),
    [("String", "abc", "abc"), ("String", "", ""), ("Integer", 5, 5), ("Integer", -2, -2),
     ("Float", 1.5, 1.5), ("Float", 3, 3.0), ("Boolean", True, True), ("Boolean", False, False)],
)
def test_parameter_defaults(kind, default, typed):
    parsed = parse_definition(doc(parameters=[param(kind=kind, DefaultValue=default)])).parameters[0]
    assert parsed.default == typed and type(parsed.default) is type(typed) and parsed.has_default


@pytest.mark.parametrize(
    ("kind", "default"),
    [("String", 5), ("String", True), ("Integer", 1.5), ("Integer", "1"), ("Integer", True),
     ("Float", "1.5"), ("Float", False), ("Boolean", "true"), ("Boolean", 1), ("Integer", [1]),
     ("String", {"Get": "Parameters.Q"})],
)
def test_parameter_default_type_mismatch_is_rejected(kind, default):
    rejects(doc(parameters=[param(kind=kind, DefaultValue=default)]), f"is not of type {kind}")


def test_parameter_definition_rules():
    assert parse_definition(doc(parameters=[{"Name": "P"}])).parameters[0].type == "String"
    rejects(doc(parameters=[param(kind="Number")]), "unknown Type 'Number'")
    rejects(doc(parameters=[param(), param()]), "Duplicate parameter name 'P'")
    rejects(doc(parameters=[param(Extra=1)]), "Cannot parse object, unknown property 'Extra'.")
    rejects(doc(parameters=[param(name="bad name")]), "Invalid parameter name")
    rejects(doc(parameters=[{"Type": "String"}]), "Invalid parameter name None")
    rejects(doc(parameters=["P"]), "must be an object")
    rejects(doc(parameters=[param(kind="Integer", EnumValues=["1"])]), "EnumValues")
    rejects(doc(parameters=[param(EnumValues="a")]), "EnumValues")
    rejects(doc(parameters=[param(EnumValues=["a"], DefaultValue="b")]), "is not in EnumValues")
    described = param(Description="input", EnumValues=["a", "b"], DefaultValue="a")
    parsed = parse_definition(doc(parameters=[described])).parameters[0]
    assert (parsed.description, parsed.enum_values) == ("input", ("a", "b"))


def _params(*parameters):
    return parse_definition(doc(parameters=list(parameters)))


def resolve(definition, **values):
    return resolve_parameters(definition, [{"Name": k, "Value": v} for k, v in values.items()])


@pytest.mark.parametrize(
    ("kind", "wire", "typed"),
    [
        ("String", "hello world", "hello world"), ("String", " padded ", " padded "),
        ("Integer", "5", 5), ("Integer", "-12", -12), ("Integer", "+3", 3), ("Integer", " 7 ", 7),
        ("Float", "2.5", 2.5), ("Float", "3", 3.0), ("Float", "-1e-3", -0.001), ("Float", ".5", 0.5),
        ("Boolean", "true", True), ("Boolean", "False", False), ("Boolean", "TRUE", True),
    ],
)
def test_supplied_values_are_typed(kind, wire, typed):
    values = resolve(_params(param(kind=kind)), P=wire)
    assert values == {"P": typed} and type(values["P"]) is type(typed)


@pytest.mark.parametrize(
    ("kind", "wire"),
    [("Integer", "1.5"), ("Integer", "abc"), ("Integer", "1e3"), ("Integer", "true"),
     ("Float", "abc"), ("Float", "nan"), ("Float", "inf"), ("Float", "1_000"), ("Boolean", "yes"),
     ("Boolean", "1"), ("Boolean", "t")],
)
def test_mistyped_supplied_values_are_rejected(kind, wire):
    with pytest.raises(ValidationError, match=f"Value '{wire}' for parameter 'P' is not a valid {kind}"):
        resolve(_params(param(kind=kind)), P=wire)


def test_defaults_apply_and_supplied_values_override():
    definition = _params(param("S", DefaultValue="d"), param("I", "Integer", DefaultValue=1),
                         param("F", "Float", DefaultValue=2), param("B", "Boolean", DefaultValue=True))
    assert resolve_parameters(definition, None) == {"S": "d", "I": 1, "F": 2.0, "B": True}
    assert resolve_parameters(definition, []) == {"S": "d", "I": 1, "F": 2.0, "B": True}
    assert resolve(definition, I="9", B="false") == {"S": "d", "I": 9, "F": 2.0, "B": False}


def test_parameter_resolution_errors():
    definition = _params(param("Required"), param("E", EnumValues=["a", "b"], DefaultValue="a"))
    with pytest.raises(ValidationError, match="^Parameter 'Required' is undefined.$"):
        resolve_parameters(definition, [])
    with pytest.raises(ValidationError, match="^Unknown parameter 'Other'$"):
        resolve(definition, Required="x", Other="y")
    with pytest.raises(ValidationError) as caught:
        resolve(definition, Required="")
    assert caught.value.message == '[string "" is too short (length: 0, required minimum: 1)]'
    with pytest.raises(ValidationError, match="is too long"):
        resolve(definition, Required="x" * 1025)
    assert resolve(definition, Required="x" * 1024)["Required"] == "x" * 1024
    with pytest.raises(ValidationError, match="not one of the allowed values"):
        resolve(definition, Required="x", E="c")
    assert resolve(definition, Required="x", E="b") == {"Required": "x", "E": "b"}
    with pytest.raises(ValidationError, match="more than once"):
        resolve_parameters(definition, [{"Name": "Required", "Value": "a"},
                                        {"Name": "Required", "Value": "b"}])
    with pytest.raises(ValidationError, match="must be a string"):
        resolve_parameters(definition, [{"Name": "Required", "Value": 5}])
    with pytest.raises(ValidationError, match="requires a Name and a Value"):
        resolve_parameters(definition, [{"Name": "Required"}])
    with pytest.raises(ValidationError) as caught:
        resolve_parameters(definition, [])
    assert (caught.value.code, caught.value.status) == ("ValidationException", 400)


# --- cache config, retry policies, durations ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("P30D", 2_592_000), ("p30d", 2_592_000), ("PT12H", 43_200), ("T12H", 43_200),
     ("P4DT12H", 388_800), ("P1DT30M", 88_200), ("PT1H30M15S", 5415), ("PT0.5S", 0),
     ("PT1.5H", 5400), ("P2W", 1_209_600), ("P1Y", 31_536_000), ("P1M", 2_592_000),
     ("P1Y2M3W4DT5H6M7S", 31_536_000 + 5_184_000 + 1_814_400 + 345_600 + 18_000 + 360 + 7),
     ("PT90M", 5400), ("P0D", 0), (" P1D ", 86_400)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1DT", "P1H", "PT1D", "P1D1Y", "P1D2D", "abc", "P-1D", "P1.5", "1D2",
             "PT1H1H", "P1DT1Y"],
)
def test_parse_duration_rejects_invalid_text(text):
    with pytest.raises(ValidationError, match="Invalid ISO-8601 duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [({"Enabled": True, "ExpireAfter": "PT1H"}, CacheConfig(True, "PT1H", 3600)),
     ({"Enabled": False}, CacheConfig(False, None, None)),
     ({"Enabled": True}, CacheConfig(True, None, None))],
)
def test_cache_config(raw, expected):
    assert parse_definition(doc(step("A", CacheConfig=raw))).steps[0].cache_config == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [({"Enabled": "yes"}, "boolean Enabled"), ("x", "boolean Enabled"),
     ({"Enabled": True, "ExpireAfter": 30}, "must be a string"),
     ({"Enabled": True, "ExpireAfter": "30 days"}, "Invalid ISO-8601 duration '30 days'")],
)
def test_invalid_cache_config_is_rejected(raw, match):
    rejects(doc(step("A", CacheConfig=raw)), match)


def test_retry_policies():
    policies = [{"ExceptionType": ["Step.SERVICE_FAULT", "Step.THROTTLING"], "MaxAttempts": 20},
                {"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR", "SageMaker.RESOURCE_LIMIT"],
                 "IntervalSeconds": 10, "BackoffRate": 1, "ExpireAfterMin": 14400},
                {"ExceptionType": "Emr.RESOURCE_LIMIT", "MaxAttempts": 1}]
    parsed = parse_definition(doc(step("A", RetryPolicies=policies))).steps[0].retry_policies
    assert parsed == (
        RetryPolicy(("Step.SERVICE_FAULT", "Step.THROTTLING"), 1, 2.0, 20, None),
        RetryPolicy(("SageMaker.JOB_INTERNAL_ERROR", "SageMaker.RESOURCE_LIMIT"), 10, 1.0, None, 14400),
        RetryPolicy(("Emr.RESOURCE_LIMIT",), 1, 2.0, 1, None),
    )


@pytest.mark.parametrize(
    ("policy", "match"),
    [({"MaxAttempts": 3}, "requires ExceptionType"),
     ({"ExceptionType": [], "MaxAttempts": 3}, "requires ExceptionType"),
     ({"ExceptionType": ["Step.TIMEOUT"]}, "Unknown retry ExceptionType 'Step.TIMEOUT'"),
     ({"ExceptionType": ["Step.THROTTLING"], "MaxAttempts": 0}, "MaxAttempts .* between 1 and 20"),
     ({"ExceptionType": ["Step.THROTTLING"], "MaxAttempts": 21}, "MaxAttempts"),
     ({"ExceptionType": ["Step.THROTTLING"], "MaxAttempts": 2.5}, "MaxAttempts"),
     ({"ExceptionType": ["Step.THROTTLING"], "ExpireAfterMin": 14401}, "ExpireAfterMin"),
     ({"ExceptionType": ["Step.THROTTLING"], "IntervalSeconds": -1}, "IntervalSeconds .* at least 0"),
     ({"ExceptionType": ["Step.THROTTLING"], "IntervalSeconds": True}, "IntervalSeconds"),
     ({"ExceptionType": ["Step.THROTTLING"], "BackoffRate": -0.5}, "BackoffRate"),
     ({"ExceptionType": ["Step.THROTTLING"], "BackoffRate": "2"}, "BackoffRate"),
     ("x", "must be objects")],
)
def test_invalid_retry_policies_are_rejected(policy, match):
    rejects(doc(step("A", RetryPolicies=[policy])), match)


def test_parsed_definition_is_isolated_from_the_callers_dict():
    document = doc(step("A", arguments={"ErrorMessage": "before"}))
    parsed = parse_definition(document)
    document["Steps"][0]["Arguments"]["ErrorMessage"] = "after"
    document["Steps"].append(step("B"))
    assert parsed.steps[0].arguments == {"ErrorMessage": "before"}
    assert [s.name for s in parsed.all_steps()] == ["A"]
