"""Store-side helpers of the pipelines family: the execution recorder and request typing."""

from __future__ import annotations

import re
from typing import Any, Callable

from botocore.model import Shape

from smlocal.pipelines.expressions import ExpressionError, render_string
from smlocal.service.common import now
from smlocal.service.store import Store

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def public(doc: dict) -> dict:
    """A stored document as the API returns it: internal (``_``) and null members dropped."""
    return {k: v for k, v in doc.items() if not k.startswith("_") and v is not None}


def coerce_to_shape(value: Any, shape: Shape | None) -> Any:
    """Type evaluated step arguments the way the service substitutes them into a request.

    Pipeline expressions yield JSON values (a Float parameter is a number); a member the API types
    as a string receives its string form (``6.0``, ``true``), a numeric member a number parsed from a
    numeric string. Anything that does not convert is left for validation to reject.
    """
    if shape is None or value is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {k: coerce_to_shape(v, shape.members.get(k)) for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [coerce_to_shape(item, shape.member) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {k: coerce_to_shape(v, shape.value) for k, v in value.items()}
    if kind == "string" and isinstance(value, (bool, int, float)):
        try:
            return render_string(value)
        except ExpressionError:
            return value
    if kind in ("integer", "long") and isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    if kind in ("integer", "long") and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind in ("float", "double") and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    if kind == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


class ExecutionRecorder:
    """Records one execution's progress in its ``PipelineExecution`` document."""

    def __init__(self, store: Store, kind: str, arn: str, pipeline_arn: str, on_finish: Callable[[], None]):
        self._store = store
        self._kind = kind
        self._arn = arn
        self._pipeline_arn = pipeline_arn
        self._on_finish = on_finish

    def step_update(self, step_name: str, fields: dict, *, replace: bool = False) -> None:
        def change(doc: dict) -> None:
            steps = doc.setdefault("_Steps", {})
            if replace or step_name not in steps:
                steps[step_name] = dict(fields)
            else:
                steps[step_name].update(fields)
            doc["LastModifiedTime"] = now()

        self._store.update(self._kind, self._arn, change)

    def finish(self, status: str, failure_reason: str | None) -> None:
        def change(doc: dict) -> None:
            doc["PipelineExecutionStatus"] = status
            doc["LastModifiedTime"] = now()
            if failure_reason:
                doc["FailureReason"] = failure_reason
            else:
                doc.pop("FailureReason", None)

        try:
            self._store.update(self._kind, self._arn, change)
        finally:
            self._on_finish()

    def find_cache_hit(self, step_name: str, fingerprint: str, not_before: float | None) -> tuple[str, dict] | None:
        best: tuple[str, dict] | None = None
        for doc in self._store.all(self._kind):
            if doc["PipelineArn"] != self._pipeline_arn or doc["PipelineExecutionArn"] == self._arn:
                continue
            record = doc.get("_Steps", {}).get(step_name)
            if not record or record.get("StepStatus") != "Succeeded" or record.get("_Fingerprint") != fingerprint:
                continue
            ended = record.get("EndTime") or 0
            if not_before is not None and ended < not_before:
                continue
            if best is None or ended > (best[1].get("EndTime") or 0):
                best = (doc["PipelineExecutionArn"], record)
        return best
