"""The JSONPath subset batch transform accepts in InputFilter and OutputFilter (pure).

SageMaker documents these operators (developer guide, "Associate Prediction Results with Input
Records", *Supported JSONPath Operators*):

* ``$`` the root, required at the start;
* ``.<name>`` a dot-notated child and ``.*`` / ``[*]`` every child;
* ``['<name>' (,'<name>')]`` one or more bracket-notated children; several names select an
  *object* holding just those keys (``$['id','SageMakerOutput']``);
* ``[<number> (,<number>)]`` one or more indexes, negative ones counting from the end;
* ``[<start>:<end>]`` a slice. The guide says the slice is **inclusive** of ``end``
  ("``$[1:4]`` specifies the second through fifth columns"; "``[:5]`` ... through the sixth
  column"), so it is here. A slice may be combined with indexes (``$[0,5:]``, the API reference's
  OutputFilter example) but not with another slice: AWS rejects ``$[0:2,246:]`` with
  "only single range filters of format (eg: [1:5]) are supported".

For CSV each row is a JSON array of its fields, so only index selectors apply. An index outside
the row ("indexes that aren't within the dimension size of the joined dataset") is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from smlocal.textscan import closing_bracket

_NAME = re.compile(r"[^.\[\]'\"\s*]+")


class JsonPathError(ValueError):
    """A filter that is not valid, or that does not apply to a record; the message is AWS-style."""


@dataclass(frozen=True)
class _Step:
    kind: str  # "name" | "names" | "indexes" | "wild"
    names: tuple[str, ...] = ()
    indexes: tuple[int, ...] = ()
    slice_: tuple[int | None, int | None] | None = None

    @property
    def multi(self) -> bool:
        """Whether the step selects a collection rather than one value."""
        if self.kind == "wild":
            return True
        if self.kind == "indexes":
            return self.slice_ is not None or len(self.indexes) > 1
        return False


@dataclass(frozen=True)
class JsonPath:
    """A compiled filter. ``identity`` paths (``$``) select the whole record."""

    text: str
    steps: tuple[_Step, ...]

    @property
    def identity(self) -> bool:
        return not self.steps

    @property
    def index_only(self) -> bool:
        """Whether every step selects by position (the only kind that applies to CSV rows)."""
        return all(step.kind in ("indexes", "wild") for step in self.steps)

    def apply(self, value: Any) -> Any:
        """Selects from ``value``; raises JsonPathError when the path does not fit the record."""
        current, multi = value, False
        for step in self.steps:
            if multi:
                gathered: list[Any] = []
                for item in current:
                    picked = _select(step, item, self.text)
                    if step.multi:
                        gathered.extend(picked)
                    else:
                        gathered.append(picked)
                current = gathered
            else:
                current = _select(step, current, self.text)
                multi = step.multi
        return current


def compile_path(text: str | None) -> JsonPath:
    """Parses a filter; None or ``$`` is the identity.

    Raises:
        JsonPathError: ``Invalid JsonPath: <text>: <why>``.
    """
    if text is None:
        return JsonPath("$", ())
    source = text.strip()
    if not source.startswith("$"):
        raise JsonPathError(f"Invalid JsonPath: {text}: a path must start with $")
    steps: list[_Step] = []
    pos = 1
    while pos < len(source):
        char = source[pos]
        if source.startswith("..", pos):
            raise JsonPathError(f"Invalid JsonPath: {text}: the deep-scan operator .. is not supported")
        if char == ".":
            pos += 1
            if pos < len(source) and source[pos] == "[":
                continue  # $.field1.['a','b'] is accepted (developer guide)
            if pos < len(source) and source[pos] == "*":
                steps.append(_Step("wild"))
                pos += 1
                continue
            match = _NAME.match(source, pos)
            if not match:
                raise JsonPathError(f"Invalid JsonPath: {text}: expected a name after '.' at position {pos}")
            steps.append(_Step("name", names=(match.group(),)))
            pos = match.end()
        elif char == "[":
            end = closing_bracket(source, pos)
            if end < 0:
                raise JsonPathError(f"Invalid JsonPath: {text}: unclosed '['")
            steps.append(_parse_selector(source[pos + 1 : end].strip(), text))
            pos = end + 1
        else:
            raise JsonPathError(f"Invalid JsonPath: {text}: unexpected '{char}' at position {pos}")
    return JsonPath(source, tuple(steps))


def _parse_selector(body: str, text: str) -> _Step:
    if body == "*":
        return _Step("wild")
    if not body:
        raise JsonPathError(f"Invalid JsonPath: {text}: empty brackets")
    if body[0] in "'\"":
        names = []
        for part in _split_union(body, text):
            if len(part) < 2 or part[0] not in "'\"" or part[-1] != part[0]:
                raise JsonPathError(f"Invalid JsonPath: {text}: cannot mix names and indexes in [{body}]")
            names.append(part[1:-1])
        return _Step("name" if len(names) == 1 else "names", names=tuple(names))
    if body.startswith("?") or body.startswith("("):
        raise JsonPathError(f"Invalid JsonPath: {text}: filter and script expressions are not supported")
    indexes: list[int] = []
    slice_ = None
    for part in _split_union(body, text):
        if ":" in part:
            if slice_ is not None:
                raise JsonPathError(
                    f"Invalid JsonPath: {text}: only single range filters of format (eg: [1:5]) are "
                    f"supported. Format [{body}] is not supported"
                )
            bounds = part.split(":")
            if len(bounds) != 2:
                raise JsonPathError(f"Invalid JsonPath: {text}: slice steps ([start:end:step]) are not supported")
            slice_ = (_int_or_none(bounds[0], text), _int_or_none(bounds[1], text))
        else:
            indexes.append(_int(part, text))
    return _Step("indexes", indexes=tuple(indexes), slice_=slice_)


def _split_union(body: str, text: str) -> list[str]:
    parts, current, quote = [], [], None
    for char in body:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char == ",":
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    if any(not p for p in parts):
        raise JsonPathError(f"Invalid JsonPath: {text}: empty element in [{body}]")
    return parts


def _int(raw: str, text: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise JsonPathError(f"Invalid JsonPath: {text}: '{raw}' is not an index") from None


def _int_or_none(raw: str, text: str) -> int | None:
    return None if not raw.strip() else _int(raw, text)


def _select(step: _Step, value: Any, text: str) -> Any:
    if step.kind == "wild":
        if isinstance(value, dict):
            return list(value.values())
        if isinstance(value, list):
            return list(value)
        raise JsonPathError(f"{text}: cannot apply * to a {_type(value)}")
    if step.kind in ("name", "names"):
        if not isinstance(value, dict):
            raise JsonPathError(
                f"{text}: the record is a {_type(value)}, not a JSON object; CSV rows are arrays: "
                "select their columns by index ($[0], $[1:])"
            )
        for name in step.names:
            if name not in value:
                raise JsonPathError(f"{text}: missing property '{name}' in the record")
        if step.kind == "name":
            return value[step.names[0]]
        return {name: value[name] for name in step.names}
    if not isinstance(value, list):
        raise JsonPathError(f"{text}: index selectors apply to arrays, the record is a {_type(value)}")
    size = len(value)
    positions = [_position(i, size, text) for i in step.indexes]
    if step.slice_ is not None:
        start, end = step.slice_
        first = 0 if start is None else (start + size if start < 0 else start)
        last = size - 1 if end is None else (end + size if end < 0 else end)
        positions.extend(range(max(first, 0), min(last, size - 1) + 1))
    if not step.multi:
        return value[positions[0]]
    return [value[i] for i in positions]


def _position(index: int, size: int, text: str) -> int:
    actual = index + size if index < 0 else index
    if not 0 <= actual < size:
        raise JsonPathError(f"{text}: index {index} is outside the record, which has {size} elements")
    return actual


def _type(value: Any) -> str:
    if isinstance(value, dict):
        return "JSON object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__
