"""The SageMaker ``Search`` API's expression language, applied to records (pure).

A record is the document AWS returns in a ``SearchRecord`` (e.g. a ``TrialComponent``). A
``SearchExpression`` holds ``Filters`` (each true for the record), ``NestedFilters`` (one element of
a list property satisfies all its filters), ``SubExpressions`` and an ``Operator`` (``And``, the
default, or ``Or``) joining all of them. As AWS documents it (botocore model, ``Filter``/``Operator``):

* a property name is a dotted path: ``TrialComponentName``, ``Parents.ExperimentName`` (a list
  property matches when one element does), ``Parameters.<name>`` (its ``NumberValue`` or
  ``StringValue``), ``Metrics.<name>`` (a metric summary; ``Metrics.<name>.Max`` one statistic,
  ``Last`` when none is named), ``Tags.<key>`` (the tag's value);
* a filter with a ``Value`` but no ``Operator`` is ``Equals``; ``Exists`` / ``NotExists`` need no value;
* ``GreaterThan``, ``LessThan`` ... are not supported for text properties, ``In`` and ``Contains``
  only for text; numeric and timestamp properties compare as numbers (a timestamp ``Value`` may be
  epoch seconds or ISO 8601);
* at most 50 filters, nested filters and subexpressions in all, and at least one.
"""

from __future__ import annotations

import datetime
from typing import Any, Iterable

from smlocal.errors import ValidationError

MAX_ELEMENTS = 50
_TEXT_ONLY = {"In", "Contains"}
_ORDERED = {"GreaterThan": lambda a, b: a > b, "GreaterThanOrEqualTo": lambda a, b: a >= b,
            "LessThan": lambda a, b: a < b, "LessThanOrEqualTo": lambda a, b: a <= b}
_MISSING = object()


def check_expression(expression: dict[str, Any]) -> None:
    """Raises the ValidationException AWS answers for an empty or too large expression."""
    if count_elements(expression) == 0:
        raise ValidationError("A SearchExpression must specify at least one subexpression, filter, or nested filter.")
    if count_elements(expression) > MAX_ELEMENTS:
        raise ValidationError(f"The maximum number of recursive SubExpressions, NestedFilters, and Filters that "
                              f"can be included in a SearchExpression object is {MAX_ELEMENTS}.")
    for item in _filters_of(expression):
        if item.get("Operator") in ("Exists", "NotExists"):
            continue
        if item.get("Value") is None:
            raise ValidationError(f"Filter on {item['Name']} requires a Value for the operator "
                                  f"{item.get('Operator') or 'Equals'}.")


def count_elements(expression: dict[str, Any]) -> int:
    """Filters, nested filters and subexpressions of ``expression``, counted recursively."""
    subs = expression.get("SubExpressions") or []
    return (len(expression.get("Filters") or []) + len(expression.get("NestedFilters") or []) + len(subs)
            + sum(count_elements(s) for s in subs))


def _filters_of(expression: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield from expression.get("Filters") or []
    for nested in expression.get("NestedFilters") or []:
        yield from nested.get("Filters") or []
    for sub in expression.get("SubExpressions") or []:
        yield from _filters_of(sub)


def matches(record: dict[str, Any], expression: dict[str, Any] | None) -> bool:
    """Whether ``record`` satisfies ``expression`` (None: every record)."""
    if not expression:
        return True
    results = [matches_filter(record, f) for f in expression.get("Filters") or []]
    results += [_matches_nested(record, n) for n in expression.get("NestedFilters") or []]
    results += [matches(record, s) for s in expression.get("SubExpressions") or []]
    return any(results) if expression.get("Operator") == "Or" else all(results)


def _matches_nested(record: dict[str, Any], nested: dict[str, Any]) -> bool:
    prefix = nested["NestedPropertyName"]
    elements = resolve(record, prefix)
    for element in elements:
        if isinstance(element, dict) and all(
                matches_filter(element, {**f, "Name": _strip(f["Name"], prefix)}) for f in nested["Filters"]):
            return True
    return False


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix) + 1:] if name.startswith(prefix + ".") else name


def matches_filter(record: dict[str, Any], item: dict[str, Any]) -> bool:
    """One ``Filter`` (Name, Operator, Value) applied to ``record``."""
    operator = item.get("Operator") or "Equals"
    values = resolve(record, item["Name"])
    if operator == "Exists":
        return bool(values)
    if operator == "NotExists":
        return not values
    if operator == "NotEquals":
        return not any(_compare(v, "Equals", item["Value"], item["Name"]) for v in values)
    return any(_compare(v, operator, item["Value"], item["Name"]) for v in values)


def _compare(value: Any, operator: str, wanted: str, name: str) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if operator in _ORDERED:
            raise ValidationError(f"The operator {operator} is not supported for the text property {name}.")
        if operator == "Contains":
            return wanted in text
        if operator == "In":
            return text in [w.strip() for w in wanted.split(",")]
        return text == wanted
    if operator in _TEXT_ONLY:
        raise ValidationError(f"The operator {operator} is only supported for text properties, not {name}.")
    number = _number(wanted)
    if number is None:
        raise ValidationError(f"The value {wanted!r} of the filter on {name} is not a number or a timestamp.")
    if operator == "Equals":
        return value == number
    return _ORDERED[operator](value, number)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


def resolve(record: Any, path: str) -> list[Any]:
    """Every value the dotted property ``path`` reaches in ``record`` (lists fan out; empty: absent)."""
    current = [record]
    parts = path.split(".")
    for index, part in enumerate(parts):
        found: list[Any] = []
        for node in current:
            for item in node if isinstance(node, list) else [node]:
                found.extend(_step(item, part, last=index == len(parts) - 1))
        current = found
    return [_scalar(v) for v in current if v is not None and v != [] and v != {}]


def _step(node: Any, part: str, last: bool) -> list[Any]:
    if not isinstance(node, dict):
        return []
    value = node.get(part, _MISSING)
    if value is _MISSING:
        return []
    if isinstance(value, list) and value and isinstance(value[0], dict):
        if "MetricName" in value[0]:  # Metrics.<name>: the summaries keyed by name
            return [{m["MetricName"]: m for m in value}] if not last else [value]
        if "Key" in value[0] and "Value" in value[0]:  # Tags.<key>: the tags keyed by key
            return [{t["Key"]: t["Value"] for t in value}] if not last else [value]
    return [value]


def _scalar(value: Any) -> Any:
    """A property's comparable value: a parameter's NumberValue/StringValue, a metric summary's Last."""
    if isinstance(value, dict):
        if "NumberValue" in value:
            return value["NumberValue"]
        if "StringValue" in value:
            return value["StringValue"]
        if "MetricName" in value and "Last" in value:
            return value["Last"]
    return value


def sort_records(records: list[dict[str, Any]], sort_by: str | None, order: str | None,
                 default: str = "LastModifiedTime") -> list[dict[str, Any]]:
    """Sorted by the property ``sort_by`` (AWS's default: LastModifiedTime, Descending); records
    lacking it come last."""
    path = sort_by or default
    descending = (order or "Descending") == "Descending"

    def key(record: dict[str, Any]) -> Any:
        values = [v for v in resolve(record, path) if not isinstance(v, (dict, list))]
        return values[0] if values else None

    present = [r for r in records if key(r) is not None]
    absent = [r for r in records if key(r) is None]
    try:
        ordered = sorted(present, key=key, reverse=descending)
    except TypeError:  # mixed text and numbers: compare as text
        ordered = sorted(present, key=lambda r: str(key(r)), reverse=descending)
    return ordered + absent
