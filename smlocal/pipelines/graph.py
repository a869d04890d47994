"""An execution as a graph: the steps of its definition as nodes, their dependencies as edges (pure).

Edges come from :func:`smlocal.pipelines.definition.dependencies` (``DependsOn`` and every step whose
properties a step's arguments read) and from Condition steps to their branch steps (``true`` for
``IfSteps``, ``false`` for ``ElseSteps``). A node's status is its step record's ``StepStatus``; a step
with no record is ``NotStarted``, or ``Skipped`` when it can only run through a branch its Condition
did not take (a step in that branch, or one waiting for such a step).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Mapping

from smlocal.pipelines.definition import PipelineDefinition, branch_owner, branch_taken, dependencies

__all__ = ["JOB_KINDS", "execution_graph", "iso_time"]

JOB_KINDS = {"TrainingJob": "training", "ProcessingJob": "processing", "TransformJob": "transform"}
"""Step ``Metadata`` key → the console's job kind (the steps whose job has a page)."""


def iso_time(value: Any) -> str | None:
    """An epoch number or datetime as ISO 8601 (UTC); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _epoch(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return None


def execution_graph(definition: PipelineDefinition, records: Iterable[Mapping[str, Any]],
                    outputs: Mapping[str, Mapping[str, str]] | None = None, now: float | None = None) -> dict:
    """Nodes and edges of an execution.

    Args:
        definition: the execution's parsed definition.
        records: its step records (``ListPipelineExecutionSteps`` entries: ``StepName``, ``StepStatus``,
            ``StartTime``, ``EndTime``, ``AttemptCount``, ``CacheHitResult``, ``FailureReason``, ``Metadata``).
        outputs: step name → processing output name → its S3 URI (to locate property files).
        now: the time a running step's duration is measured to (None: no duration while running).

    Returns:
        ``{"nodes": [...], "edges": [...]}`` in the console's execution-graph shape.
    """
    by_name = {record["StepName"]: record for record in records}
    owners = branch_owner(definition)
    waits = dependencies(definition)
    steps = list(definition.all_steps())
    edges: list[dict[str, str]] = []
    for step in steps:
        explicit = set(step.depends_on)
        for source in sorted(waits[step.name]):
            edges.append({"from": source, "to": step.name, "kind": "depends" if source in explicit else "data"})
        for child in step.if_steps:
            edges.append({"from": step.name, "to": child.name, "kind": "true"})
        for child in step.else_steps:
            edges.append({"from": step.name, "to": child.name, "kind": "false"})
    outcomes = {name: _condition_outcome(record) for name, record in by_name.items()}
    skipped = _skipped(steps, by_name, owners, waits, outcomes)
    nodes = []
    for step in steps:
        record = by_name.get(step.name)
        status = record.get("StepStatus", "NotStarted") if record else ("Skipped" if step.name in skipped else "NotStarted")
        nodes.append(_node(step, record, status, outcomes.get(step.name), (outputs or {}).get(step.name, {}), now))
    return {"nodes": nodes, "edges": edges}


def _condition_outcome(record: Mapping[str, Any]) -> bool | None:
    outcome = ((record.get("Metadata") or {}).get("Condition") or {}).get("Outcome")
    if isinstance(outcome, bool):
        return outcome
    return {"True": True, "False": False}.get(str(outcome)) if outcome is not None else None


def _skipped(steps, by_name, owners, waits, outcomes) -> set[str]:
    """Steps without a record that only a branch not taken leads to (transitively)."""
    skipped: set[str] = set()
    changed = True
    while changed:
        changed = False
        for step in steps:
            if step.name in skipped or step.name in by_name:
                continue
            owner = owners.get(step.name)
            outcome = outcomes.get(owner[0]) if owner is not None else None
            not_taken = owner is not None and (
                owner[0] in skipped or (outcome is not None and branch_taken(outcome) != owner[1]))
            if not_taken or waits[step.name] & skipped:
                skipped.add(step.name)
                changed = True
    return skipped


def _node(step, record, status: str, outcome: bool | None, outputs: Mapping[str, str], now: float | None) -> dict:
    record = record or {}
    metadata = record.get("Metadata") or {}
    start, end = _epoch(record.get("StartTime")), _epoch(record.get("EndTime"))
    duration = None
    if start is not None and (end is not None or now is not None):
        duration = round(max(0.0, (end if end is not None else now) - start), 3)
    job = None
    for key, kind in JOB_KINDS.items():
        arn = (metadata.get(key) or {}).get("Arn")
        if arn:
            job = {"kind": kind, "name": arn.rsplit("/", 1)[-1], "arn": arn}
            break
    failure = record.get("FailureReason") or (metadata.get("Fail") or {}).get("ErrorMessage")
    property_files = []
    for pf in step.property_files:
        base = outputs.get(pf.output_name)
        property_files.append({"name": pf.name, "path": pf.file_path,
                               "s3Uri": f"{base.rstrip('/')}/{pf.file_path.lstrip('/')}" if base else None})
    return {"name": step.name, "type": step.type, "displayName": step.display_name, "status": status,
            "startTime": iso_time(record.get("StartTime")), "endTime": iso_time(record.get("EndTime")),
            "durationSeconds": duration, "cacheHit": bool(record.get("CacheHitResult")),
            "attempts": int(record.get("AttemptCount") or 0), "failureReason": failure or None, "job": job,
            "conditionOutcome": outcome if step.type == "Condition" else None, "propertyFiles": property_files}
