"""Runs one pipeline execution: the step graph, branches, parallelism, retries, caching, stop.

:class:`ExecutionRun` walks a parsed definition. A step starts when everything it depends on
(``DependsOn``, the steps whose properties it reads, the Condition step owning its branch) has
succeeded; steps reachable only through a branch that was not taken are never run and never
listed. At most ``max_parallel`` steps run at once. Once a step fails, or a stop is requested, no
new step starts; running ones finish (or are stopped). Each attempt of a step is one call into
:data:`~smlocal.pipelines.steps.STEP_EXECUTORS`.

All persistence goes through a :class:`Recorder` and all other I/O through
:class:`~smlocal.pipelines.steps.StepServices`, both provided by the service layer.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import threading
import time
from typing import Any, Mapping, Protocol

from smlocal.pipelines.definition import PipelineDefinition, StepDefinition, branch_owner, branch_taken, dependencies
from smlocal.pipelines.expressions import EvaluationContext, ExpressionError, evaluate, resolve_path, parse_path
from smlocal.pipelines.steps import (
    CACHEABLE_KEYS,
    STEP_EXECUTORS,
    StepFailed,
    StepOutcome,
    StepRun,
    StepServices,
    generated_name,
    random_token,
)

log = logging.getLogger(__name__)

__all__ = ["STEP_FAILURE", "ExecutionInfo", "ExecutionRun", "Recorder", "execution_variables"]

#: The execution's FailureReason when steps failed (the step's own reason is on the step).
STEP_FAILURE = "Step failure: One or multiple steps failed."
DEFAULT_MAX_PARALLEL = 50


@dataclasses.dataclass(frozen=True)
class ExecutionInfo:
    """Identity of the execution being run."""

    arn: str
    execution_id: str
    pipeline_name: str
    pipeline_arn: str
    start_time: float
    experiment_config: Mapping[str, Any] | None = None


class Recorder(Protocol):
    """Where the run records what happens (the service's store)."""

    def step_update(self, step_name: str, fields: dict, *, replace: bool = False) -> None: ...

    def finish(self, status: str, failure_reason: str | None) -> None: ...

    def find_cache_hit(self, step_name: str, fingerprint: str, not_before: float | None) -> tuple[str, dict] | None:
        """The most recent successful run of this step with this fingerprint: (execution ARN, record)."""
        ...


def execution_variables(info: ExecutionInfo) -> dict[str, Any]:
    """The ``Execution.*`` variables common to every step of an execution."""
    return {
        "StartDateTime": dt.datetime.fromtimestamp(info.start_time, dt.timezone.utc),
        "CurrentDateTime": lambda: dt.datetime.now(dt.timezone.utc),
        "PipelineName": info.pipeline_name,
        "PipelineArn": info.pipeline_arn,
        "PipelineExecutionId": info.execution_id,
        "PipelineExecutionArn": info.arn,
    }


def fingerprint(step_type: str, arguments: Mapping[str, Any]) -> str:
    """The cache key of a step: its type and the cache-key attributes of its evaluated arguments."""
    keys = {key: arguments.get(key) for key in CACHEABLE_KEYS.get(step_type, ())}
    blob = json.dumps({"Type": step_type, "Keys": keys}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _stored_properties(step: StepDefinition, record: Mapping[str, Any]) -> dict:
    """The properties of a reused step record (a retried or a selective execution's source).

    A Condition step's ``Outcome`` is a JSON boolean; records stored by smlocal before it was
    hold the strings ``"True"``/``"False"``, read here once as the booleans they stand for.
    """
    properties = dict(record.get("_Properties") or {})
    if step.type == "Condition" and properties.get("Outcome") in ("True", "False"):
        properties["Outcome"] = properties["Outcome"] == "True"
    return properties


class ExecutionRun:
    """One run (or retry) of a pipeline execution, on its own thread."""

    def __init__(
        self,
        definition: PipelineDefinition,
        info: ExecutionInfo,
        parameters: Mapping[str, Any],
        services: StepServices,
        recorder: Recorder,
        *,
        max_parallel: int = DEFAULT_MAX_PARALLEL,
        reuse: Mapping[str, dict] | None = None,
        only: set[str] | None = None,
    ):
        """Prepare a run.

        Args:
            definition: The parsed definition of the execution.
            info: The execution's identity.
            parameters: Resolved parameter values.
            services: I/O for the steps.
            recorder: Persistence.
            max_parallel: MaxParallelExecutionSteps.
            reuse: Step records (with ``_Properties``) that count as already succeeded (a retry
                keeps its succeeded steps; a selective execution reuses its source's).
            only: When set, only these steps may run (selective execution).
        """
        self.definition = definition
        self.info = info
        self.parameters = dict(parameters)
        self.services = services
        self.recorder = recorder
        self.max_parallel = max(1, int(max_parallel))
        self.only = only
        self.steps = {step.name: step for step in definition.all_steps()}
        self.graph = dependencies(definition, include_branch_owner=True)
        self.owners = branch_owner(definition)
        self.properties: dict[str, dict] = {}
        self.state: dict[str, str] = {}
        for name, record in (reuse or {}).items():
            if name in self.steps:
                self.state[name] = "succeeded"
                self.properties[name] = _stored_properties(self.steps[name], record)
        self.stop_event = threading.Event()
        self.abort_reason: str | None = None
        self._files: dict[tuple[str, str], Any] = {}
        self._files_lock = threading.Lock()
        self.thread = threading.Thread(target=self._main, name=f"smlocal-pipeline-{info.execution_id}", daemon=True)

    # ---- control
    def start(self) -> "ExecutionRun":
        self.thread.start()
        return self

    def request_stop(self) -> None:
        """StopPipelineExecution: stop running steps, start no new ones; ends Stopped."""
        self.stop_event.set()

    def abort(self, reason: str) -> None:
        """The server is going away: stop everything; the execution ends Failed with ``reason``."""
        self.abort_reason = reason
        self.stop_event.set()

    # ---- the graph walk
    def _main(self) -> None:
        try:
            failed = self._walk()
        except Exception as exc:  # noqa: BLE001 - an execution must always end
            log.exception("pipeline execution %s crashed", self.info.arn)
            self._safe_finish("Failed", f"InternalServerError: smlocal's pipeline executor failed: {exc!r}")
            return
        if self.abort_reason:
            self._safe_finish("Failed", self.abort_reason)
        elif self.stop_event.is_set():
            self._safe_finish("Stopped", None)
        elif failed:
            self._safe_finish("Failed", STEP_FAILURE)
        else:
            self._safe_finish("Succeeded", None)

    def _safe_finish(self, status: str, reason: str | None) -> None:
        try:
            self.recorder.finish(status, reason)
        except Exception:  # noqa: BLE001 - e.g. the store closed under a shutdown
            log.warning("could not record the end of pipeline execution %s", self.info.arn)

    def _walk(self) -> bool:
        order = [name for name in self.steps if name not in self.state]
        pending = list(order)
        failed = False
        running: dict[cf.Future, str] = {}
        with cf.ThreadPoolExecutor(max_workers=self.max_parallel, thread_name_prefix="smlocal-step") as pool:
            while True:
                if not failed and not self.stop_event.is_set():
                    self._launch_ready(pending, running, pool)
                if not running:
                    return failed
                done, _ = cf.wait(running, timeout=0.5, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    name = running.pop(future)
                    outcome = future.result()
                    self.state[name] = outcome.status.lower()
                    if outcome.status == "Succeeded":
                        self.properties[name] = outcome.properties or {}
                    else:
                        failed = True

    def _launch_ready(self, pending: list[str], running: dict, pool: cf.ThreadPoolExecutor) -> None:
        progress = True
        while progress:
            progress = False
            for name in list(pending):
                verdict = self._readiness(name)
                if verdict == "skip":
                    self.state[name] = "skipped"
                    pending.remove(name)
                    progress = True
                elif verdict == "ready" and len(running) < self.max_parallel:
                    pending.remove(name)
                    self.state[name] = "running"
                    running[pool.submit(self._run_step, self.steps[name])] = name

    def _readiness(self, name: str) -> str:
        owner = self.owners.get(name)
        waiting = False
        for dep in self.graph.get(name, ()):
            status = self.state.get(dep)
            if status == "skipped":
                return "skip"
            if status != "succeeded":
                waiting = True
                continue
            if owner and dep == owner[0]:
                if branch_taken(self.properties.get(dep, {}).get("Outcome")) != owner[1]:
                    return "skip"
        if waiting:
            return "wait"
        if self.only is not None and name not in self.only:
            return "skip"
        return "ready"

    # ---- one step
    def _run_step(self, step: StepDefinition) -> StepOutcome:
        record = {"StepName": step.name, "StepStatus": "Executing", "StartTime": time.time(),
                  "AttemptCount": 0, "Metadata": {}, "_Type": step.type}
        if step.display_name:
            record["StepDisplayName"] = step.display_name
        if step.description:
            record["StepDescription"] = step.description
        self.recorder.step_update(step.name, record, replace=True)
        first_start, counts, attempt = time.time(), {}, 0
        try:
            while True:
                attempt += 1
                self.recorder.step_update(step.name, {"AttemptCount": attempt})
                outcome = self._attempt(step, attempt)
                if outcome.status != "Failed" or self.stop_event.is_set():
                    break
                delay = self._retry_delay(step, outcome.failure_type, counts, first_start)
                if delay is None:
                    break
                log.info("retrying step %s of %s in %.1fs", step.name, self.info.arn, delay)
                if self.stop_event.wait(delay):
                    break
        except Exception as exc:  # noqa: BLE001 - the step ends Failed, never stays Executing
            log.exception("step %s of %s crashed", step.name, self.info.arn)
            outcome = StepOutcome("Failed", failure_reason=f"InternalServerError: {exc!r}")
        if self.abort_reason and outcome.status != "Succeeded":  # ended by a server shutdown
            outcome.status, outcome.failure_reason = "Failed", self.abort_reason
        final = {"StepStatus": outcome.status, "EndTime": time.time(), "Metadata": outcome.metadata}
        if outcome.failure_reason:
            final["FailureReason"] = outcome.failure_reason
        if outcome.status == "Succeeded":
            final["_Properties"] = outcome.properties or {}
        final.update(outcome.record)
        try:
            self.recorder.step_update(step.name, final)
        except Exception:  # noqa: BLE001
            log.warning("could not record the end of step %s", step.name)
        return outcome

    def _attempt(self, step: StepDefinition, attempt: int) -> StepOutcome:
        if step.type == "Tuning":  # tuning job names have at most 32 characters
            resource = f"pipelines-{self.info.execution_id}-{random_token(8).lower()}"
        else:
            resource = generated_name(self.info.execution_id, step.name)
        ctx = self.evaluation_context(step, resource)
        arguments = None
        if step.type != "Condition":
            try:
                arguments = evaluate(dict(step.arguments), ctx)
            except ExpressionError as exc:
                return StepOutcome("Failed", failure_reason=str(exc))
        key = None
        if step.type in CACHEABLE_KEYS and step.cache_config and step.cache_config.enabled:
            key = fingerprint(step.type, arguments)
            hit = self._cache_hit(step, key) if attempt == 1 else None
            if hit is not None:
                return hit
        run = StepRun(step=step, arguments=arguments, resource_name=resource, execution_arn=self.info.arn,
                      services=self.services, eval_ctx=ctx, stop=self.stop_event,
                      report_metadata=lambda metadata: self.recorder.step_update(step.name, {"Metadata": metadata}))
        try:
            outcome = STEP_EXECUTORS[step.type](run)
        except StepFailed as exc:
            outcome = StepOutcome("Failed", failure_reason=exc.reason, failure_type=exc.failure_type)
        if key is not None and outcome.status == "Succeeded":
            outcome.record["_Fingerprint"] = key
        return outcome

    def _cache_hit(self, step: StepDefinition, key: str) -> StepOutcome | None:
        expire = step.cache_config.expire_after_seconds
        found = self.recorder.find_cache_hit(step.name, key, time.time() - expire if expire is not None else None)
        if found is None:
            return None
        source_arn, record = found
        source = (record.get("CacheHitResult") or {}).get("SourcePipelineExecutionArn") or source_arn
        return StepOutcome("Succeeded", metadata=record.get("Metadata") or {},
                           properties=record.get("_Properties") or {},
                           record={"CacheHitResult": {"SourcePipelineExecutionArn": source}, "_Fingerprint": key})

    def _retry_delay(self, step: StepDefinition, failure_type: str | None, counts: dict, first_start: float):
        """Seconds to wait before the next attempt, or None when no retry policy applies."""
        if failure_type is None:
            return None
        for index, policy in enumerate(step.retry_policies):
            if failure_type not in policy.exception_types:
                continue
            done = counts.get(index, 0)
            if policy.max_attempts is not None and done >= policy.max_attempts:
                return None
            if policy.expire_after_min is not None and time.time() - first_start > policy.expire_after_min * 60:
                return None
            counts[index] = done + 1
            return float(policy.interval_seconds) * (policy.backoff_rate ** done)
        return None

    # ---- expressions
    def evaluation_context(self, step: StepDefinition, resource_name: str) -> EvaluationContext:
        """The context for ``step``'s expressions; its job name is ``resource_name``."""
        variables = execution_variables(self.info)
        if step.type == "Training":
            variables["TrainingJobName"] = resource_name
        elif step.type == "Processing":
            variables["ProcessingJobName"] = resource_name
        return EvaluationContext(
            parameters=self.parameters,
            execution_variables=variables,
            step_properties=lambda name: self.properties.get(name) if self.state.get(name) == "succeeded" else None,
            read_property_file=self._read_property_file,
            read_s3_json=lambda uri: json.loads(self.services.read_s3(uri)),
            experiment_config=self.info.experiment_config,
        )

    def _read_property_file(self, step_name: str, file_name: str) -> Any:
        with self._files_lock:
            if (step_name, file_name) in self._files:
                return self._files[(step_name, file_name)]
        step = self.steps.get(step_name)
        declared = step.property_file(file_name) if step else None
        if declared is None:
            raise ExpressionError(f"Step '{step_name}' declares no property file '{file_name}'.")
        if self.state.get(step_name) != "succeeded":
            raise ExpressionError(f"Property file '{file_name}' of step '{step_name}' is unavailable: "
                                  "the step has not succeeded.")
        outputs = self.properties.get(step_name, {})
        path = parse_path(f"ProcessingOutputConfig.Outputs['{declared.output_name}'].S3Output.S3Uri")
        prefix = resolve_path(outputs, path, what=f"Property file '{file_name}' of step '{step_name}'")
        uri = f"{str(prefix).rstrip('/')}/{declared.file_path.lstrip('/')}"
        try:
            data = json.loads(self.services.read_s3(uri))
        except ValueError as exc:
            raise ExpressionError(f"Property file {uri} is not valid JSON: {exc}") from exc
        with self._files_lock:
            self._files[(step_name, file_name)] = data
        return data
