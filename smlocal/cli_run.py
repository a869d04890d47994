"""`smlocal run WORKFLOW`: the workflow program in a subprocess (as under `smlocal exec`), its progress beside it.

The workflow is an ordinary SDK program; its output is passed through line by line. Meanwhile the
server is polled for what the run started: pipeline executions created since the run began
(ListPipelines → ListPipelineExecutions(CreatedAfter), then each one's definition, fetched once, and
its ListPipelineExecutionSteps, as the nodes of its execution graph, like the console's) and the
training / processing / transform jobs created since then that are not a step of one of those
executions. On a terminal they form a live table; piped, one line per state change. The run ends
with a one-line summary and the console URL of what it ran.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import queue
import subprocess
import threading
import time

from smlocal.cli_console import console_link, execution_fragment, job_fragment
from smlocal.cli_progress import LiveDisplay, PlainDisplay, Row, execution_rows, fmt_seconds, job_row
from smlocal.cli_tables import is_terminal, short_arn
from smlocal.client import JOB_KINDS, JobKind, emulator_environment, running_endpoint
from smlocal.pipelines.definition import PipelineDefinition, parse_definition

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
_TERMINAL_EXECUTION = ("Succeeded", "Failed", "Stopped")


class RunWatcher:
    """What a run started on the server, read through the SageMaker API."""

    def __init__(self, sm, since: _dt.datetime) -> None:
        self._sm, self._since = sm, since
        self._definitions: dict[str, PipelineDefinition] = {}  # execution ARN → its definition (fetched once)
        self._finished: dict[str, list[dict]] = {}  # steps of executions that had ended when listed
        self._reasons: dict[str, str] = {}  # a Failed job's row key → its FailureReason (final: described once)
        self.executions: dict[str, dict] = {}  # ARN → its ListPipelineExecutions summary (+ "PipelineName")
        self.jobs: list[Row] = []

    def poll(self) -> list[Row]:
        """The rows now: the steps of the run's executions, then the run's other jobs."""
        now = _dt.datetime.now(_dt.timezone.utc)
        rows: list[Row] = []
        owned_arns: set[str] = set()
        for arn in self._refresh_executions():
            definition = self._definition(arn)
            if definition is None:
                continue
            steps = self._steps(arn)
            rows += execution_rows(arn, definition, steps, now)
            owned_arns.update(value["Arn"].lower() for step in steps
                              for value in (step.get("Metadata") or {}).values()
                              if isinstance(value, dict) and value.get("Arn"))
        # a step's job is named pipelines-<execution id>-<step>-...; its ARN is in the step's Metadata
        prefixes = tuple(f"pipelines-{arn.rsplit('/', 1)[-1]}-".lower() for arn in self.executions)
        self.jobs = []
        for kind in JOB_KINDS:
            listed = getattr(self._sm, kind.list_call)(CreationTimeAfter=self._since, MaxResults=100,
                                                       SortBy="CreationTime", SortOrder="Ascending")
            for summary in listed[kind.summaries_key]:
                name = summary[kind.name_key]
                if name.lower().startswith(prefixes) or summary.get(f"{kind.noun}Arn", "").lower() in owned_arns:
                    continue
                key = f"{kind.kind}#{name}"
                if summary[kind.status_key] == "Failed" and key not in self._reasons:
                    self._reasons[key] = failure_reason(self._sm, kind, summary)
                self.jobs.append(job_row(kind.kind, kind.noun, summary, now, self._reasons.get(key, "")))
        return rows + self.jobs

    def _refresh_executions(self) -> list[str]:
        for page in self._sm.get_paginator("list_pipelines").paginate():
            for pipeline in page["PipelineSummaries"]:
                last = pipeline.get("LastExecutionTime")
                if last is not None and last < self._since:
                    continue
                listed = self._sm.list_pipeline_executions(PipelineName=pipeline["PipelineName"],
                                                           CreatedAfter=self._since, SortOrder="Ascending")
                for item in listed["PipelineExecutionSummaries"]:
                    self.executions[item["PipelineExecutionArn"]] = {**item, "PipelineName": pipeline["PipelineName"]}
        return sorted(self.executions, key=lambda arn: self.executions[arn]["StartTime"])

    def _definition(self, arn: str) -> PipelineDefinition | None:
        if arn not in self._definitions:
            try:
                self._definitions[arn] = execution_definition(self._sm, arn)
            except self._sm.exceptions.ClientError as exc:  # not there (yet): tried again at the next poll
                log.debug("no definition for %s: %s", arn, exc)
                return None
        return self._definitions[arn]

    def _steps(self, arn: str) -> list[dict]:
        if arn in self._finished:
            return self._finished[arn]
        ended = self.executions[arn]["PipelineExecutionStatus"] in _TERMINAL_EXECUTION
        steps = execution_steps(self._sm, arn)
        if ended:
            self._finished[arn] = steps
        return steps


def execution_definition(sm, arn: str) -> PipelineDefinition:
    """The parsed pipeline definition an execution runs (DescribePipelineDefinitionForExecution)."""
    return parse_definition(sm.describe_pipeline_definition_for_execution(
        PipelineExecutionArn=arn)["PipelineDefinition"])


def execution_steps(sm, arn: str) -> list[dict]:
    """Every ``ListPipelineExecutionSteps`` item of an execution."""
    return [step for page in sm.get_paginator("list_pipeline_execution_steps").paginate(
        PipelineExecutionArn=arn) for step in page["PipelineExecutionSteps"]]


def failure_reason(sm, kind: JobKind, summary: dict) -> str:
    """A Failed job's FailureReason: its List* summary's, else its Describe's (``TrainingJobSummary`` has none)."""
    if summary[kind.status_key] != "Failed":
        return ""
    if summary.get("FailureReason"):
        return summary["FailureReason"]
    return getattr(sm, kind.describe_call)(**{kind.name_key: summary[kind.name_key]}).get("FailureReason", "")


def _sagemaker_client(env: dict[str, str]):
    import boto3

    session = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                    region_name=env["AWS_DEFAULT_REGION"])
    return session.client("sagemaker", endpoint_url=env["SMLOCAL_ENDPOINT"])


def _pump(stream, error: bool, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put((line, error))
    lines.put((None, error))


def run_with_progress(argv: list[str], env: dict[str, str], display, watcher: RunWatcher,
                      poll_seconds: float = POLL_SECONDS) -> int:
    """Runs ``argv`` with ``env``, showing its output and the watcher's rows on ``display``; its exit code."""
    child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             bufsize=1, errors="replace")
    lines: queue.Queue = queue.Queue()
    for stream, error in ((child.stdout, False), (child.stderr, True)):
        threading.Thread(target=_pump, args=(stream, error, lines), daemon=True).start()
    open_streams, next_poll = 2, 0.0
    try:
        while open_streams or child.poll() is None:
            try:
                line, error = lines.get(timeout=max(0.0, min(poll_seconds, next_poll - time.monotonic())))
                if line is None:
                    open_streams -= 1
                else:
                    display.output(line, error)
            except queue.Empty:
                pass
            if time.monotonic() >= next_poll:
                _show(display, watcher)
                next_poll = time.monotonic() + poll_seconds
        child.wait()
        _show(display, watcher)  # the last states
    except KeyboardInterrupt:
        child.terminate()
        child.wait(timeout=30)
        raise
    return child.returncode


def _show(display, watcher: RunWatcher) -> None:
    try:
        rows = watcher.poll()
    except Exception as exc:  # noqa: BLE001 - the progress must never end the run (server gone, network)
        log.debug("progress poll failed: %s", exc)
        return
    titles = [f"{e['PipelineName']}/{arn.rsplit('/', 1)[-1]} {e['PipelineExecutionStatus']}"
              for arn, e in watcher.executions.items()]
    display.update("execution " + ", ".join(titles) if titles else "", rows)


def summary_lines(name: str, code: int, seconds: float, watcher: RunWatcher, endpoint: str,
                  embedded: bool) -> list[str]:
    """The run's closing lines: status and total time, then the console URL of what it ran."""
    parts = []
    for arn, execution in watcher.executions.items():
        reason = execution.get("PipelineExecutionFailureReason")
        parts.append(f"execution {short_arn(arn).split('/', 1)[-1].replace('/execution/', '/')} "
                     f"{execution['PipelineExecutionStatus']}" + (f" ({reason})" if reason else ""))
    if not watcher.executions and watcher.jobs:
        failed = sum(row.status == "Failed" for row in watcher.jobs)
        parts.append(f"{len(watcher.jobs)} job(s)" + (f", {failed} failed" if failed else ""))
    outcome = "succeeded" if code == 0 else f"failed (exit {code})"
    lines = [f"smlocal run {name} {outcome} in {fmt_seconds(seconds)}" + (": " + "; ".join(parts) if parts else "")]
    if watcher.executions:
        fragment = execution_fragment(next(reversed(watcher.executions)))
    elif watcher.jobs:
        last = watcher.jobs[-1]
        fragment = job_fragment(last.type.lower(), last.name)
    else:
        fragment = ""
    url = console_link(endpoint, fragment)
    if embedded:
        lines.append(f"Console: {url} (only while a server runs: this run's embedded server has stopped; "
                     "start `smlocal up` first to keep its results)")
    else:
        lines.append(f"Console: {url}")
    return lines


def run_workflow(name: str, argv: list[str], flags: dict, verbose: bool) -> int:
    """`smlocal run NAME`: ``argv`` (the workflow program) under the emulator's client environment."""
    embedded = running_endpoint() is None
    started = time.monotonic()
    with emulator_environment(**flags) as client_env:
        env = {**os.environ, **client_env, "PYTHONUNBUFFERED": "1"}
        env.update(quiet_environment(verbose))
        since = _dt.datetime.now(_dt.timezone.utc)
        watcher = RunWatcher(_sagemaker_client(client_env), since)
        display = LiveDisplay() if is_terminal() else PlainDisplay()
        with display:
            if embedded:
                display.message(f"Console (while this run lasts): {console_link(client_env['SMLOCAL_ENDPOINT'])}")
            code = run_with_progress(argv, env, display, watcher)
        endpoint = client_env["SMLOCAL_ENDPOINT"]
    for line in summary_lines(name, code, time.monotonic() - started, watcher, endpoint, embedded):
        print(line, flush=True)
    return code


def quiet_environment(verbose: bool) -> dict[str, str]:
    """The variables `smlocal run`/`exec` give their program: quiet library logs unless ``verbose``.

    ``SMLOCAL_QUIET=1`` makes smlocal's site hook drop the library log lines that are smlocal's or the
    SDK's noise (:func:`smlocal.compat.quiet_library_logs`); ``SMLOCAL_VERBOSE=1``
    tells smlocal's own workflow programs to log at INFO.
    """
    if verbose:
        return {"SMLOCAL_VERBOSE": "1", "SMLOCAL_QUIET": "0"}
    return {"SMLOCAL_QUIET": "1"}
