"""Unit tests for smlocal.pipelines.validation (through parse_definition, as Create/UpdatePipeline call it)."""

from __future__ import annotations

import pytest

from smlocal.errors import ValidationError
from smlocal.pipelines.conditions import condition_metadata
from smlocal.pipelines.definition import parse_definition
from smlocal.pipelines.expressions import EvaluationContext, evaluate, parse_reference
from smlocal.pipelines.validation import operand_type, property_problem, property_type

PREFIX = "Unable to parse pipeline definition. "


def step(name, kind="Condition", arguments=None, **extra):
    if arguments is None:
        arguments = {"Conditions": [], "IfSteps": [], "ElseSteps": []} if kind == "Condition" else {}
    return {"Name": name, "Type": kind, "Arguments": arguments, **extra}


def fail(name, message="stop", **extra):
    return step(name, "Fail", {"ErrorMessage": message}, **extra)


def doc(*steps, parameters=(), version="2020-12-01"):
    return {"Version": version, "Parameters": list(parameters), "Steps": list(steps)}


def rejected(document) -> str:
    with pytest.raises(ValidationError) as caught:
        parse_definition(document)
    assert (caught.value.code, caught.value.status) == ("ValidationException", 400)
    assert caught.value.message.startswith(PREFIX)
    return caught.value.message[len(PREFIX):]


def reader(kind: str, reference: str, **extra):
    """A definition where a Fail step reads ``reference`` of a step ``S`` of type ``kind``."""
    return doc(step("S", kind, **extra), fail("Reader", {"Std:Join": {"On": "", "Values": [{"Get": reference}]}}))


# --- DependsOn a FailStep ----------------------------------------------------------------------


def test_depending_on_a_fail_step_is_refused():
    assert rejected(doc(fail("FailStep"), step("CondStep", DependsOn=["FailStep"]))) == (
        "Step CondStep can not depends on FailStep FailStep.")
    in_branch = step("Gate", arguments={"Conditions": [], "IfSteps": [], "ElseSteps": [fail("Stop")]})
    assert rejected(doc(in_branch, step("After", DependsOn=["Stop"]))) == "Step After can not depends on FailStep Stop."
    nested = step("Gate", arguments={"Conditions": [], "IfSteps": [fail("Stop"), step("In", DependsOn=["Stop"])],
                                     "ElseSteps": []})
    assert "Step In can not depends on FailStep Stop." == rejected(doc(nested))
    # a FailStep may itself depend on others, and sit in a branch of the step it follows
    parse_definition(doc(step("Gate", arguments={"Conditions": [], "IfSteps": [], "ElseSteps": [fail("Stop")]}),
                         fail("Last", DependsOn=["Gate"])))


# --- properties against the step type's tree ---------------------------------------------------


@pytest.mark.parametrize(("kind", "good", "bad", "wrong"), [
    ("Training", "Steps.S.ModelArtifacts.S3ModelArtifacts", "Steps.S.ModelArtifact.S3ModelArtifacts", "ModelArtifact"),
    ("Training", "Steps.S.FinalMetricDataList['score'].Value", "Steps.S.FinalMetricDataList['score'].Val",
     "FinalMetricDataList['score'].Val"),
    ("Training", "Steps.S.HyperParameters['eta']", "Steps.S.TrainingJobName.Length", "TrainingJobName.Length"),
    ("Training", "Steps.S.OutputDataConfig.S3OutputPath", "Steps.S.OutputDataConfig[0]", "OutputDataConfig[0]"),
    ("Processing", "Steps.S.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri",
     "Steps.S.ProcessingOutputConfig.Outputs['train'].S3Output.Uri",
     "ProcessingOutputConfig.Outputs['train'].S3Output.Uri"),
    ("Processing", "Steps.S.ProcessingJobArn", "Steps.S.ProcessingOutputs", "ProcessingOutputs"),
    ("Transform", "Steps.S.TransformOutput.S3OutputPath", "Steps.S.TransformOutput.S3Uri", "TransformOutput.S3Uri"),
    ("Tuning", "Steps.S.TrainingJobSummaries[0].TrainingJobName", "Steps.S.TrainingJobs[0]", "TrainingJobs"),
    ("Tuning", "Steps.S.BestTrainingJob.TrainingJobName", "Steps.S.BestTrainingJob.ModelArtifacts",
     "BestTrainingJob.ModelArtifacts"),
    ("Model", "Steps.S.ModelName", "Steps.S.ModelArn.Value", "ModelArn.Value"),
    ("RegisterModel", "Steps.S.ModelPackageArn", "Steps.S.ModelPackageVersionArn", "ModelPackageVersionArn"),
    ("Condition", "Steps.S.Outcome", "Steps.S.Result", "Result"),
    ("Condition", "Steps.S.Outcome", "Steps.S.Outcome.Value", "Outcome.Value"),
    ("Lambda", "Steps.S.OutputParameters['out']", "Steps.S.Outputs['out']", "Outputs"),
    ("Callback", "Steps.S.OutputParameters['out']", "Steps.S.OutputParameters['out'].Value",
     "OutputParameters['out'].Value"),
    ("QualityCheck", "Steps.S.CalculatedBaselineStatistics", "Steps.S.Statistics", "Statistics"),
    ("ClarifyCheck", "Steps.S.CalculatedBaselineConstraints", "Steps.S.CalculatedBaselineStatistics",
     "CalculatedBaselineStatistics"),
    ("EMR", "Steps.S.Status.State", "Steps.S.State", "State"),
    ("AutoML", "Steps.S.BestCandidate.CandidateName", "Steps.S.BestModel", "BestModel"),
    ("Endpoint", "Steps.S.EndpointArn", "Steps.S.Arn", "Arn"),
])  # fmt: skip
def test_step_properties_follow_the_step_types_tree(kind, good, bad, wrong):
    parse_definition(reader(kind, good))
    assert rejected(reader(kind, bad)) == (
        f"'{bad}' in step 'Reader' references property '{wrong}', which a {kind} step such as 'S' does not have.")


def test_a_fail_steps_properties_cannot_be_read():
    gate = step("Gate", arguments={"Conditions": [], "IfSteps": [], "ElseSteps": [fail("Stop")]})
    message = rejected(doc(gate, fail("Later", {"Get": "Steps.Stop.ErrorMessage"})))
    assert message == ("'Steps.Stop.ErrorMessage' in step 'Later' references step 'Stop', a FailStep, "
                       "which has no properties.")


def test_property_checks_cover_conditions_and_json_get():
    bad_condition = step("Gate", arguments={"Conditions": [
        {"Type": "Equals", "LeftValue": {"Get": "Steps.Train.TrainingJobStatuss"}, "RightValue": "Completed"}]})
    assert "references property 'TrainingJobStatuss'" in rejected(doc(step("Train", "Training"), bad_condition))
    bad_uri = fail("F", {"Std:JsonGet": {"S3Uri": {"Get": "Steps.Train.ModelArtifacts.S3Uri"}, "Path": "a"}})
    assert "references property 'ModelArtifacts.S3Uri'" in rejected(doc(step("Train", "Training"), bad_uri))


def test_property_helpers():
    path = parse_reference("Steps.T.FinalMetricDataList['m'].Value").path
    assert property_type("Training", path) == "Float"
    assert property_type("Condition", parse_reference("Steps.C.Outcome").path) == "Boolean"
    assert property_type("Training", parse_reference("Steps.T.HyperParameters").path) == "Object"
    assert property_type("Lineage", parse_reference("Steps.L.Anything").path) is None  # tree not known: unchecked
    assert property_problem("L", "Lineage", parse_reference("Steps.L.Anything").path) is None
    assert property_problem("C", "Condition", ()) == "step 'C' without naming one of its properties"


# --- names and version -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "constraint"), [
    ("Bad name", "Member must satisfy regular expression pattern: [A-Za-z0-9\\-_]*"),
    ("Étape", "Member must satisfy regular expression pattern: [A-Za-z0-9\\-_]*"),
    ("a.b", "Member must satisfy regular expression pattern: [A-Za-z0-9\\-_]*"),
    ("S" * 65, "Member must have length less than or equal to 64"),
])  # fmt: skip
def test_step_names_follow_the_api_pattern(name, constraint):
    assert rejected(doc(fail(name))) == f"Value '{name}' at 'Steps.Name' failed to satisfy constraint: {constraint}"
    branch = step("Gate", arguments={"Conditions": [], "IfSteps": [fail(name)], "ElseSteps": []})
    assert constraint in rejected(doc(branch))
    parse_definition(doc(fail("S" * 64), fail("a-B_9")))


@pytest.mark.parametrize("version", ["2019-01-01", "2020-12-02", 2020])
def test_unknown_versions_are_refused(version):
    assert rejected(doc(fail("F"), version=version)) == (
        f"Model Validation failed: Value '{version}' for 'Version' failed to satisfy enum value set: [2020-12-01]")
    assert parse_definition(doc(fail("F"))).version == "2020-12-01"


# --- condition operand types -------------------------------------------------------------------

TYPED = [{"Name": "Flag", "Type": "Boolean"}, {"Name": "Count", "Type": "Integer", "DefaultValue": 1},
         {"Name": "Ratio", "Type": "Float", "DefaultValue": 0.5}, {"Name": "Word", "Type": "String"}]


def gated(*conditions):
    return doc(step("Train", "Training"), step("First"), step("Gate", arguments={"Conditions": list(conditions)}),
               parameters=TYPED)


def compare(kind, left, right):
    return {"Type": kind, "LeftValue": left, "RightValue": right}


@pytest.mark.parametrize(("condition", "message"), [
    (compare("GreaterThan", {"Get": "Parameters.Flag"}, 1),
     "Condition of type GreaterThan in step 'Gate' is not supported between [Parameters.Flag] of type Boolean and "
     "[1] of type Integer."),
    (compare("LessThanOrEqualTo", {"Get": "Parameters.Ratio"}, True), "[True] of type Boolean"),
    (compare("Equals", {"Get": "Parameters.Flag"}, {"Get": "Parameters.Count"}),
     "between [Parameters.Flag] of type Boolean and [Parameters.Count] of type Integer."),
    (compare("Equals", {"Get": "Steps.First.Outcome"}, 1), "[Steps.First.Outcome] of type Boolean"),
    (compare("GreaterThan", {"Get": "Steps.Train.HyperParameters"}, 1),
     "[Steps.Train.HyperParameters] of type Object"),
    (compare("GreaterThan", {"Get": "Steps.Train.EnableNetworkIsolation"}, 0), "of type Boolean"),
    (compare("Equals", [1, 2], 1), "[[1, 2]] of type List"),
    (compare("LessThan", None, 1), "[None] of type Null"),
    ({"Type": "In", "QueryValue": {"Get": "Parameters.Flag"}, "Values": [True, 2]},
     "Condition of type In in step 'Gate' is not supported between [Parameters.Flag] of type Boolean and [2] of "
     "type Integer."),
    ({"Type": "Not", "Condition": compare("GreaterThan", {"Get": "Parameters.Flag"}, 0)}, "of type Boolean"),
    ({"Type": "Or", "Conditions": [compare("Equals", 1, 1), compare("LessThan", False, 1)]}, "[False] of type"),
])  # fmt: skip
def test_incomparable_condition_operands_are_refused(condition, message):
    assert message in rejected(gated(condition))


def test_comparable_condition_operands_are_accepted_and_the_same_with_a_boolean_refused():
    json_get = {"Std:JsonGet": {"S3Uri": "s3://b/k.json", "Path": "mse"}}
    parsed = parse_definition(gated(
        compare("Equals", {"Get": "Parameters.Flag"}, False),
        compare("Equals", {"Get": "Steps.First.Outcome"}, True),
        compare("Equals", {"Get": "Steps.First.Outcome"}, "True"),
        compare("LessThanOrEqualTo", json_get, {"Get": "Parameters.Ratio"}),
        compare("GreaterThan", {"Get": "Steps.Train.FinalMetricDataList['score'].Value"}, {"Get": "Parameters.Count"}),
        compare("GreaterThan", {"Get": "Parameters.Word"}, "m"),
        compare("LessThan", "0.5", 0.6),
        compare("Equals", {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Flag"}]}}, "true"),
        {"Type": "In", "QueryValue": {"Get": "Parameters.Count"}, "Values": [1, 2.0, {"Get": "Parameters.Ratio"}]},
    ))
    assert parsed.step("Gate").type == "Condition"
    boolean = compare("LessThanOrEqualTo", {"Get": "Parameters.Ratio"}, {"Get": "Parameters.Flag"})
    assert "of type Boolean" in rejected(gated(boolean))


def test_operand_types():
    parameters, steps = {"Flag": "Boolean"}, {"C": "Condition", "T": "Training"}
    assert [operand_type(v, parameters, steps) for v in (True, 3, 2.5, "x", None, [1], {"a": 1})] == [
        "Boolean", "Integer", "Float", "String", "Null", "List", "Object"]
    assert operand_type({"Get": "Parameters.Flag"}, parameters, steps) == "Boolean"
    assert operand_type({"Get": "Execution.PipelineExecutionId"}, parameters, steps) == "String"
    assert operand_type({"Get": "Steps.C.Outcome"}, parameters, steps) == "Boolean"
    assert operand_type({"Get": "Steps.T.TrainingStartTime"}, parameters, steps) == "String"
    assert operand_type({"Std:JsonGet": {"S3Uri": "s3://b/k", "Path": "a"}}, parameters, steps) is None


# --- booleans in strings -----------------------------------------------------------------------


def test_a_condition_outcome_joins_as_json_true_false():
    """AWS (SDK integ test test_two_step_fail_pipeline_with_join_fn): "Failed due to xxx == yyy returns: false"."""
    join = {"Std:Join": {"On": ": ", "Values": ["Failed due to xxx == yyy returns", {"Get": "Steps.CondStep.Outcome"}]}}
    for result, text in ((False, "false"), (True, "true")):
        ctx = EvaluationContext(step_properties={"CondStep": {"Outcome": result}}.get)
        assert evaluate(join, ctx) == f"Failed due to xxx == yyy returns: {text}"
        # ListPipelineExecutionSteps' Metadata keeps the API's ConditionOutcome enum
        assert condition_metadata(result) == {"Condition": {"Outcome": text.capitalize()}}
    values = [{"Get": "Parameters.Flag"}, "/", {"Get": "Steps.S.EnableNetworkIsolation"}]
    flag = {"Std:Join": {"On": "", "Values": values}}
    ctx = EvaluationContext(parameters={"Flag": False}, step_properties={"S": {"EnableNetworkIsolation": True}}.get)
    assert evaluate(flag, ctx) == "false/true"


def test_a_comparison_error_reads_the_same_at_create_and_at_run_time():
    from smlocal.pipelines.conditions import evaluate_condition
    from smlocal.pipelines.expressions import ExpressionError

    condition = compare("GreaterThan", [1, 2], "a")
    at_create = rejected(gated(condition))
    with pytest.raises(ExpressionError) as raised:
        evaluate_condition(condition, EvaluationContext())
    shown = "is not supported between [[1, 2]] of type List and [a] of type String."
    assert at_create.endswith(shown) and str(raised.value).endswith(shown)
