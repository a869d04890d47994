"""The SageMaker service: operation name → typed handler. The gateway calls only :meth:`call`."""

from __future__ import annotations

from typing import Any, Callable

from smlocal.errors import NotImplementedBySmlocal

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class SageMakerService:
    """A registry of operations. Resource families register their handlers by AWS operation name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

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
        return handler(request)
