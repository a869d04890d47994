"""What `smlocal run` shows while a workflow runs: its pipeline steps and jobs, as rows.

Pure parts (no I/O): :class:`Row`, the rows of a pipeline execution's steps (:func:`execution_rows`,
the nodes of its execution graph, as the console draws it) and of jobs (:func:`job_row`), the plain
line of a row (:func:`plain_line`) and which rows changed (:class:`ChangeLog`). :class:`PlainDisplay` prints one line per state change (piped output, CI);
:class:`LiveDisplay` redraws a table on a terminal (rich Live).
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from dataclasses import dataclass
from typing import Iterable, TextIO

from smlocal.cli_tables import build_table, short_arn
from smlocal.pipelines.definition import PipelineDefinition
from smlocal.pipelines.graph import execution_graph

TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Stopped", "Completed"})


@dataclass(frozen=True)
class Row:
    """One line of the progress: a pipeline step or a job."""

    key: str  # unique within a run: the execution ARN and step name, or the job's kind and name
    kind: str  # "step" or "job"
    name: str
    type: str
    status: str
    seconds: float | None  # from start to end, or to now while running
    detail: str = ""  # cache hit, attempts, condition outcome, failure reason
    job: str = ""  # a step's job (``training-job/NAME``), as `smlocal steps` shows it

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


def _elapsed(start, end, now: _dt.datetime) -> float | None:
    if start is None:
        return None
    return max(0.0, ((end or now) - start).total_seconds())


def execution_rows(execution_arn: str, definition: PipelineDefinition, records: list[dict],
                   now: _dt.datetime) -> list[Row]:
    """The rows of an execution's steps: the nodes of its graph (:func:`smlocal.pipelines.graph.execution_graph`).

    Every step of the definition has a row (``NotStarted`` and ``Skipped`` ones too): the steps that
    started first, by start time, then the others in definition order.

    Args:
        execution_arn: the execution the steps belong to.
        definition: its parsed pipeline definition.
        records: its ``ListPipelineExecutionSteps`` items.
        now: the time running steps are measured to (aware, UTC).
    """
    nodes = execution_graph(definition, records, now=now.timestamp())["nodes"]
    by_name = {record["StepName"]: record for record in records}
    started = {name: record["StartTime"].timestamp() for name, record in by_name.items() if record.get("StartTime")}
    order = sorted(range(len(nodes)), key=lambda i: (nodes[i]["name"] not in started,
                                                     started.get(nodes[i]["name"], 0.0), i))
    rows = []
    for node in (nodes[i] for i in order):
        rows.append(Row(key=f"{execution_arn}#{node['name']}", kind="step", name=node["name"], type=node["type"],
                        status=node["status"], seconds=node["durationSeconds"],
                        detail=node_detail(node, by_name.get(node["name"], {})),
                        job=short_arn(node["job"]["arn"]) if node["job"] else ""))
    return rows


def node_detail(node: dict, record: dict) -> str:
    """What else a step's row says, from its graph node: cache hit, retries, condition outcome, failure reason.

    Two things only the step record has are added: the execution a cache hit came from and a Callback
    step's token (what `SendPipelineExecutionStepSuccess` needs).
    """
    details = []
    if node["cacheHit"]:
        source = (record.get("CacheHitResult") or {}).get("SourcePipelineExecutionArn", "")
        details.append(f"cache hit from {source.rsplit('/', 1)[-1]}" if source else "cache hit")
    if node["attempts"] > 1:
        details.append(f"{node['attempts']} attempts")
    if node["conditionOutcome"] is not None:
        details.append(f"outcome {node['conditionOutcome']}")
    token = ((record.get("Metadata") or {}).get("Callback") or {}).get("CallbackToken")
    if token:
        details.append(f"token {token}")
    if node["failureReason"]:
        details.append(node["failureReason"].splitlines()[0])
    return "; ".join(details)


def job_row(kind: str, noun: str, summary: dict, now: _dt.datetime, reason: str = "") -> Row:
    """The row of a job from its List* summary (``noun``: ``TrainingJob``, ``ProcessingJob`` ...).

    ``reason`` is a Failed job's FailureReason when the summary has none (``TrainingJobSummary``).
    """
    end = summary.get(f"{noun[:-len('Job')]}EndTime")  # TrainingEndTime, ProcessingEndTime, TransformEndTime
    status = summary[f"{noun}Status"]
    if end is None and status in TERMINAL_STATUSES:
        end = summary.get("LastModifiedTime")
    reason = summary.get("FailureReason") or reason
    return Row(key=f"{kind}#{summary[f'{noun}Name']}", kind="job", name=summary[f"{noun}Name"],
               type=kind.capitalize(), status=status, seconds=_elapsed(summary.get("CreationTime"), end, now),
               detail=reason.splitlines()[0] if reason else "")


def plain_line(row: Row) -> str:
    """``step AbaloneTrain  Training  Succeeded  1.7s`` (the duration once the row has ended)."""
    parts = [f"{row.kind} {row.name}", row.type or "-", row.status]
    if row.done and row.seconds is not None:
        parts.append(f"{row.seconds:.1f}s")
    if row.detail:
        parts.append(row.detail)
    return "  ".join(parts)


class ChangeLog:
    """Remembers each row's last status: :meth:`changed` gives the rows whose status is new.

    A row is first reported when it leaves ``NotStarted`` (a step still waiting is no news).
    """

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def changed(self, rows: Iterable[Row]) -> list[Row]:
        new = []
        for row in rows:
            if self._seen.get(row.key, "NotStarted") != row.status:
                self._seen[row.key] = row.status
                new.append(row)
        return new


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"


class PlainDisplay:
    """Piped output: the workflow's own lines as they come, and one line per row state change."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out, self._err = out or sys.stdout, err or sys.stderr
        self._log = ChangeLog()

    def __enter__(self) -> "PlainDisplay":
        return self

    def __exit__(self, *exc) -> None:
        self._out.flush()

    def output(self, line: str, error: bool = False) -> None:
        stream = self._err if error else self._out
        stream.write(line if line.endswith("\n") else line + "\n")
        stream.flush()

    def update(self, title: str, rows: list[Row]) -> None:
        for row in self._log.changed(rows):
            self.output(plain_line(row))

    def message(self, text: str) -> None:
        self.output(text)


class LiveDisplay:
    """A terminal: a table of the rows (step, type, status in colour, duration, detail) redrawn live,
    with the workflow's own output printed above it."""

    def __init__(self, out: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=out or sys.stdout)
        self._live = Live(console=self._console, refresh_per_second=4, transient=False,
                          redirect_stdout=False, redirect_stderr=False)
        self._title, self._rows = "", []
        self._started = time.monotonic()

    def __enter__(self) -> "LiveDisplay":
        self._live.start()
        self._live.update(self._table(), refresh=True)
        return self

    def __exit__(self, *exc) -> None:
        self._live.update(self._table(), refresh=True)
        self._live.stop()

    def output(self, line: str, error: bool = False) -> None:
        from rich.text import Text

        self._console.print(Text(line.rstrip("\n"), style="dim red" if error else ""), soft_wrap=True)

    def update(self, title: str, rows: list[Row]) -> None:
        self._title, self._rows = title, rows
        self._live.update(self._table())

    def message(self, text: str) -> None:
        from rich.text import Text

        self._console.print(Text(text), soft_wrap=True)

    def _table(self):
        from rich.console import Group
        from rich.text import Text

        rows = [(row.name, row.type, row.status, fmt_seconds(row.seconds), row.detail) for row in self._rows]
        table = build_table(("STEP / JOB", "TYPE", "STATUS", "DURATION", "DETAIL"), rows, status_column=2,
                            shrink_column=4)
        elapsed = fmt_seconds(time.monotonic() - self._started)
        title = Text(f"{self._title or 'waiting for steps or jobs'}  [{elapsed}]", style="bold", no_wrap=True,
                     overflow="ellipsis")
        return Group(title, table)


__all__ = ["Row", "execution_rows", "node_detail", "job_row", "plain_line", "ChangeLog", "PlainDisplay", "LiveDisplay",
           "fmt_seconds", "short_arn", "TERMINAL_STATUSES"]
