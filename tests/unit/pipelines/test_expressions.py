"""Unit tests for smlocal.pipelines.expressions: Get, Std:Join, Std:JsonGet and their helpers."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from smlocal.pipelines.expressions import (
    EvaluationContext,
    ExpressionError,
    evaluate,
    expression_kind,
    iter_expressions,
    parse_path,
    parse_reference,
    referenced_steps,
    render_string,
    resolve_path,
)

EXECUTION_ID = "abc123def456"
PIPELINE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/abalone"

# Realistic Describe* responses, shaped like the SageMaker API returns them.
PROCESSING_PROPERTIES = {
    "ProcessingJobName": "pipelines-abc123def456-Pre-x1y2z3",
    "ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/pre",
    "ProcessingJobStatus": "Completed",
    "ProcessingInputs": [
        {"InputName": "input-1", "S3Input": {"S3Uri": "s3://my-bucket/abalone.csv"}},
        {"InputName": "code", "S3Input": {"S3Uri": "s3://my-bucket/code/preprocess.py"}},
    ],
    "ProcessingOutputConfig": {
        "Outputs": [
            {
                "OutputName": "train",
                "S3Output": {"S3Uri": "s3://my-bucket/Abalone/abc/Pre/output/train"},
            },
            {
                "OutputName": "test",
                "S3Output": {"S3Uri": "s3://my-bucket/Abalone/abc/Pre/output/test"},
            },
        ]
    },
    "ProcessingResources": {"ClusterConfig": {"InstanceCount": 2, "VolumeSizeInGB": 30}},
}
TRAINING_PROPERTIES = {
    "TrainingJobName": "pipelines-abc123def456-Train-q9",
    "ModelArtifacts": {"S3ModelArtifacts": "s3://my-bucket/model/train-q9/output/model.tar.gz"},
    "HyperParameters": {"num_round": "50", "objective": "reg:linear"},
    "InputDataConfig": [
        {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/train"}}},
        {"ChannelName": "validation", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/val"}}},
    ],
    "FinalMetricDataList": [
        {"MetricName": "train:rmse", "Value": 2.5},
        {"MetricName": "validation:rmse", "Value": 3.25},
    ],
    "EnableNetworkIsolation": False,
    "ResourceConfig": {"InstanceCount": 1},
}
TUNING_PROPERTIES = {
    "HyperParameterTuningJobName": "tune-1",
    "TrainingJobSummaries": [
        {"TrainingJobName": "tune-1-002", "FinalHyperParameterTuningJobObjectiveMetric": {"Value": 0.9}},
        {"TrainingJobName": "tune-1-001", "FinalHyperParameterTuningJobObjectiveMetric": {"Value": 0.8}},
    ],
    "BestTrainingJob": {"TrainingJobName": "tune-1-002"},
}
STEP_PROPERTIES = {
    "Pre": PROCESSING_PROPERTIES,
    "Train": TRAINING_PROPERTIES,
    "Tune": TUNING_PROPERTIES,
    "Check": {"Outcome": "True"},
    "Lambda": {"OutputParameters": {"model_uri": "s3://b/m", "count": 7}},
    "Callback": {"OutputParameters": [{"Name": "status", "Value": "approved"}]},
    "Endpoint": {"ProductionVariants": [{"VariantName": "AllTraffic", "CurrentWeight": 1.0}]},
}
PROPERTY_FILES = {
    ("Eval", "EvaluationReport"): {
        "regression_metrics": {"mse": {"value": 4.75, "standard_deviation": 0.5}},
        "thresholds": [1, 2.5, 3],
        "labels": {"a.b": "dotted", "x[0]": "bracketed"},
        "passed": True,
        "name": "abalone",
    }
}
S3_OBJECTS = {
    f"s3://my-bucket/Abalone/{EXECUTION_ID}/result.json": {"Output": [5, 10], "Flag": False},
}


@pytest.fixture
def calls():
    """Records the injected I/O calls."""
    return []


@pytest.fixture
def ctx(calls):
    def read_property_file(step, name):
        calls.append(("property_file", step, name))
        return PROPERTY_FILES[(step, name)]

    def read_s3_json(uri):
        calls.append(("s3", uri))
        return S3_OBJECTS[uri]

    return EvaluationContext(
        parameters={
            "InputData": "s3://my-bucket/abalone.csv",
            "InstanceCount": 2,
            "MseThreshold": 6.0,
            "Flag": True,
        },
        execution_variables={
            "PipelineExecutionId": EXECUTION_ID,
            "PipelineExecutionArn": f"{PIPELINE_ARN}/execution/{EXECUTION_ID}",
            "PipelineName": "abalone",
            "PipelineArn": PIPELINE_ARN,
            "StartDateTime": dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc),
            "CurrentDateTime": lambda: dt.datetime(2024, 1, 2, 3, 10, 0),
        },
        step_properties=STEP_PROPERTIES.get,
        read_property_file=read_property_file,
        read_s3_json=read_s3_json,
        experiment_config={"ExperimentName": "abalone", "TrialName": EXECUTION_ID},
    )


def get(reference):
    return {"Get": reference}


def join(on, *values):
    return {"Std:Join": {"On": on, "Values": list(values)}}


# --- plain data --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["text", 1, 2.5, True, False, None, [], {}, [1, "a", None], {"a": {"b": [1, {"c": 2}]}}]
)
def test_plain_json_is_returned_unchanged(ctx, value):
    assert evaluate(value, ctx) == value


def test_evaluate_does_not_mutate_its_input(ctx):
    value = {"A": [get("Parameters.InstanceCount"), {"B": join("/", "s3:/", "x")}]}
    original = copy.deepcopy(value)
    assert evaluate(value, ctx) == {"A": [2, {"B": "s3://x"}]}
    assert value == original


def test_expressions_are_replaced_anywhere_in_nested_arguments(ctx):
    arguments = {
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": get("Parameters.InstanceCount")}},
        "ProcessingInputs": [{"S3Input": {"S3Uri": get("Parameters.InputData")}}],
        "Environment": {"RUN": get("Execution.PipelineExecutionId")},
    }
    assert evaluate(arguments, ctx) == {
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 2}},
        "ProcessingInputs": [{"S3Input": {"S3Uri": "s3://my-bucket/abalone.csv"}}],
        "Environment": {"RUN": EXECUTION_ID},
    }


def test_dict_with_get_and_other_keys_is_plain_data(ctx):
    value = {"Get": "Parameters.InstanceCount", "Other": get("Parameters.Flag")}
    assert evaluate(value, ctx) == {"Get": "Parameters.InstanceCount", "Other": True}


# --- Get: parameters, execution variables, experiment config ------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("InputData", "s3://my-bucket/abalone.csv"), ("InstanceCount", 2), ("MseThreshold", 6.0),
     ("Flag", True)],
)
def test_get_parameter_keeps_its_type(ctx, name, expected):
    result = evaluate(get(f"Parameters.{name}"), ctx)
    assert result == expected and type(result) is type(expected)


def test_get_unknown_parameter_fails(ctx):
    with pytest.raises(ExpressionError, match="Parameter 'Nope'"):
        evaluate(get("Parameters.Nope"), ctx)


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("PipelineExecutionId", EXECUTION_ID),
        ("PipelineExecutionArn", f"{PIPELINE_ARN}/execution/{EXECUTION_ID}"),
        ("PipelineName", "abalone"),
        ("PipelineArn", PIPELINE_ARN),
        ("StartDateTime", "2024-01-02T03:04:05.678Z"),
        ("CurrentDateTime", "2024-01-02T03:10:00.000Z"),
    ],
)
def test_get_execution_variables(ctx, variable, expected):
    assert evaluate(get(f"Execution.{variable}"), ctx) == expected


def test_current_datetime_callable_is_called_on_each_read(ctx):
    ticks = iter([dt.datetime(2024, 5, 1, 0, 0, 0), dt.datetime(2024, 5, 1, 0, 0, 1)])
    ctx.execution_variables = {"CurrentDateTime": lambda: next(ticks)}
    first = evaluate(get("Execution.CurrentDateTime"), ctx)
    second = evaluate(get("Execution.CurrentDateTime"), ctx)
    assert (first, second) == ("2024-05-01T00:00:00.000Z", "2024-05-01T00:00:01.000Z")


def test_datetime_with_non_utc_timezone_is_converted_to_utc(ctx):
    plus_two = dt.timezone(dt.timedelta(hours=2))
    ctx.execution_variables = {"StartDateTime": dt.datetime(2024, 1, 1, 2, 0, tzinfo=plus_two)}
    assert evaluate(get("Execution.StartDateTime"), ctx) == "2024-01-01T00:00:00.000Z"


def test_missing_execution_variable_fails(ctx):
    with pytest.raises(ExpressionError, match="TrainingJobName"):
        evaluate(get("Execution.TrainingJobName"), ctx)


def test_get_experiment_config(ctx):
    assert evaluate(get("PipelineExperimentConfig.ExperimentName"), ctx) == "abalone"
    assert evaluate(get("PipelineExperimentConfig.TrialName"), ctx) == EXECUTION_ID
    ctx.experiment_config = None
    with pytest.raises(ExpressionError, match="PipelineExperimentConfig.TrialName"):
        evaluate(get("PipelineExperimentConfig.TrialName"), ctx)


# --- Get: step properties -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Steps.Train.ModelArtifacts.S3ModelArtifacts", "s3://my-bucket/model/train-q9/output/model.tar.gz"),
        ("Steps.Pre.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri",
         "s3://my-bucket/Abalone/abc/Pre/output/train"),
        ('Steps.Pre.ProcessingOutputConfig.Outputs["test"].S3Output.S3Uri',
         "s3://my-bucket/Abalone/abc/Pre/output/test"),
        ("Steps.Pre.ProcessingOutputConfig.Outputs[1].OutputName", "test"),
        ("Steps.Pre.ProcessingOutputConfig.Outputs[-1].OutputName", "test"),
        ("Steps.Pre.ProcessingInputs['code'].S3Input.S3Uri", "s3://my-bucket/code/preprocess.py"),
        ("Steps.Pre.ProcessingResources.ClusterConfig.InstanceCount", 2),
        ("Steps.Train.InputDataConfig['validation'].DataSource.S3DataSource.S3Uri", "s3://b/val"),
        ("Steps.Train.FinalMetricDataList['validation:rmse'].Value", 3.25),
        ("Steps.Train.HyperParameters['num_round']", "50"),
        ("Steps.Train.EnableNetworkIsolation", False),
        ("Steps.Tune.TrainingJobSummaries[0].TrainingJobName", "tune-1-002"),
        ("Steps.Tune.TrainingJobSummaries['tune-1-001']"
         ".FinalHyperParameterTuningJobObjectiveMetric.Value", 0.8),
        ("Steps.Tune.BestTrainingJob.TrainingJobName", "tune-1-002"),
        ("Steps.Check.Outcome", "True"),
        ("Steps.Lambda.OutputParameters['model_uri']", "s3://b/m"),
        ("Steps.Lambda.OutputParameters['count']", 7),
        ("Steps.Callback.OutputParameters['status']", "approved"),
        ("Steps.Endpoint.ProductionVariants['AllTraffic'].CurrentWeight", 1.0),
    ],
)
def test_get_step_property(ctx, reference, expected):
    assert evaluate(get(reference), ctx) == expected


def test_get_step_property_returns_containers(ctx):
    assert evaluate(get("Steps.Train.ModelArtifacts"), ctx) == TRAINING_PROPERTIES["ModelArtifacts"]
    assert evaluate(get("Steps.Check"), ctx) == {"Outcome": "True"}


@pytest.mark.parametrize(
    ("reference", "missing"),
    [
        ("Steps.Train.ModelArtifacts.Nope", "ModelArtifacts.Nope"),
        ("Steps.Train.Missing.S3ModelArtifacts", "Missing"),
        ("Steps.Pre.ProcessingOutputConfig.Outputs['validation'].S3Output.S3Uri",
         "ProcessingOutputConfig.Outputs['validation']"),
        ("Steps.Pre.ProcessingOutputConfig.Outputs[5].S3Output", "ProcessingOutputConfig.Outputs[5]"),
        ("Steps.Train.ModelArtifacts[0]", "ModelArtifacts[0]"),
        ("Steps.Train.ModelArtifacts.S3ModelArtifacts.Deeper", "ModelArtifacts.S3ModelArtifacts.Deeper"),
        ("Steps.Train.HyperParameters['eta']", "HyperParameters['eta']"),
        ("Steps.Tune.TrainingJobSummaries[-3]", "TrainingJobSummaries[-3]"),
    ],
)
def test_missing_property_error_names_the_path(ctx, reference, missing):
    with pytest.raises(ExpressionError) as caught:
        evaluate(get(reference), ctx)
    assert reference in str(caught.value)
    assert f"'{missing}' does not exist" in str(caught.value)


@pytest.mark.parametrize("lookup", [lambda name: None, {}.__getitem__])
def test_step_without_properties_fails(ctx, lookup):
    ctx.step_properties = lookup
    with pytest.raises(ExpressionError, match="step 'Train' has no properties"):
        evaluate(get("Steps.Train.ModelArtifacts.S3ModelArtifacts"), ctx)


def test_default_context_has_no_step_properties():
    with pytest.raises(ExpressionError, match="Train"):
        evaluate(get("Steps.Train.ModelArtifacts.S3ModelArtifacts"), EvaluationContext())


def test_bare_get_of_property_file_fails(ctx):
    with pytest.raises(ExpressionError, match="Std:JsonGet"):
        evaluate(get("Steps.Eval.PropertyFiles.EvaluationReport"), ctx)


@pytest.mark.parametrize("reference", ["Foo.Bar", "Parameters", "Parameters.", "Steps.", 5, None])
def test_malformed_get_fails(ctx, reference):
    with pytest.raises(ExpressionError):
        evaluate({"Get": reference}, ctx)


# --- Std:Join ----------------------------------------------------------------------------------


def test_join_of_strings_and_expressions(ctx):
    value = join("/", "s3:/", "my-bucket", get("Execution.PipelineName"),
                 get("Execution.PipelineExecutionId"), "Pre", "output", "train")
    assert evaluate(value, ctx) == f"s3://my-bucket/abalone/{EXECUTION_ID}/Pre/output/train"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2.5, True, False, "x"], "1,2.5,true,false,x"),
        ([6.0, -3, 0.1, 1e-05, 12345678901234567890], "6.0,-3,0.1,1e-05,12345678901234567890"),
        ([], ""),
        (["only"], "only"),
    ],
)
def test_join_renders_primitives(ctx, values, expected):
    assert evaluate(join(",", *values), ctx) == expected


def test_join_renders_typed_parameters(ctx):
    value = join(" ", "MSE above", get("Parameters.MseThreshold"), get("Parameters.InstanceCount"),
                 get("Parameters.Flag"))
    assert evaluate(value, ctx) == "MSE above 6.0 2 true"


def test_join_defaults_to_empty_separator(ctx):
    assert evaluate({"Std:Join": {"Values": ["a", get("Parameters.InstanceCount")]}}, ctx) == "a2"


def test_nested_joins(ctx):
    inner = join("-", get("Execution.PipelineName"), get("Parameters.InstanceCount"))
    middle = join("/", "s3://my-bucket", inner, join("", "run-", get("Execution.PipelineExecutionId")))
    outer = join("", middle, "/", join(".", "model", "tar", "gz"))
    assert evaluate(outer, ctx) == f"s3://my-bucket/abalone-2/run-{EXECUTION_ID}/model.tar.gz"


def test_join_with_step_property_and_json_get(ctx):
    value = join(
        ":",
        get("Steps.Pre.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri"),
        {"Std:JsonGet": {"PropertyFile": get("Steps.Eval.PropertyFiles.EvaluationReport"),
                         "Path": "regression_metrics.mse.value"}},
    )
    assert evaluate(value, ctx) == "s3://my-bucket/Abalone/abc/Pre/output/train:4.75"


def test_join_separator_may_be_an_expression(ctx):
    assert evaluate({"Std:Join": {"On": get("Parameters.InputData"), "Values": ["a", "b"]}}, ctx) == (
        "as3://my-bucket/abalone.csvb"
    )


@pytest.mark.parametrize("bad", [None, {"a": 1}, [1, 2]])
def test_join_rejects_null_and_containers(ctx, bad):
    with pytest.raises(ExpressionError, match="Std:Join cannot join"):
        evaluate(join("/", "a", bad), ctx)


def test_join_rejects_container_property(ctx):
    with pytest.raises(ExpressionError, match="Std:Join"):
        evaluate(join("/", get("Steps.Train.ModelArtifacts")), ctx)


@pytest.mark.parametrize(
    "body", [{"On": "/"}, {"On": "/", "Values": "abc"}, "text", {"On": 5, "Values": ["a"]}]
)
def test_malformed_join_fails(ctx, body):
    with pytest.raises(ExpressionError, match="Std:Join"):
        evaluate({"Std:Join": body}, ctx)


def test_unknown_function_fails(ctx):
    with pytest.raises(ExpressionError, match="Unknown function 'Std:Concat'"):
        evaluate({"Std:Concat": {"Values": ["a"]}}, ctx)


# --- Std:JsonGet -------------------------------------------------------------------------------


def json_get(path, source=None):
    body = {"PropertyFile": source or get("Steps.Eval.PropertyFiles.EvaluationReport"), "Path": path}
    return {"Std:JsonGet": body}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("regression_metrics.mse.value", 4.75),
        ("regression_metrics.mse", {"value": 4.75, "standard_deviation": 0.5}),
        ("thresholds[1]", 2.5),
        ("thresholds[-1]", 3),
        ("passed", True),
        ("name", "abalone"),
        ("$.regression_metrics.mse.standard_deviation", 0.5),
        ("$['name']", "abalone"),
        ("labels['a.b']", "dotted"),
        ('labels["x[0]"]', "bracketed"),
        ("['regression_metrics']['mse']['value']", 4.75),
    ],
)
def test_json_get_property_file(ctx, calls, path, expected):
    assert evaluate(json_get(path), ctx) == expected
    assert calls == [("property_file", "Eval", "EvaluationReport")]


def test_json_get_accepts_bare_string_property_file(ctx, calls):
    value = json_get("regression_metrics.mse.value", "Steps.Eval.PropertyFiles.EvaluationReport")
    assert evaluate(value, ctx) == 4.75
    assert calls == [("property_file", "Eval", "EvaluationReport")]


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        ("regression_metrics.rmse.value", "regression_metrics.rmse"),
        ("thresholds[3]", "thresholds[3]"),
        ("name.first", "name.first"),
        ("regression_metrics[0]", "regression_metrics[0]"),
    ],
)
def test_json_get_missing_path_fails(ctx, path, missing):
    with pytest.raises(ExpressionError) as caught:
        evaluate(json_get(path), ctx)
    message = str(caught.value)
    assert f"Invalid JSON path '{path}'" in message
    assert "EvaluationReport" in message and f"'{missing}' does not exist" in message


@pytest.mark.parametrize("path", ["a..b", "a[", "a[x]", "", ".a", "a]"])
def test_json_get_malformed_path_fails(ctx, path):
    with pytest.raises(ExpressionError, match="path"):
        evaluate(json_get(path), ctx)


def test_json_get_path_must_be_a_string(ctx):
    with pytest.raises(ExpressionError, match="'Path' must be a string"):
        evaluate(json_get(5), ctx)


def test_json_get_path_may_be_an_expression(ctx):
    ctx.parameters = {"MetricPath": "regression_metrics.mse.value"}
    assert evaluate(json_get(get("Parameters.MetricPath")), ctx) == 4.75


@pytest.mark.parametrize(
    "source", ["Steps.Eval.ProcessingOutputConfig", get("Parameters.InputData"), get("Steps.Eval")]
)
def test_json_get_property_file_reference_must_name_a_property_file(ctx, source):
    with pytest.raises(ExpressionError, match="PropertyFiles"):
        evaluate(json_get("a", source), ctx)


def test_json_get_reader_failure_becomes_expression_error(ctx):
    def broken(step, name):
        raise FileNotFoundError("NoSuchKey: evaluation.json")

    ctx.read_property_file = broken
    with pytest.raises(ExpressionError, match="NoSuchKey") as caught:
        evaluate(json_get("a"), ctx)
    assert "EvaluationReport" in str(caught.value)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_json_get_reader_expression_error_passes_through(ctx):
    def refusing(step, name):
        raise ExpressionError("custom reason")

    ctx.read_property_file = refusing
    with pytest.raises(ExpressionError, match="^custom reason$"):
        evaluate(json_get("a"), ctx)


def test_default_context_cannot_read_files():
    with pytest.raises(ExpressionError, match="EvaluationReport"):
        evaluate(json_get("a"), EvaluationContext())
    with pytest.raises(ExpressionError, match="s3://b/k"):
        evaluate({"Std:JsonGet": {"S3Uri": "s3://b/k", "Path": "a"}}, EvaluationContext())


def test_json_get_s3_uri_built_with_join(ctx, calls):
    uri = join("/", "s3:/", "my-bucket", "Abalone",
               get("Execution.PipelineExecutionId"), "result.json")
    value = {"Std:JsonGet": {"S3Uri": uri, "Path": "Output[1]"}}
    assert evaluate(value, ctx) == 10
    assert calls == [("s3", f"s3://my-bucket/Abalone/{EXECUTION_ID}/result.json")]


def test_json_get_s3_uri_literal(ctx):
    value = {"Std:JsonGet": {"S3Uri": f"s3://my-bucket/Abalone/{EXECUTION_ID}/result.json",
                             "Path": "Flag"}}
    assert evaluate(value, ctx) is False


def test_json_get_s3_uri_must_be_a_string(ctx):
    value = {"Std:JsonGet": {"S3Uri": get("Parameters.InstanceCount"), "Path": "a"}}
    with pytest.raises(ExpressionError, match="S3Uri"):
        evaluate(value, ctx)


@pytest.mark.parametrize("body", [{"Path": "a"}, "text", None])
def test_json_get_requires_a_source(ctx, body):
    with pytest.raises(ExpressionError, match="Std:JsonGet"):
        evaluate({"Std:JsonGet": body}, ctx)


# --- referenced_steps, iter_expressions, expression_kind ---------------------------------------


def test_referenced_steps_finds_every_step_reference():
    arguments = {
        "Inputs": [{"S3Uri": get("Steps.Pre.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri")}],
        "Model": join("/", get("Steps.Train.ModelArtifacts.S3ModelArtifacts"), get("Parameters.X")),
        "Threshold": {"Std:JsonGet": {"PropertyFile": get("Steps.Eval.PropertyFiles.Report"),
                                      "Path": "a"}},
        "Legacy": {"Std:JsonGet": {"PropertyFile": "Steps.Old.PropertyFiles.Report", "Path": "a"}},
        "FromS3": {"Std:JsonGet": {"S3Uri": join("/", get("Steps.Fn.OutputDataConfig.S3OutputPath")),
                                   "Path": "Return"}},
        "Deep": [[[{"x": get("Steps.Tune.TrainingJobSummaries[0].TrainingJobName")}]]],
        "NotSteps": [get("Execution.PipelineExecutionId"), get("PipelineExperimentConfig.TrialName")],
    }
    assert referenced_steps(arguments) == {"Pre", "Train", "Eval", "Old", "Fn", "Tune"}


def test_referenced_steps_ignores_data_and_malformed_references():
    value = {"a": "Steps.Train.ModelArtifacts", "b": {"Get": "Steps."}, "c": {"Get": 5},
             "d": {"Get": "Steps.X", "extra": 1}}
    assert referenced_steps(value) == set()
    assert referenced_steps(get("Steps.Step-With_dashes[0]")) == {"Step-With_dashes"}


def test_iter_expressions_yields_nested_expressions_outermost_first():
    value = {"a": join("/", get("Parameters.A"), {"Std:JsonGet": {"S3Uri": get("Steps.S.X"),
                                                                    "Path": "p"}})}
    kinds = [kind for kind, _ in iter_expressions(value)]
    assert kinds == ["Std:Join", "Get", "Std:JsonGet", "Get"]


@pytest.mark.parametrize(
    ("value", "kind"),
    [(get("Parameters.A"), "Get"), (join("", "a"), "Std:Join"), ({"Std:Other": 1}, "Std:Other"),
     ({"Get": 1, "b": 2}, None), ({"Other": 1}, None), ("Get", None), ([get("Parameters.A")], None)],
)
def test_expression_kind(value, kind):
    assert expression_kind(value) == kind


# --- parse_reference / parse_path / resolve_path / render_string -------------------------------


def test_parse_reference_scopes():
    ref = parse_reference("Steps.Pre.ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri")
    assert (ref.scope, ref.name) == ("Steps", "Pre")
    assert ref.path == (("attr", "ProcessingOutputConfig"), ("attr", "Outputs"), ("key", "train"),
                        ("attr", "S3Output"), ("attr", "S3Uri"))
    assert ref.property_file is None
    assert parse_reference("Parameters.Input-Data_1").name == "Input-Data_1"
    assert parse_reference("Execution.PipelineExecutionId").scope == "Execution"
    assert parse_reference("Steps.Eval.PropertyFiles.Report").property_file == "Report"
    assert parse_reference("Steps.Tune[0]").path == (("index", 0),)


@pytest.mark.parametrize(
    "text",
    ["Steps", "Steps.", "Steps.X.", "Steps.X..a", "Steps.X[abc]", "Steps.X[0", "Steps.X.a'b",
     "Steps..a", "Parameters.a.b", "Execution.", "Other.X", "", 3],
)
def test_parse_reference_rejects_malformed_text(text):
    with pytest.raises(ExpressionError):
        parse_reference(text)


def test_parse_path_segments():
    assert parse_path("a.b[0]['c.d'][\"e]f\"][-2]") == (
        ("attr", "a"), ("attr", "b"), ("index", 0), ("key", "c.d"), ("key", "e]f"), ("index", -2))
    assert parse_path(".a.b", leading_dot=True) == (("attr", "a"), ("attr", "b"))
    assert parse_path("", leading_dot=True) == ()


def test_resolve_path_prefers_the_list_name_key():
    data = {"Outputs": [{"OutputName": "x", "Name": "train"}, {"OutputName": "train", "v": 2}]}
    assert resolve_path(data, parse_path("Outputs['train'].v"), what="w") == 2
    unknown = {"Things": [{"ThingName": "a", "v": 1}, {"Name": "b", "v": 2}]}
    assert resolve_path(unknown, parse_path("Things['a'].v"), what="w") == 1
    assert resolve_path(unknown, parse_path("Things['b'].v"), what="w") == 2


@pytest.mark.parametrize(
    ("value", "text"),
    [("s", "s"), (True, "true"), (False, "false"), (0, "0"), (-7, "-7"), (6.0, "6.0"),
     (0.25, "0.25"), (1e20, "1e+20"), (dt.datetime(2023, 12, 31, 23, 59, 59, 999999),
                                      "2023-12-31T23:59:59.999Z")],
)
def test_render_string(value, text):
    assert render_string(value) == text


@pytest.mark.parametrize("value", [None, [], {}, object()])
def test_render_string_rejects_non_primitives(value):
    with pytest.raises(ExpressionError):
        render_string(value)
