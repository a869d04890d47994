"""Evaluation of ConditionStep conditions.

A Condition step's ``Arguments.Conditions`` is a list whose members must all hold (AND).
Each member has a ``Type`` as the SageMaker Python SDK writes it on the wire:

* ``Equals``, ``GreaterThan``, ``GreaterThanOrEqualTo``, ``LessThan``, ``LessThanOrEqualTo``
  with ``LeftValue``/``RightValue``;
* ``In`` with ``QueryValue`` and ``Values``;
* ``Not`` with ``Condition``; ``Or`` with ``Conditions``.

(The SDK classes are named ``ConditionEquals`` etc., but their ``Type`` on the wire is the
suffix; ``"Type": "ConditionEquals"`` is rejected like any unknown type.)

Operands are evaluated with :func:`smlocal.pipelines.expressions.evaluate`.

Comparison rules (AWS does not document them; chosen to match what pipelines rely on):

* numbers compare numerically, ``int`` and ``float`` alike (``1 == 1.0``);
* a string that is a decimal number compares numerically with a number (``"0.5" < 0.6``);
* two strings: ``Equals``/``In`` compare them exactly; ordering compares numerically when both
  are decimal numbers, otherwise lexicographically;
* booleans equal booleans, or the strings ``true``/``false`` in any case; they never equal
  numbers and cannot be ordered;
* a number never equals a non-numeric string; ``null``, lists and objects equal only an
  identical value; ordering any of these is an :class:`ExpressionError`.

``Or`` and the top-level AND short-circuit, evaluating operands left to right.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

from smlocal.errors import ValidationError
from smlocal.pipelines.expressions import EvaluationContext, ExpressionError, evaluate

__all__ = [
    "COMPARISON_TYPES",
    "CONDITION_TYPES",
    "condition_metadata",
    "condition_outcome",
    "evaluate_condition",
    "evaluate_conditions",
    "validate_conditions",
    "values_equal",
]

_ORDERINGS = {
    "GreaterThan": operator.gt,
    "GreaterThanOrEqualTo": operator.ge,
    "LessThan": operator.lt,
    "LessThanOrEqualTo": operator.le,
}
COMPARISON_TYPES = frozenset({"Equals", *_ORDERINGS})
CONDITION_TYPES = frozenset({*COMPARISON_TYPES, "In", "Not", "Or"})

_KEYS = {
    **{name: frozenset({"Type", "LeftValue", "RightValue"}) for name in COMPARISON_TYPES},
    "In": frozenset({"Type", "QueryValue", "Values"}),
    "Not": frozenset({"Type", "Condition"}),
    "Or": frozenset({"Type", "Conditions"}),
}

_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _problem(message: str) -> ValidationError:
    return ValidationError(f"Unable to parse pipeline definition. {message}")


def validate_conditions(conditions: Any, where: str = "Conditions") -> None:
    """Check the structure of a list of conditions, as CreatePipeline does.

    Args:
        conditions: The ``Conditions`` list of a Condition step (or of an ``Or``).
        where: Location used in messages.

    Raises:
        ValidationError: On a non-list, an unknown ``Type``, a missing or unknown property.
    """
    if not isinstance(conditions, list):
        raise _problem(f"{where} must be a list of conditions.")
    for index, condition in enumerate(conditions):
        _validate_condition(condition, f"{where}[{index}]")


def _validate_condition(condition: Any, where: str) -> None:
    if not isinstance(condition, Mapping):
        raise _problem(f"{where} must be an object.")
    kind = condition.get("Type")
    if kind not in CONDITION_TYPES:
        raise _problem(
            f"{where}: unknown condition Type {kind!r}; expected one of {sorted(CONDITION_TYPES)}."
        )
    allowed = _KEYS[kind]
    for key in condition:
        if key not in allowed:
            raise _problem(f"Cannot parse object, unknown property '{key}'.")
    for key in allowed:
        if key not in condition:
            raise _problem(f"{where}: condition of Type {kind} requires '{key}'.")
    if kind == "In" and not isinstance(condition["Values"], list):
        raise _problem(f"{where}: 'Values' of an In condition must be a list.")
    if kind == "Not":
        _validate_condition(condition["Condition"], f"{where}.Condition")
    if kind == "Or":
        validate_conditions(condition["Conditions"], f"{where}.Conditions")


def _as_number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            return float(text)
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def values_equal(left: Any, right: Any) -> bool:
    """Whether two evaluated operands are equal under the rules in the module docstring.

    Args:
        left: First operand.
        right: Second operand.

    Returns:
        True if they are equal.
    """
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if isinstance(left, bool) or isinstance(right, bool):
        if isinstance(left, bool) and isinstance(right, bool):
            return left == right
        other = right if isinstance(left, bool) else left
        flag = left if isinstance(left, bool) else right
        return isinstance(other, str) and _as_bool(other) == flag
    left_number, right_number = _as_number(left), _as_number(right)
    if left_number is not None and right_number is not None:
        return left_number == right_number
    if isinstance(left, (int, float, str)) or isinstance(right, (int, float, str)):
        return False
    return left == right


def _order(kind: str, left: Any, right: Any) -> bool:
    compare = _ORDERINGS[kind]
    left_number, right_number = _as_number(left), _as_number(right)
    if left_number is not None and right_number is not None:
        return compare(left_number, right_number)
    if isinstance(left, str) and isinstance(right, str):
        return compare(left, right)
    raise ExpressionError(
        f"Condition of type {kind} is not supported between {_describe(left)} "
        f"and {_describe(right)}."
    )


def _describe(value: Any) -> str:
    kind = {bool: "Boolean", int: "Integer", float: "Float", str: "String"}.get(type(value))
    if value is None:
        return "null"
    if kind is None:
        kind = "List" if isinstance(value, list) else "Object"
    return f"[{value!r}] of type {kind}"


def evaluate_condition(condition: Mapping[str, Any], ctx: EvaluationContext) -> bool:
    """Evaluate one condition.

    Args:
        condition: A condition object from a Condition step.
        ctx: Context used to evaluate the operands' expressions.

    Returns:
        Whether the condition holds.

    Raises:
        ExpressionError: If the condition is malformed or an operand cannot be evaluated or
            compared.
    """
    if not isinstance(condition, Mapping):
        raise ExpressionError(f"A condition must be an object, got {condition!r}.")
    kind = condition.get("Type")
    try:
        if kind == "Equals":
            return values_equal(
                evaluate(condition["LeftValue"], ctx), evaluate(condition["RightValue"], ctx)
            )
        if kind in _ORDERINGS:
            left = evaluate(condition["LeftValue"], ctx)
            return _order(kind, left, evaluate(condition["RightValue"], ctx))
        if kind == "In":
            query = evaluate(condition["QueryValue"], ctx)
            candidates = condition["Values"]
            if not isinstance(candidates, list):
                raise ExpressionError("'Values' of an In condition must be a list.")
            return any(values_equal(query, evaluate(item, ctx)) for item in candidates)
        if kind == "Not":
            return not evaluate_condition(condition["Condition"], ctx)
        if kind == "Or":
            members = condition["Conditions"]
            if not isinstance(members, list):
                raise ExpressionError("'Conditions' of an Or condition must be a list.")
            return any(evaluate_condition(member, ctx) for member in members)
    except KeyError as exc:
        raise ExpressionError(f"Condition of type {kind} is missing {exc.args[0]!r}.") from None
    raise ExpressionError(f"Unknown condition type {kind!r}.")


def evaluate_conditions(conditions: Sequence[Mapping[str, Any]], ctx: EvaluationContext) -> bool:
    """Evaluate a Condition step's conditions: true when all of them hold (an empty list holds).

    Args:
        conditions: The step's ``Conditions`` list.
        ctx: Context used to evaluate the operands' expressions.

    Returns:
        The step's outcome.

    Raises:
        ExpressionError: As :func:`evaluate_condition`.
    """
    return all(evaluate_condition(condition, ctx) for condition in conditions)


def condition_outcome(result: bool) -> str:
    """The ``ConditionOutcome`` enum value (``"True"``/``"False"``) for a result.

    Args:
        result: The evaluated outcome.

    Returns:
        ``"True"`` or ``"False"``; also the value of the step property ``Steps.<name>.Outcome``.
    """
    return "True" if result else "False"


def condition_metadata(result: bool) -> dict[str, dict[str, str]]:
    """The step ``Metadata`` that ListPipelineExecutionSteps reports for a Condition step.

    Args:
        result: The evaluated outcome.

    Returns:
        ``{"Condition": {"Outcome": "True"|"False"}}``.
    """
    return {"Condition": {"Outcome": condition_outcome(result)}}
