"""Model-driven input validation for AWS JSON 1.1 requests, worded the way AWS (Coral) words it.

``validate_input(operation, params)`` checks a decoded body against botocore's input shape:

* a JSON value of the wrong type is a ``SerializationException`` that wins over every constraint
  error (``NUMBER_VALUE can not be converted to a String``, ``Expected list or null``, ...);
* constraint failures make one ``ValidationException``: ``N validation error(s) detected: <e>; <e>``
  (at most 10), each ``Value '<v>' at '<path>' failed to satisfy constraint: <text>`` (``Value null
  at`` for a missing required member, ``Value at`` for sensitive values and structures). Paths are
  lowerCamel members joined by ``.``, ``name.<1-based index>.member`` for list elements and
  ``name.<key>.member`` for map entries; a scalar list's element constraints and a map's key/value
  constraints are reported once for the collection, listing every constraint of the element shape.

Unknown and ``null`` members are ignored, as AWS does. Scalars are delivered to the service in
their shape's type (``validate_input`` rewrites them in place). Java-only regex constructs in the model are
translated; a pattern Python still cannot compile is skipped and logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import logging
import re
import sys
import threading
import unicodedata
import weakref
from typing import Any

from botocore.model import OperationModel, ServiceModel, Shape

from smlocal.errors import SerializationError, ValidationError

__all__ = ["MAX_REPORTED_ERRORS", "SerializationError", "java_regex_to_python", "validate_input"]

log = logging.getLogger(__name__)

#: AWS lists at most this many constraint errors, and then says "10 validation errors detected".
MAX_REPORTED_ERRORS = 10

_LIST_HERE = "Start of list found where not expected"
_OBJECT_HERE = "Start of structure or map found where not expected."
_NUMERIC = frozenset({"integer", "long", "float", "double"})
_EPOCH_MIN, _EPOCH_MAX = -62135596800, 253402300799  # 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z
_BOOL_WORDS = {"true": True, "yes": True, "y": True, "t": True, "1": True,
               "false": False, "no": False, "n": False, "f": False, "0": False}


def validate_input(operation: OperationModel, params: dict) -> None:
    """Raise the AWS error for ``params`` (a decoded JSON body) if it does not fit ``operation``.

    When it fits, ``params`` is left holding the values as AWS deserializes them: timestamps as epoch
    seconds (an ISO-8601 string is accepted, as botocore may send one), ``"true"`` as ``True``, a
    JSON number truncated for an integral member. Blobs stay base64 text.
    """
    shape = operation.input_shape
    if shape is None:
        return
    if type(params) is not dict:
        raise _container_mismatch(params, "")
    errors: list[str] = []
    _node_for(operation.service_model, shape).check(params, "", errors)
    if errors:
        plural = "" if len(errors) == 1 else "s"
        raise ValidationError(f"{len(errors)} validation error{plural} detected: " + "; ".join(errors))


# --- type checks (SerializationException) -------------------------------------------------------

def _container_mismatch(value: Any, scalar_message: str) -> SerializationError:
    kind = _LIST_HERE if isinstance(value, list) else _OBJECT_HERE if isinstance(value, dict) else scalar_message
    return SerializationError(kind)


def _mismatch(value: Any, target: str) -> SerializationError:
    token = ("TRUE_VALUE" if value is True else "FALSE_VALUE" if value is False
             else "STRING_VALUE" if isinstance(value, str) else "NUMBER_VALUE")
    return _container_mismatch(value, f"{token} can not be converted to {target}")


def _to_string(v):
    if type(v) is str:
        return v
    raise _mismatch(v, "a String")


def _number_coercer(target, cast):
    def coerce(v):
        if type(v) is int or type(v) is float:
            try:
                return cast(v)  # Coral truncates a JSON number into an integral type
            except (OverflowError, ValueError):
                pass
        raise _mismatch(v, target)
    return coerce


def _to_boolean(v):
    if v is True or v is False or (type(v) is str and v.lower() in _BOOL_WORDS):
        return _BOOL_WORDS[v.lower()] if type(v) is str else v
    if type(v) is str:
        raise SerializationError("STRING_VALUE can not be converted to an Boolean")  # sic, as AWS
    raise _mismatch(v, "a Boolean")


def _to_timestamp(v):
    """Epoch seconds from a JSON number or an ISO-8601 string (UTC unless it says otherwise)."""
    if type(v) is str:
        try:
            moment = datetime.datetime.fromisoformat(v)
        except ValueError:
            raise _mismatch(v, "a Timestamp") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        return moment.timestamp()
    if (type(v) is int or type(v) is float) and _EPOCH_MIN <= v <= _EPOCH_MAX:  # NaN compares False
        return v
    raise _mismatch(v, "a Timestamp")


def _to_blob(v):
    try:
        return base64.b64decode(_to_string(v), validate=True)
    except (binascii.Error, ValueError):
        raise SerializationError(f"'{v}' can not be converted to a Blob") from None


_COERCERS = {
    "string": _to_string, "boolean": _to_boolean, "timestamp": _to_timestamp, "blob": _to_blob,
    "integer": _number_coercer("an Integer", int), "long": _number_coercer("a Long", int),
    "float": _number_coercer("a Float", float), "double": _number_coercer("a Double", float),
}


# --- messages ------------------------------------------------------------------------------------

def _render(value: Any, node: Any) -> str | None:
    """The value as Java's ``toString`` prints it, or ``None`` where AWS shows no value."""
    if node.sensitive:
        return None
    kind = type(node)
    if kind is _Scalar:
        if node.kind == "blob":
            return f"java.nio.HeapByteBuffer[pos=0 lim={len(value)} cap={len(value)}]"
        if value is True or value is False:
            return "true" if value else "false"
        return str(value)
    if kind is _List:
        parts = ["null" if e is None else _render(e, node.item) for e in value]
        return None if None in parts else "[" + ", ".join(parts) + "]"
    if kind is _Map:
        parts = ["null" if e is None else _render(e, node.value) for e in value.values()]
        return None if None in parts else "{" + ", ".join(f"{k}={p}" for k, p in zip(value, parts)) + "}"
    return None  # a structure: Coral prints an object identity, which cannot be reproduced


def _report(errors: list, node: Any, value: Any, path: str, text: str) -> None:
    if len(errors) < MAX_REPORTED_ERRORS:
        shown = _render(value, node)
        where = "Value" if shown is None else f"Value '{shown}'"
        errors.append(f"{where} at '{path}' failed to satisfy constraint: {text}")


def _null(errors: list, path: str) -> None:
    if len(errors) < MAX_REPORTED_ERRORS:
        errors.append(f"Value null at '{path}' failed to satisfy constraint: Member must not be null")


def _bounds_texts(what: str, lo, hi) -> tuple[str, str]:
    return (f"Member must have {what} greater than or equal to {lo!r}",
            f"Member must have {what} less than or equal to {hi!r}")


# --- validator nodes -----------------------------------------------------------------------------

class _Scalar:
    __slots__ = ("kind", "coerce", "sensitive", "enum", "lo", "hi", "pattern", "texts",
                 "enum_text", "lo_text", "hi_text", "pattern_text", "checked")

    def __init__(self, shape: Shape):
        md, kind = shape.metadata, shape.type_name
        self.kind, self.coerce, self.sensitive = kind, _COERCERS.get(kind, lambda v: v), False
        enum = md.get("enum") if kind == "string" else None
        self.enum = frozenset(enum) if enum else None
        measured = kind in _NUMERIC or kind in ("string", "blob")
        self.lo, self.hi = (md.get("min"), md.get("max")) if measured else (None, None)
        self.pattern = md.get("pattern") if kind == "string" else None
        self.enum_text = "Member must satisfy enum value set: [" + ", ".join(enum or ()) + "]"
        self.lo_text, self.hi_text = _bounds_texts("value" if kind in _NUMERIC else "length", self.lo, self.hi)
        self.pattern_text = f"Member must satisfy regular expression pattern: {self.pattern}"
        # The order AWS lists an element shape's constraints in: enum, max, min, pattern.
        self.texts = [text for text, present in ((self.enum_text, self.enum), (self.hi_text, self.hi),
                                                 (self.lo_text, self.lo), (self.pattern_text, self.pattern))
                      if present is not None]
        self.checked = bool(self.texts)

    def failures(self, v) -> list[str]:
        bad = []
        if self.enum is not None and v not in self.enum:
            bad.append(self.enum_text)
        if self.lo is not None or self.hi is not None:
            size = v if self.kind in _NUMERIC else len(v)
            if self.hi is not None and size > self.hi:
                bad.append(self.hi_text)
            if self.lo is not None and size < self.lo:
                bad.append(self.lo_text)
        if self.pattern is not None and (regex := _compiled(self.pattern)) and regex.fullmatch(v) is None:
            bad.append(self.pattern_text)
        return bad

    def check(self, v, path: str, errors: list):
        coerced = self.coerce(v)
        if self.checked:
            for text in self.failures(coerced):
                _report(errors, self, coerced, path, text)
        return self.delivered(v, coerced)

    def delivered(self, raw, coerced):
        """What the service receives: the value as AWS deserializes it (a blob stays base64 text)."""
        return raw if self.kind == "blob" else coerced


class _Struct:
    __slots__ = ("members", "sensitive")

    def check(self, v, path: str, errors: list):
        if type(v) is not dict:
            raise _container_mismatch(v, "Expected null")
        prefix = path + "." if path else ""
        for wire, camel, node, required in self.members:
            value = v.get(wire)
            if value is not None:
                out = node.check(value, prefix + camel, errors)
                if out is not value:
                    v[wire] = out
            elif required:
                _null(errors, prefix + camel)
        return v


class _Collection:
    """What lists and maps share: a length range, and element checks."""

    __slots__ = ("lo", "hi", "lo_text", "hi_text", "sensitive")

    def _check_length(self, v, path: str, errors: list) -> None:
        if self.hi is not None and len(v) > self.hi:
            _report(errors, self, v, path, self.hi_text)
        if self.lo is not None and len(v) < self.lo:
            _report(errors, self, v, path, self.lo_text)

    @staticmethod
    def _check_elements(item, entries, path: str, errors: list, deliver) -> bool:
        """Type-check (and for non-scalars validate) every element; say if a scalar one is bad.

        ``deliver(key, value)`` stores a scalar element as the service is to receive it.
        """
        bad, scalar = False, type(item) is _Scalar
        for key, e in entries:
            if e is None:
                _null(errors, f"{path}.{key}.member")
            elif not scalar:
                item.check(e, f"{path}.{key}.member", errors)
            else:
                coerced = item.coerce(e)
                bad = bad or (item.checked and bool(item.failures(coerced)))
                if (out := item.delivered(e, coerced)) is not e:
                    deliver(key, out)
        return bad


class _List(_Collection):
    __slots__ = ("item",)

    def check(self, v, path: str, errors: list):
        if type(v) is not list:
            raise _container_mismatch(v, "Expected list or null")
        self._check_length(v, path, errors)
        if self._check_elements(self.item, enumerate(v, 1), path, errors, lambda i, e: v.__setitem__(i - 1, e)):
            _report(errors, self, v, path, "Member must satisfy constraint: [" + ", ".join(self.item.texts) + "]")
        return v


class _Map(_Collection):
    __slots__ = ("key", "value")

    def check(self, v, path: str, errors: list):
        if type(v) is not dict:
            raise _container_mismatch(v, "Expected map or null")
        self._check_length(v, path, errors)
        key, value = self.key, self.value
        if key.checked and any(key.failures(k) for k in v):
            _report(errors, self, v, path, "Map keys must satisfy constraint: [" + ", ".join(key.texts) + "]")
        if self._check_elements(value, list(v.items()), path, errors, v.__setitem__):
            _report(errors, self, v, path, "Map value must satisfy constraint: [" + ", ".join(value.texts) + "]")
        return v


# --- building and caching ------------------------------------------------------------------------

_CACHE: "weakref.WeakKeyDictionary[ServiceModel, dict[str, Any]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _node_for(service_model: ServiceModel, shape: Shape):
    node = _CACHE.get(service_model, {}).get(shape.name)
    if node is None:
        with _LOCK:
            nodes, built = _CACHE.setdefault(service_model, {}), {}
            node = nodes.get(shape.name) or _build(shape, nodes, built)
            nodes.update(built)  # other threads only ever see complete validator graphs
    return node


def _build(shape: Shape, done: dict, pending: dict):
    node = done.get(shape.name) or pending.get(shape.name)
    if node is not None:
        return node
    kind, md = shape.type_name, shape.metadata
    if kind == "structure":
        node = pending[shape.name] = _Struct()
        required = set(shape.required_members)
        node.members = [(member.serialization.get("name", name), name[:1].lower() + name[1:],
                         _build(member, done, pending), name in required)
                        for name, member in shape.members.items()]
    elif kind in ("list", "map"):
        node = pending[shape.name] = _List() if kind == "list" else _Map()
        node.lo, node.hi = md.get("min"), md.get("max")
        node.lo_text, node.hi_text = _bounds_texts("length", node.lo, node.hi)
        if kind == "list":
            node.item = _build(shape.member, done, pending)
        else:
            node.key, node.value = _build(shape.key, done, pending), _build(shape.value, done, pending)
    else:
        node = pending[shape.name] = _Scalar(shape)
    node.sensitive = bool(md.get("sensitive"))
    return node


# --- Java regular expressions --------------------------------------------------------------------

_REGEX_CACHE: dict[str, re.Pattern | None] = {}
_POSIX_CLASSES = {
    "Alnum": "a-zA-Z0-9", "Alpha": "a-zA-Z", "Digit": "0-9", "Upper": "A-Z", "Lower": "a-z",
    "XDigit": "0-9a-fA-F", "Space": " \\t\\n\\x0b\\f\\r", "ASCII": "\\x00-\\x7f",
    "Punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
}
_CATEGORIES: dict[str, list[tuple[int, int]]] = {}
_QUANTIFIER = re.compile(r"\{\d+(?:,\d*)?\}|[*+?]")
_PROPERTY = re.compile(r"\{(\w+)\}|([A-Z])")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def _compiled(pattern: str) -> re.Pattern | None:
    """The compiled pattern, built on first use; ``None`` if it cannot be checked."""
    if pattern not in _REGEX_CACHE:
        try:
            translated = java_regex_to_python(pattern)
            _REGEX_CACHE[pattern] = re.compile(translated, re.ASCII)  # Java's \d \w \s are ASCII
            if translated != pattern:
                log.debug("smlocal validation: Java pattern %r checked as %.120r...", pattern, translated)
        except (re.error, ValueError) as exc:
            log.warning("smlocal validation: pattern %r is not checked (%s)", pattern, exc)
            _REGEX_CACHE[pattern] = None
    return _REGEX_CACHE[pattern]


def _category_ranges(name: str) -> list[tuple[int, int]]:
    """Code point ranges of a Unicode general category (``L``) or subcategory (``Lu``)."""
    if not _CATEGORIES:  # one scan of the planes in use, ~70 ms, the first time a \p is compiled
        table: dict[str, list[tuple[int, int]]] = {}
        for lo, hi in ((0, 0x3FFFF), (0xE0000, min(0xE0FFF, sys.maxunicode))):
            start, current = lo, unicodedata.category(chr(lo))
            for cp in range(lo + 1, hi + 2):
                cat = unicodedata.category(chr(cp)) if cp <= hi else None
                if cat != current:
                    table.setdefault(current, []).append((start, cp - 1))
                    start, current = cp, cat
        _CATEGORIES.update(table)  # published whole: a concurrent caller never sees half a table
    spans = sorted(r for cat, rs in _CATEGORIES.items() if cat.startswith(name) for r in rs)
    if not spans or len(name) > 2:
        raise ValueError(f"unsupported Unicode property \\p{{{name}}}")
    merged = spans[:1]
    for lo, hi in spans[1:]:
        merged[-1:] = [(merged[-1][0], hi)] if lo == merged[-1][1] + 1 else [merged[-1], (lo, hi)]
    return merged


def _property_body(name: str) -> str:
    if name in _POSIX_CLASSES:
        return _POSIX_CLASSES[name]
    ranges = _category_ranges(name[2:] if name.startswith("Is") else name)
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


def java_regex_to_python(pattern: str) -> str:
    """Rewrite the Java-only constructs of a model pattern; ``ValueError`` if it cannot."""
    out, i, n, in_class = [], 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt in "pP":  # \p{L}, \pL, \p{Alnum}, \P{...}
                m = _PROPERTY.match(pattern, i + 2)
                if m is None or (nxt == "P" and in_class):
                    raise ValueError(f"unsupported property escape at {i}")
                body = _property_body(m.group(1) or m.group(2))
                out.append(body if in_class else ("[^" if nxt == "P" else "[") + body + "]")
                i = m.end()
            elif nxt == "u" and _HEX4.fullmatch(pattern, i + 2, i + 6):
                cp, i = int(pattern[i + 2:i + 6], 16), i + 6
                low = int(pattern[i + 2:i + 6], 16) if (
                    pattern.startswith("\\u", i) and _HEX4.fullmatch(pattern, i + 2, i + 6)) else 0
                if 0xD800 <= cp < 0xDC00 and 0xDC00 <= low < 0xE000:  # a UTF-16 surrogate pair
                    cp, i = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00), i + 6
                out.append(f"\\U{cp:08x}")
            else:
                out.append("\\Z" if nxt == "z" else pattern[i:i + 2])
                i += 2
            continue
        if in_class:
            if c == "[" or pattern.startswith("&&", i):
                raise ValueError("nested character class or class intersection")
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$" and (m := _QUANTIFIER.match(pattern, i + 1)) is not None:
            out.append("$")  # Java accepts a quantified '$' and it still means '$'
            i = m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)
