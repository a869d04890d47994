"""Backends execute a prepared job: a command, an environment and a private /opt/ml."""

from smlocal.runtime.backends.base import Backend, RunResult, RunSpec

__all__ = ["Backend", "RunResult", "RunSpec"]
