"""The backend protocol: what every way of running a job (process, docker) implements."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol


@dataclass(frozen=True)
class RunSpec:
    """One process to run inside a job sandbox.

    Attributes:
        command: argv as the job sees it (paths under /opt/ml are valid inside the sandbox).
        env: the complete environment of the process.
        opt_ml: host directory that the process sees as ``/opt/ml``.
        workdir: working directory inside the sandbox.
        network_isolation: no network at all (EnableNetworkIsolation).
        binds: extra (host_dir, sandbox_dir) pairs, e.g. processing paths outside /opt/ml.
        pidfile: where to record the process id while it runs (orphan clean-up after a crash).
    """

    command: tuple[str, ...]
    env: dict[str, str]
    opt_ml: Path
    workdir: str = "/opt/ml"
    network_isolation: bool = False
    binds: tuple[tuple[Path, str], ...] = ()
    pidfile: Path | None = None


@dataclass(frozen=True)
class SandboxPolicy:
    """What of the host a job must not see, whichever job it is.

    Attributes:
        hidden: host folders covered by an empty, read-only folder inside the sandbox (the smlocal
            data dir with every job's folder and the state store; the servers' runtime dir).
        shared_copy_on_write: folders under ``hidden`` whose entries a job may need, shown
            copy-on-write (the job may change its view; the host folder never changes): for each,
            only the entry that the job's command or ``PATH`` names (e.g. the cached requirements
            environment whose interpreter runs the job, where its own ``pip install`` lands).
    """

    hidden: tuple[Path, ...] = ()
    shared_copy_on_write: tuple[Path, ...] = ()


@dataclass
class RunResult:
    """How a run ended; ``exit_code`` is 128+N when the job died of signal N (as a shell reports it)."""

    exit_code: int
    stopped: bool = False
    timed_out: bool = False
    stderr_tail: str = ""
    elapsed: float = 0.0


OutputSink = Callable[[str], None]


@dataclass
class RunControl:
    """How the caller steers a running job: a stop request and a time limit."""

    stop: threading.Event = field(default_factory=threading.Event)
    timeout: float | None = None
    grace_seconds: float = 10.0


class Backend(Protocol):
    name: str

    def confine(self, policy: SandboxPolicy) -> None:
        """Sets what every later job must not see (called once by the runtime, before any run)."""
        ...

    def run(self, spec: RunSpec, sink: OutputSink, control: RunControl) -> RunResult:
        """Runs the process to its end, a stop request or the time limit; never raises for job errors."""
        ...

    def sweep(self, job_folder: Path) -> None:
        """Removes what runs of a dead server left under a job's folder (crash recovery)."""
        ...
