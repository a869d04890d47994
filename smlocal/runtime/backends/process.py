"""ProcessBackend: a job is a local process with a private /opt/ml (Linux mount namespace).

``unshare --mount`` gives the process its own mount table; inside it, the job's host folder is
bind-mounted on ``/opt/ml``, so scripts that hard-code ``/opt/ml/...`` work and concurrent jobs never
see each other's files. With network isolation, ``unshare --net`` leaves the job a network namespace
with only a loopback device: no route anywhere.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import threading
import time

from smlocal.runtime.backends.base import OutputSink, RunControl, RunResult, RunSpec

_SANDBOX_SCRIPT = r"""
set -e
opt_ml="$1"; workdir="$2"; nbinds="$3"; shift 3
mount --bind "$opt_ml" /opt/ml
i=0
while [ "$i" -lt "$nbinds" ]; do
  mkdir -p "$2"
  mount --bind "$1" "$2"
  shift 2; i=$((i+1))
done
if command -v ip >/dev/null 2>&1; then ip link set lo up 2>/dev/null || true; fi
cd "$workdir"
exec "$@"
"""


class SandboxUnavailable(RuntimeError):
    """The machine cannot give a job a private /opt/ml."""


def check_sandbox() -> None:
    """Ensures /opt/ml exists as a mount point and ``unshare`` can make a mount namespace."""
    if shutil.which("unshare") is None:
        raise SandboxUnavailable("the 'unshare' command (util-linux) is not installed")
    try:
        os.makedirs("/opt/ml", exist_ok=True)
    except OSError as exc:
        raise SandboxUnavailable(
            f"/opt/ml does not exist and cannot be created ({exc}); create it once with "
            "'sudo mkdir -p /opt/ml'"
        ) from exc


class ProcessBackend:
    """Runs jobs as local processes in a mount (and optionally network) namespace."""

    name = "process"

    def __init__(self) -> None:
        check_sandbox()
        self._userns = os.geteuid() != 0

    def _argv(self, spec: RunSpec) -> list[str]:
        argv = ["unshare", "--mount", "--propagation", "private"]
        if self._userns:
            argv += ["--user", "--map-root-user"]
        if spec.network_isolation:
            argv.append("--net")
        argv += ["--", "/bin/sh", "-c", _SANDBOX_SCRIPT, "smlocal-sandbox", str(spec.opt_ml),
                 spec.workdir, str(len(spec.binds))]
        for host_dir, target in spec.binds:
            argv += [str(host_dir), target]
        return argv + list(spec.command)

    def run(self, spec: RunSpec, sink: OutputSink, control: RunControl) -> RunResult:
        started = time.monotonic()
        proc = subprocess.Popen(
            self._argv(spec),
            env=spec.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        if spec.pidfile is not None:
            spec.pidfile.write_text(str(proc.pid))
        tail: collections.deque[str] = collections.deque(maxlen=200)
        readers = [
            threading.Thread(target=_pump, args=(proc.stdout, sink, None), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, sink, tail), daemon=True),
        ]
        for reader in readers:
            reader.start()
        stopped = timed_out = False
        deadline = started + control.timeout if control.timeout else None
        while True:
            try:
                proc.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            if control.stop.is_set() and not stopped:
                stopped = True
                _terminate(proc, control.grace_seconds)
            elif deadline and time.monotonic() >= deadline and not timed_out:
                timed_out = True
                _terminate(proc, control.grace_seconds)
        for reader in readers:
            reader.join(timeout=5)
        if spec.pidfile is not None:
            spec.pidfile.unlink(missing_ok=True)
        return RunResult(
            exit_code=proc.returncode,
            stopped=stopped,
            timed_out=timed_out,
            stderr_tail="".join(tail),
            elapsed=time.monotonic() - started,
        )


def _pump(stream, sink: OutputSink, tail: collections.deque | None) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace")
        if tail is not None:
            tail.append(line)
        sink(line.rstrip("\n"))
    stream.close()


def _terminate(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM to the job's process group, SIGKILL after the grace period (as SageMaker does)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
