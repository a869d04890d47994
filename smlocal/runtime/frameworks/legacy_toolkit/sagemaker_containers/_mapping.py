"""Mappings as environment variables and command-line arguments, and a read-only mapping base."""

from __future__ import annotations

import collections.abc
import json


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return str(value)


def to_env_vars(mapping):
    """``{key: value}`` as ``{"SM_KEY": text}``: strings as they are, anything else as JSON."""

    def value_text(value):
        if value is None or isinstance(value, (str, bytes)):
            return _text(value)
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    return {("SM_%s" % str(key).upper()) if key else "": value_text(value) for key, value in mapping.items()}


def to_cmd_args(mapping):
    """``{key: value}`` as sorted ``["--key", "value", ...]`` (``-k`` for one-letter keys; a dict
    value as ``k1=v1,k2=v2``)."""
    args = []
    for key in sorted(mapping):
        name = _text(key)
        args.append(("--%s" % name if len(name) > 1 else "-%s" % name) if name else "")
        value = mapping[key]
        if hasattr(value, "items"):
            args.append(",".join("%s=%s" % (k, v) for k, v in sorted(value.items())))
        else:
            args.append(_text(value))
    return args


SplitResultSpec = collections.namedtuple("SplitResultSpec", "included excluded")


def split_by_criteria(dictionary, keys=None, prefix=None):
    """The items whose key is in ``keys`` or starts with ``prefix``, and the others."""
    keys = set(keys or [])
    included = {k: v for k, v in dictionary.items() if k in keys or (prefix and k.startswith(prefix))}
    excluded = {k: v for k, v in dictionary.items() if k not in included}
    return SplitResultSpec(included=included, excluded=excluded)


class MappingMixin(collections.abc.Mapping):
    """A read-only mapping of an object's properties (``env["model_dir"]``, ``dict(env)``)."""

    def properties(self):
        """The names of the object's properties."""
        cls = type(self)
        return [name for name in dir(cls) if isinstance(getattr(cls, name, None), property)]

    def __getitem__(self, key):
        if key not in self.properties():
            raise KeyError(key)
        return getattr(self, key)

    def __len__(self):
        return len(self.properties())

    def __iter__(self):
        return iter(self.properties())

    def __str__(self):
        return str(dict(self))

    def __repr__(self):
        return str(dict(self))
