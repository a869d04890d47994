"""What every job run needs from its surroundings, and the folder it runs in."""

from __future__ import annotations

import os
import re
import signal
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from smlocal.auth import s3_credentials
from smlocal.config import Settings
from smlocal.runtime.backends.base import (Backend, BackendSet, JobNetworkUnavailable, RunControl, RunResult, RunSpec,
                                           SandboxPolicy, job_network)
from smlocal.runtime.backends.jobnet_plan import relayed_endpoints
from smlocal.runtime.staging import S3Stager

# host environment a job process inherits: enough to run programs, nothing of the server's own
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONUNBUFFERED", "VIRTUAL_ENV")


@dataclass
class RuntimeContext:
    """The shared services a job run uses (built once by the server)."""

    settings: Settings
    stager: S3Stager
    logs_client: object
    backend: Backend  # one backend, or a BackendSet choosing per image (a lone one is wrapped in one)
    endpoint_url: str
    python: str = field(default_factory=lambda: sys.executable)
    log_journal: object | None = None  # a runtime.log_journal.LogJournal for a durable data dir

    def __post_init__(self) -> None:
        if not isinstance(self.backend, BackendSet):
            self.backend = BackendSet(self.backend)
        # jobs never see the data dir (every job's folder, the store); only their own environment,
        # copy-on-write: a job's pip install into it is gone after the job
        # a job network relays smlocal's own endpoints into its hosts, and nothing a request names
        self.backend.confine(SandboxPolicy(hidden=(self.settings.data_dir,), shared_copy_on_write=(self.envs_root,),
                                           job_network=self.settings.job_network,
                                           relayed_endpoints=relayed_endpoints(self.endpoints().values())))

    def backend_for(self, image: str | None) -> Backend:
        """The backend that runs jobs of ``image`` (the BackendSet's choice for it)."""
        return self.backend.for_image(image)

    @property
    def jobs_root(self) -> Path:
        return self.settings.data_dir / "jobs"

    @property
    def envs_root(self) -> Path:
        return self.settings.data_dir / "envs"

    def endpoints(self) -> dict[str, str]:
        """smlocal's endpoints in every job's environment: code inside a job that talks to AWS
        (e.g. boto3 in a processing script) reaches smlocal."""
        found = {"AWS_ENDPOINT_URL": self.endpoint_url}
        if self.settings.s3_endpoint:
            found["AWS_ENDPOINT_URL_S3"] = self.settings.s3_endpoint
        return found

    def base_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        env["PATH"] = f"{Path(self.python).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("HOME", "/root")
        env["AWS_DEFAULT_REGION"] = env["AWS_REGION"] = self.settings.region
        env.update(self.endpoints())
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = s3_credentials(self.settings)
        return env


class Reporter(Protocol):
    """How a running job tells the service what is happening."""

    def secondary(self, status: str, message: str) -> None: ...

    def log(self, line: str) -> None: ...


def job_dir(ctx: RuntimeContext, kind: str, name: str, host: str = "algo-1") -> Path:
    """A fresh host folder that the job sees as /opt/ml."""
    folder = ctx.jobs_root / kind / name / host
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def pidfile(ctx: RuntimeContext, kind: str, name: str, host: str = "algo-1") -> Path:
    return ctx.jobs_root / kind / name / f"{host}.pid"


def job_marker(kind: str, name: str) -> str:
    """The SMLOCAL_JOB value in every job process's environment (how orphans are recognised)."""
    return f"{kind}/{name}"


def kill_orphans(ctx: RuntimeContext, kind: str, name: str) -> int:
    """Kills processes a crashed server left running for this job; returns how many."""
    killed = 0
    folder = ctx.jobs_root / kind / name
    for path in folder.glob("*.pid") if folder.is_dir() else []:
        try:
            pid = int(path.read_text())
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if f"SMLOCAL_JOB={job_marker(kind, name)}".encode() in environ:
            try:
                os.killpg(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        path.unlink(missing_ok=True)
    ctx.backend.sweep(folder)  # what the killed processes left (the process backend: its scratch layers)
    return killed


def log_stream_name(job_name: str, host: str = "algo-1") -> str:
    return f"{job_name}/{host}-{int(time.time())}"


class MetricCollector:
    """Applies MetricDefinitions regexes to each log line; keeps the last value of each metric.

    Args:
        definitions: MetricDefinitions (``Name``, ``Regex``); an invalid regex is skipped.
        keep_series: Also keep every value with its time in :attr:`series` (the console's chart);
            off for running jobs, whose logs may be long.
    """

    def __init__(self, definitions: list[dict] | None, *, keep_series: bool = False):
        self._defs = []
        for item in definitions or []:
            try:
                self._defs.append((item["Name"], re.compile(item["Regex"])))
            except re.error:
                continue
        self.values: dict[str, tuple[float, float]] = {}
        self.series: dict[str, list[tuple[float, float]]] | None = {} if keep_series else None
        self._stats: dict[str, list[float]] = {}  # name -> [count, min, max, sum, sum of squares]

    def feed(self, line: str, stamp: float | None = None) -> None:
        """Reads one log line; ``stamp`` is its time in epoch seconds (default: now)."""
        for name, regex in self._defs:
            match = regex.search(line)
            if match and match.groups():
                try:
                    value = float(match.group(1))
                except ValueError:
                    continue
                at = time.time() if stamp is None else stamp
                self.values[name] = (value, at)
                stats = self._stats.setdefault(name, [0, value, value, 0.0, 0.0])
                stats[0] += 1
                stats[1], stats[2] = min(stats[1], value), max(stats[2], value)
                stats[3] += value
                stats[4] += value * value
                if self.series is not None:
                    self.series.setdefault(name, []).append((at, value))

    def final(self) -> list[dict]:
        return [
            {"MetricName": name, "Value": value, "Timestamp": stamp}
            for name, (value, stamp) in self.values.items()
        ]

    def summaries(self) -> list[dict]:
        """Each metric's statistics over all its values, shaped as a TrialComponentMetricSummary
        (less SourceArn): Last, Min, Max, Avg, Count, the sample StdDev (0 for one value), TimeStamp."""
        found = []
        for name, (last, stamp) in self.values.items():
            count, low, high, total, squares = self._stats[name]
            mean = total / count
            variance = max(0.0, (squares - count * mean * mean) / (count - 1)) if count > 1 else 0.0
            found.append({"MetricName": name, "TimeStamp": stamp, "Last": last, "Min": low, "Max": high,
                          "Avg": mean, "Count": int(count), "StdDev": variance ** 0.5})
        return found


Sink = Callable[[str], None]


def run_hosts(backend: Backend, specs: list[RunSpec], sinks: list[Sink], control: RunControl,
              timeout: float | None) -> tuple[list[RunResult | None], str | None]:
    """Runs every host of a job at once; returns each host's result and why they were ended early:
    ``"failed"`` (a host exited non-zero or could not start: the others are stopped) or
    ``"stopped"`` (``control.stop``). ``timeout`` is the job's limit (MaxRuntimeInSeconds).

    The hosts run inside the backend's job network (:func:`job_network`), made before the first
    starts and ended after the last; where it cannot be made, no host runs and each result's
    ``failure`` says why."""
    try:
        with job_network(backend, specs) as networked:
            return _run_all(backend, networked, sinks, control, timeout)
    except JobNetworkUnavailable as exc:
        reason = f"The job's private network could not be made: {exc}"
        return [RunResult(exit_code=1, failure=reason) for _ in specs], "failed"


def _run_all(backend: Backend, specs: list[RunSpec], sinks: list[Sink], control: RunControl,
             timeout: float | None) -> tuple[list[RunResult | None], str | None]:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    inner = RunControl(stop=threading.Event(), timeout=timeout, grace_seconds=control.grace_seconds)
    results: list[RunResult | None] = [None] * len(specs)
    cause: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def end_all(reason: str) -> None:
        with lock:
            if not cause:
                cause.append(reason)
        inner.stop.set()

    def watch_stop() -> None:
        while not done.is_set():
            if control.stop.wait(0.1):
                end_all("stopped")
                return

    def run(index: int) -> None:
        # each host its own control (a server's address is per host), the stop and limit shared
        own = RunControl(stop=inner.stop, timeout=timeout, grace_seconds=control.grace_seconds)
        try:
            result = backend.run(specs[index], sinks[index], own)
        except BaseException:
            end_all("failed")  # the other hosts must not run on to the time limit
            raise
        results[index] = result
        if result.failure or (result.exit_code != 0 and not (result.stopped or result.timed_out)):
            end_all("failed")

    watcher = threading.Thread(target=watch_stop, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(specs))) as pool:
            list(pool.map(run, range(len(specs))))
    finally:
        done.set()  # the watcher ends at its next look (within 0.1 s); joining it would add that to every job
    return results, cause[0] if cause else None
