"""Selective execution: which steps a ``SelectiveExecutionConfig`` runs, and what it reuses.

AWS's rules ("Selective execution of pipeline steps" in the SageMaker developer guide and the
``SelectiveExecutionConfig`` API reference):

- the selected steps are steps of the pipeline, and every step on every path between two selected
  steps is selected too (they are connected in the DAG);
- steps the selected ones depend on (directly or further up) are not run: their outputs come from
  the reference (source) execution, which must be an execution of the same pipeline that has ended
  (Succeeded, Failed or Stopped) and in which those steps succeeded;
- without a source, the selected steps may depend on nothing outside the selection;
- steps downstream of the selection, and steps unrelated to it, do not run.

Pure logic: the caller looks the source execution up and passes its document.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from smlocal.errors import ValidationError
from smlocal.pipelines.definition import PipelineDefinition, dependencies

#: Statuses of a source execution that selective executions may reference.
SOURCE_STATUSES = ("Succeeded", "Failed", "Stopped")


@dataclasses.dataclass(frozen=True)
class SelectivePlan:
    """What a selective execution runs and reuses."""

    selected: frozenset[str]
    reuse: dict[str, dict]  # step name → the source's step record, marked with SelectiveExecutionResult
    config: dict[str, Any]  # the SelectiveExecutionConfig as DescribePipelineExecution shows it


def _listed(names, order: list[str] | None = None) -> str:
    """A list of step names the way AWS's messages print one: ``[a, b]`` (in ``order``, else sorted)."""
    items = [name for name in order if name in names] if order else sorted(names)
    return "[" + ", ".join(items) + "]"


def _ancestors(graph: dict[str, set[str]], start: set[str]) -> set[str]:
    found, stack = set(), [dep for name in start for dep in graph.get(name, ())]
    while stack:
        name = stack.pop()
        if name not in found:
            found.add(name)
            stack.extend(graph.get(name, ()))
    return found


def _gaps(graph: dict[str, set[str]], selected: set[str]) -> set[str]:
    """Steps on a path between two selected steps that are not selected themselves."""
    missing = set()
    for name in selected:
        above = _ancestors(graph, {name})
        for other in selected & above:
            # between ``other`` (upstream) and ``name``: ancestors of ``name`` that descend from ``other``
            missing |= {step for step in above - selected if other in _ancestors(graph, {step})}
    return missing


def plan(config: dict[str, Any], pipeline_arn: str, definition: PipelineDefinition,
         source: dict[str, Any] | None) -> SelectivePlan:
    """Check a SelectiveExecutionConfig against AWS's rules and say what the execution reuses.

    Args:
        config: The request's ``SelectiveExecutionConfig``.
        pipeline_arn: The ARN of the pipeline being started.
        definition: The definition the new execution runs.
        source: The stored document of ``SourcePipelineExecutionArn`` (None when not given or
            not found).

    Returns:
        The plan.

    Raises:
        ValidationError: The configuration breaks one of the rules (AWS's wording where known).
    """
    source_arn = config.get("SourcePipelineExecutionArn")
    selected = list(dict.fromkeys(item["StepName"] for item in config["SelectedSteps"]))
    names = {step.name for step in definition.all_steps()}
    unknown = [name for name in selected if name not in names]
    if unknown:
        raise ValidationError(f"Selected steps {_listed(unknown)} do not exist in the pipeline definition.")
    chosen = set(selected)
    shown = _listed(chosen, selected)
    graph = dependencies(definition, include_branch_owner=True)
    gaps = _gaps(graph, chosen)
    if gaps:
        raise ValidationError(f"The selected steps {shown} are not connected: steps {_listed(gaps)} lie on a path "
                              "between selected steps and must be selected too.")
    needed = _ancestors(graph, chosen) - chosen
    if source_arn is None:
        if needed:
            direct = {dep for name in chosen for dep in graph[name]} - chosen
            raise ValidationError(f"Invalid SourcePipelineExecutionArn: null. The selected steps {shown} "
                                  f"have dependencies on {_listed(direct)}")
        return SelectivePlan(frozenset(chosen), {}, copy.deepcopy(config))
    if source is None:
        raise ValidationError(f"Invalid SourcePipelineExecutionArn: {source_arn}. The pipeline execution "
                              "does not exist.")
    if source["PipelineArn"] != pipeline_arn:
        raise ValidationError(f"Invalid SourcePipelineExecutionArn: {source_arn}. The source pipeline execution "
                              f"must belong to the pipeline {pipeline_arn}.")
    status = source["PipelineExecutionStatus"]
    if status not in SOURCE_STATUSES:
        raise ValidationError(f"Invalid SourcePipelineExecutionArn: {source_arn}. The source pipeline execution "
                              f"is {status}; it must be Succeeded, Failed or Stopped.")
    records = source.get("_Steps", {})
    missing = {name for name in needed if (records.get(name) or {}).get("StepStatus") != "Succeeded"}
    if missing:
        raise ValidationError(f"Invalid SourcePipelineExecutionArn: {source_arn}. The selected steps {shown} have "
                              f"dependencies on {_listed(missing)}, which did not succeed in the source pipeline "
                              "execution.")
    marker = {"SourcePipelineExecutionArn": source_arn}
    reuse = {name: {**copy.deepcopy(records[name]), "SelectiveExecutionResult": dict(marker)}
             for name in sorted(needed)}
    return SelectivePlan(frozenset(chosen), reuse, copy.deepcopy(config))
