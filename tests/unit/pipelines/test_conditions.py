"""Unit tests for smlocal.pipelines.conditions: every condition type, nesting, comparison rules."""

from __future__ import annotations

import json
import os

import pytest

from smlocal.errors import ValidationError
from smlocal.pipelines.conditions import (
    CONDITION_TYPES,
    condition_metadata,
    evaluate_condition,
    evaluate_conditions,
    validate_conditions,
    values_equal,
)
from smlocal.pipelines.expressions import EvaluationContext, ExpressionError

REPORT = {"regression_metrics": {"mse": {"value": 4.75}}, "accuracy": "0.91", "label": "good"}


@pytest.fixture
def ctx():
    return EvaluationContext(
        parameters={"Threshold": 6.0, "Count": 3, "Mode": "train", "Flag": True, "Low": 4.0},
        execution_variables={"PipelineName": "abalone"},
        step_properties={"Train": {"FinalMetricDataList": [{"MetricName": "rmse", "Value": 2.0}]},
                         "Check": {"Outcome": "False"}}.get,
        read_property_file=lambda step, name: REPORT,
    )


def get(reference):
    return {"Get": reference}


def compare(kind, left, right):
    return {"Type": kind, "LeftValue": left, "RightValue": right}


def mse():
    return {"Std:JsonGet": {"PropertyFile": get("Steps.Eval.PropertyFiles.EvaluationReport"),
                            "Path": "regression_metrics.mse.value"}}


TRUE = compare("Equals", 1, 1)
FALSE = compare("Equals", 1, 2)
BROKEN = compare("Equals", get("Steps.Missing.Outcome"), 1)  # evaluating it raises


# --- binary comparisons ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "results"),  # results for GT, GTE, LT, LTE, Equals
    [
        (5, 3, (True, True, False, False, False)),
        (3, 5, (False, False, True, True, False)),
        (4, 4, (False, True, False, True, True)),
        (4, 4.0, (False, True, False, True, True)),
        (4.5, 4, (True, True, False, False, False)),
        (-1, 0.5, (False, False, True, True, False)),
        ("10", 9, (True, True, False, False, False)),
        (9, "10", (False, False, True, True, False)),
        ("0.5", "0.50", (False, True, False, True, False)),  # numeric order, exact string equality
        ("10", "9", (True, True, False, False, False)),
        ("1e3", 1000, (False, True, False, True, True)),
        ("abc", "abd", (False, False, True, True, False)),
        ("b", "B", (True, True, False, False, False)),
        ("same", "same", (False, True, False, True, True)),
    ],
)
def test_comparisons(ctx, left, right, results):
    kinds = ("GreaterThan", "GreaterThanOrEqualTo", "LessThan", "LessThanOrEqualTo", "Equals")
    assert tuple(evaluate_condition(compare(k, left, right), ctx) for k in kinds) == results


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (True, True, True), (True, False, False), (True, "true", True), ("False", False, True),
        (True, "TRUE", True), (True, "yes", False), (True, 1, False), (0, False, False),
        (None, None, True), (None, "None", False), (None, 0, False), ("1", 1.0, True),
        ("abc", 1, False), ([1, 2], [1, 2], True), ({"a": 1}, {"a": 1}, True), ([1], 1, False),
        ("", "", True), (" 1 ", 1, True),
    ],
)
def test_equality_rules(ctx, left, right, equal):
    assert values_equal(left, right) is equal
    assert evaluate_condition(compare("Equals", left, right), ctx) is equal


@pytest.mark.parametrize(
    ("left", "right"),
    [(True, False), (True, 1), (None, 1), ("abc", 1), (1, "x1"), ([1], [2]), ({"a": 1}, 1),
     ("true", True)],
)
@pytest.mark.parametrize("kind", ["GreaterThan", "GreaterThanOrEqualTo", "LessThan", "LessThanOrEqualTo"])
def test_ordering_incomparable_values_fails(ctx, kind, left, right):
    with pytest.raises(ExpressionError, match=f"Condition of type {kind} is not supported"):
        evaluate_condition(compare(kind, left, right), ctx)


def test_operands_are_expressions(ctx):
    assert evaluate_condition(compare("LessThanOrEqualTo", mse(), get("Parameters.Threshold")), ctx)
    assert not evaluate_condition(compare("LessThanOrEqualTo", mse(), get("Parameters.Low")), ctx)
    assert evaluate_condition(compare("GreaterThan", get("Parameters.Count"), 2), ctx)
    assert evaluate_condition(
        compare("Equals", get("Steps.Train.FinalMetricDataList['rmse'].Value"), 2), ctx)
    assert evaluate_condition(compare("Equals", get("Steps.Check.Outcome"), False), ctx)
    assert evaluate_condition(compare("Equals", get("Parameters.Flag"), "true"), ctx)
    joined = {"Std:Join": {"On": "-", "Values": [get("Execution.PipelineName"), get("Parameters.Count")]}}
    assert evaluate_condition(compare("Equals", joined, "abalone-3"), ctx)


def test_json_get_string_number_compares_numerically(ctx):
    accuracy = {"Std:JsonGet": {"PropertyFile": get("Steps.Eval.PropertyFiles.R"), "Path": "accuracy"}}
    assert evaluate_condition(compare("GreaterThanOrEqualTo", accuracy, 0.9), ctx)
    assert evaluate_condition(compare("Equals", accuracy, 0.91), ctx)


def test_operand_errors_propagate(ctx):
    with pytest.raises(ExpressionError, match="Steps.Missing.Outcome"):
        evaluate_condition(BROKEN, ctx)
    bad_path = {"Std:JsonGet": {"PropertyFile": get("Steps.Eval.PropertyFiles.R"), "Path": "nope"}}
    with pytest.raises(ExpressionError, match="Invalid JSON path 'nope'"):
        evaluate_condition(compare("LessThan", bad_path, 1), ctx)


# --- In, Not, Or -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "values", "expected"),
    [
        ("train", ["train", "test"], True),
        ("eval", ["train", "test"], False),
        (3, [1, 2, 3], True),
        (3, ["3"], True),
        ("3.0", [3], True),
        (True, ["true"], True),
        (True, [1], False),
        ("x", [], False),
        (None, [None], True),
    ],
)
def test_in(ctx, query, values, expected):
    assert evaluate_condition({"Type": "In", "QueryValue": query, "Values": values}, ctx) is expected


def test_in_with_expressions(ctx):
    condition = {"Type": "In", "QueryValue": get("Parameters.Mode"),
                 "Values": ["eval", {"Std:Join": {"On": "", "Values": ["tr", "ain"]}}]}
    assert evaluate_condition(condition, ctx)
    condition = {"Type": "In", "QueryValue": get("Parameters.Count"),
                 "Values": [get("Parameters.Threshold"), 3.0]}
    assert evaluate_condition(condition, ctx)


def test_not(ctx):
    assert evaluate_condition({"Type": "Not", "Condition": FALSE}, ctx) is True
    assert evaluate_condition({"Type": "Not", "Condition": TRUE}, ctx) is False
    double = {"Type": "Not", "Condition": {"Type": "Not", "Condition": TRUE}}
    assert evaluate_condition(double, ctx) is True


@pytest.mark.parametrize(
    ("members", "expected"),
    [([TRUE], True), ([FALSE], False), ([FALSE, FALSE, TRUE], True), ([FALSE, FALSE], False),
     ([], False)],
)
def test_or(ctx, members, expected):
    assert evaluate_condition({"Type": "Or", "Conditions": members}, ctx) is expected


def test_or_short_circuits_left_to_right(ctx):
    assert evaluate_condition({"Type": "Or", "Conditions": [TRUE, BROKEN]}, ctx) is True
    with pytest.raises(ExpressionError):
        evaluate_condition({"Type": "Or", "Conditions": [FALSE, BROKEN]}, ctx)


def test_conditions_are_a_conjunction(ctx):
    assert evaluate_conditions([TRUE, TRUE], ctx) is True
    assert evaluate_conditions([TRUE, FALSE, TRUE], ctx) is False
    assert evaluate_conditions([], ctx) is True
    assert evaluate_conditions([FALSE, BROKEN], ctx) is False  # short-circuits
    with pytest.raises(ExpressionError):
        evaluate_conditions([TRUE, BROKEN], ctx)


# --- deep nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [29, 30])
def test_not_nested_30_deep(ctx, depth):
    condition = compare("LessThanOrEqualTo", mse(), get("Parameters.Threshold"))  # True
    for _ in range(depth):
        condition = {"Type": "Not", "Condition": condition}
    validate_conditions([condition])
    assert evaluate_condition(condition, ctx) is (depth % 2 == 0)


def test_or_nested_30_deep(ctx):
    condition = TRUE
    for _ in range(30):
        condition = {"Type": "Or", "Conditions": [FALSE, condition]}
    validate_conditions([condition])
    assert evaluate_condition(condition, ctx) is True
    innermost_false = FALSE
    for _ in range(30):
        innermost_false = {"Type": "Or", "Conditions": [FALSE, innermost_false]}
    assert evaluate_condition(innermost_false, ctx) is False


def test_mixed_nesting_30_deep(ctx):
    condition = {"Type": "In", "QueryValue": get("Parameters.Mode"), "Values": ["train"]}
    expected = True
    for level in range(30):
        if level % 3 == 0:
            condition, expected = {"Type": "Not", "Condition": condition}, not expected
        elif level % 3 == 1:
            condition = {"Type": "Or", "Conditions": [FALSE, condition, FALSE]}
        else:
            condition, expected = (
                {"Type": "Or", "Conditions": [condition, compare("GreaterThan", 1, 0)]}, True)
    validate_conditions([condition])
    assert evaluate_condition(condition, ctx) is expected


# --- malformed conditions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "condition",
    [{"Type": "ConditionEquals", "LeftValue": 1, "RightValue": 1}, {"Type": "Unknown"}, {}, "x",
     {"Type": "Equals", "LeftValue": 1}, {"Type": "Not"}, {"Type": "Or"},
     {"Type": "Or", "Conditions": "x"}, {"Type": "In", "QueryValue": 1, "Values": 2}],
)
def test_evaluating_malformed_condition_fails(ctx, condition):
    with pytest.raises(ExpressionError):
        evaluate_condition(condition, ctx)


def test_validate_accepts_every_condition_type():
    conditions = [compare(k, 1, 2) for k in ("Equals", "GreaterThan", "GreaterThanOrEqualTo",
                                             "LessThan", "LessThanOrEqualTo")]
    conditions += [{"Type": "In", "QueryValue": 1, "Values": [1]},
                   {"Type": "Not", "Condition": TRUE}, {"Type": "Or", "Conditions": [TRUE]}]
    validate_conditions(conditions)
    assert {c["Type"] for c in conditions} == CONDITION_TYPES


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        ("x", "must be a list"),
        (["x"], "must be an object"),
        ([{"Type": "ConditionEquals", "LeftValue": 1, "RightValue": 1}], "unknown condition Type"),
        ([{"Type": "NotEquals", "LeftValue": 1, "RightValue": 1}], "unknown condition Type"),
        ([{"LeftValue": 1, "RightValue": 1}], "unknown condition Type None"),
        ([{"Type": "Equals", "LeftValue": 1}], "requires 'RightValue'"),
        ([{"Type": "In", "QueryValue": 1}], "requires 'Values'"),
        ([{"Type": "In", "QueryValue": 1, "Values": 1}], "must be a list"),
        ([{"Type": "Not", "Expression": TRUE}], "Cannot parse object, unknown property 'Expression'."),
        ([{"Type": "Equals", "LeftValue": 1, "RightValue": 1, "Extra": 1}],
         "unknown property 'Extra'"),
        ([{"Type": "Or", "Conditions": [TRUE, {"Type": "Bogus"}]}], r"Conditions\[0\]\.Conditions\[1\]"),
        ([{"Type": "Not", "Condition": {"Type": "Not", "Condition": {"Type": "Equals"}}}],
         "Condition.Condition"),
    ],
)
def test_validate_rejects_malformed_conditions(conditions, message):
    with pytest.raises(ValidationError, match=message) as caught:
        validate_conditions(conditions)
    assert caught.value.message.startswith("Unable to parse pipeline definition.")
    assert caught.value.code == "ValidationException"


# --- outcome -----------------------------------------------------------------------------------


def test_outcome_metadata():
    assert condition_metadata(True) == {"Condition": {"Outcome": "True"}}
    assert condition_metadata(False) == {"Condition": {"Outcome": "False"}}


# --- conditions written by the SageMaker Python SDK ---------------------------------------------


def test_sdk_generated_conditions(ctx):
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    import sagemaker.workflow.conditions as conditions_module  # SDK v2 is a test dependency: never skipped
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.functions import Join, JsonGet
    from sagemaker.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.workflow.pipeline import interpolate

    c = conditions_module
    threshold, count = ParameterFloat("Threshold", 6.0), ParameterInteger("Count", 3)
    mode = ParameterString("Mode", "train")
    metric = JsonGet(step_name="Eval", property_file="EvaluationReport",
                     json_path="regression_metrics.mse.value")
    sdk_conditions = [
        c.ConditionLessThanOrEqualTo(left=metric, right=threshold),
        c.ConditionGreaterThan(left=count, right=2),
        c.ConditionGreaterThanOrEqualTo(left=count, right=3),
        c.ConditionLessThan(left=metric, right=5),
        c.ConditionEquals(left=Join(on="-", values=[ExecutionVariables.PIPELINE_NAME, count]),
                          right="abalone-3"),
        c.ConditionIn(value=mode, in_values=["train", "retrain"]),
        c.ConditionNot(c.ConditionEquals(left=mode, right="eval")),
        c.ConditionOr([c.ConditionEquals(left=count, right=0), c.ConditionIn(value=count, in_values=[3])]),
    ]
    wire = json.loads(json.dumps(interpolate([x.to_request() for x in sdk_conditions], {}, {},
                                             pipeline_name="abalone")))
    assert [w["Type"] for w in wire] == ["LessThanOrEqualTo", "GreaterThan", "GreaterThanOrEqualTo",
                                         "LessThan", "Equals", "In", "Not", "Or"]
    validate_conditions(wire)
    assert [evaluate_condition(w, ctx) for w in wire] == [True] * 8
    assert evaluate_conditions(wire, ctx) is True
    ctx.parameters = {**ctx.parameters, "Count": 0}
    assert [evaluate_condition(w, ctx) for w in wire] == [True, False, False, True, False, True, True,
                                                          True]
