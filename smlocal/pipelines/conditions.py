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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from smlocal.errors import ValidationError
from smlocal.pipelines.expressions import EvaluationContext, ExpressionError, evaluate, expression_kind

__all__ = [
    "COMPARISON_TYPES",
    "CONDITION_TYPES",
    "condition_metadata",
    "describe_operand",
    "evaluate_condition",
    "evaluate_conditions",
    "iter_comparisons",
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
    for condition, at in _walk(conditions, where):
        _validate_condition(condition, at)


def _walk(conditions: Any, where: str) -> Iterator[tuple[Any, str]]:
    """Every condition of a list, through ``Not`` and ``Or``, with its location; a parent before its members."""
    for index, condition in enumerate(conditions if isinstance(conditions, list) else ()):
        yield from _walk_one(condition, f"{where}[{index}]")


def _walk_one(condition: Any, where: str) -> Iterator[tuple[Any, str]]:
    yield condition, where
    if isinstance(condition, Mapping):
        if condition.get("Type") == "Not" and "Condition" in condition:
            yield from _walk_one(condition["Condition"], f"{where}.Condition")
        elif condition.get("Type") == "Or":
            yield from _walk(condition.get("Conditions"), f"{where}.Conditions")


def _validate_condition(condition: Any, where: str) -> None:
    """Check one condition's own members (:func:`_walk` reaches the ones inside it)."""
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
    if kind == "Or" and not isinstance(condition["Conditions"], list):
        raise _problem(f"{where}.Conditions must be a list of conditions.")


def iter_comparisons(conditions: Any) -> Iterator[tuple[str, Any, Any]]:
    """Every comparison in a list of conditions, through ``Not`` and ``Or``, as ``(Type, left, right)``.

    An ``In`` yields one comparison of its ``QueryValue`` per member of ``Values``. Malformed
    members are passed over (:func:`validate_conditions` reports them).

    Args:
        conditions: A ``Conditions`` list.

    Yields:
        The comparison's ``Type`` and its two operands, unevaluated.
    """
    for condition, _ in _walk(conditions, "Conditions"):
        kind = condition.get("Type") if isinstance(condition, Mapping) else None
        if kind in COMPARISON_TYPES:
            yield kind, condition.get("LeftValue"), condition.get("RightValue")
        elif kind == "In":
            values = condition.get("Values")
            for value in values if isinstance(values, list) else ():
                yield kind, condition.get("QueryValue"), value


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
        f"Condition of type {kind} is not supported between {describe_operand(left)} "
        f"and {describe_operand(right)}."
    )


def describe_operand(value: Any, kind: str | None = None) -> str:
    """An operand as comparison errors show it, at CreatePipeline and at run time alike.

    Args:
        value: The operand: a ``Get`` (shown as its path) or a value.
        kind: Its type name (``String``, ``Integer``...); when ``None``, the value's own.

    Returns:
        ``[<value>] of type <kind>``, e.g. ``[Parameters.Flag] of type Boolean``, ``[1] of type Integer``.
    """
    if kind is None:
        kind = {bool: "Boolean", int: "Integer", float: "Float", str: "String", type(None): "Null",
                list: "List"}.get(type(value), "Object")
    shown = value["Get"] if expression_kind(value) == "Get" else value
    return f"[{shown}] of type {kind}"


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


def condition_metadata(result: bool) -> dict[str, dict[str, str]]:
    """The step ``Metadata`` that ListPipelineExecutionSteps reports for a Condition step.

    The botocore model types ``ConditionStepMetadata.Outcome`` as the enum ``ConditionOutcome``
    (``True`` | ``False``), so the metadata keeps those strings.

    Args:
        result: The evaluated outcome.

    Returns:
        ``{"Condition": {"Outcome": "True"|"False"}}``.
    """
    return {"Condition": {"Outcome": "True" if result else "False"}}
