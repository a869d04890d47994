"""The SageMaker service: operation name → typed handler. The gateway calls only :meth:`call`."""

from __future__ import annotations

from typing import Any, Callable, Protocol

from smlocal.errors import NotImplementedBySmlocal

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ResourceFamily(Protocol):
    """One family of SageMaker resources (training jobs, models, pipelines ...).

    The server builds each family, registers its operations, calls ``recover`` once at start
    (jobs a dead server left running become Failed) and ``close`` at shutdown (before the job
    scheduler stops, so jobs ended by the shutdown are recorded as such).
    """

    def operations(self) -> dict[str, Handler]: ...

    def recover(self) -> int: ...

    def close(self) -> None: ...


class SageMakerService:
    """A registry of operations. Resource families register their handlers by AWS operation name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._after: list[Callable[[str, dict[str, Any], dict[str, Any]], None]] = []

    def after_call(self, hook: Callable[[str, dict[str, Any], dict[str, Any]], None]) -> None:
        """``hook(operation, request, response)`` runs after every successful call (e.g. to keep Create* tags)."""
        self._after.append(hook)

    def register(self, handlers: dict[str, Handler]) -> None:
        overlap = set(handlers) & set(self._handlers)
        if overlap:
            raise ValueError(f"operations registered twice: {sorted(overlap)}")
        self._handlers.update(handlers)

    @property
    def operations(self) -> list[str]:
        return sorted(self._handlers)

    def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        handler = self._handlers.get(operation)
        if handler is None:
            raise NotImplementedBySmlocal(operation)
        response = handler(request)
        for hook in self._after:
            hook(operation, request, response)
        return response
