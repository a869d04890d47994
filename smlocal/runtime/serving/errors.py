"""Errors of the model server (re-exported by :mod:`smlocal.runtime.model_server`)."""

from __future__ import annotations


class ModelServerError(Exception):
    """The model cannot be served (or a worker stopped answering).

    Attributes:
        stage: ``image`` (no local runtime), ``model_data`` (artefacts could not be fetched or
            unpacked), ``code`` (inference code or its requirements), ``ping`` (the worker did not
            become healthy), ``cancelled``, ``transport`` (a running worker is gone).
        container: Hostname of the container at fault (``primary``, ``container-2`` ...).
        detail: The underlying reason alone (e.g. the exception raised by model_fn).
    """

    def __init__(self, message: str, *, stage: str, container: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.stage = stage
        self.container = container
        self.detail = detail or message


class ModelTimeout(ModelServerError):
    """A worker did not answer an invocation within the time limit."""
