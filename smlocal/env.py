"""Setting and restoring the client environment in this process (``smlocal exec``, the fixtures).

The environment itself is computed by :func:`smlocal.auth.client_environment`.
"""

from __future__ import annotations

import os


def apply(env: dict[str, str]) -> dict[str, str | None]:
    """Sets ``env`` in this process; returns the previous values for :func:`restore`."""
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        previous.setdefault(key, os.environ.get(key))
        os.environ.pop(key, None)
    return previous


def restore(previous: dict[str, str | None]) -> None:
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
