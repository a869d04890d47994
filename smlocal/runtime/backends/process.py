"""ProcessBackend: a job is a local process in a sandbox as tight as a container.

Each job runs under ``unshare --user --mount --pid --fork --kill-child --mount-proc [--net]``:

* a user namespace, root included, so the job holds no capability over anything of the host
  (it cannot ``setns()`` into the server's network namespace, nor remount what it sees);
* a PID namespace with its own ``/proc``: the job sees only its own processes, and when it ends
  every process it left (forked, ``setsid``) is killed;
* a private mount table (built by :mod:`smlocal.runtime.backends.sandbox_init`, the namespace's
  process 1): the job's folder on ``/opt/ml``, a private ``/tmp`` and ``/dev/shm``, and empty
  read-only folders over the smlocal data dir (every job's folder, the state store) and the
  servers' runtime dir; the cached requirements environment a job runs in is shown read-only;
* with network isolation, a network namespace with only a loopback device: no route anywhere.

``unshare`` dies with the server thread that started it (``setpriv --pdeathsig``), and its child,
the namespace's process 1, dies with ``unshare`` (``--kill-child``): no job outlives its server.
Output is read in fixed-size blocks and split into lines here; a line longer than a log event may
be is handed on in pieces, so a job printing a 50 MB line costs no 50 MB of memory.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from smlocal.auth import runtime_dir
from smlocal.runtime.backends.base import OutputSink, RunControl, RunResult, RunSpec, SandboxPolicy
from smlocal.runtime.logs import MAX_EVENT_BYTES

INIT = Path(__file__).with_name("sandbox_init.py")
SANDBOX_ROOT = "/opt/ml"
READ_BLOCK = 64 * 1024
MAX_PIECE = MAX_EVENT_BYTES  # the longest piece of a line handed to the sink
TAIL_LINES, TAIL_LINE_CHARS = 200, 4096
PLAN_VARIABLE = "SMLOCAL_SANDBOX_PLAN"
_INTERPRETER_DIRS = tuple(dict.fromkeys(os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)))
PRIVATE_DIRS = ("/tmp", "/dev/shm")  # a fresh empty one per job


class SandboxUnavailable(RuntimeError):
    """The machine cannot give a job a private /opt/ml."""


def check_sandbox() -> None:
    """Ensures /opt/ml exists as a mount point and ``unshare`` can make a mount namespace."""
    if shutil.which("unshare") is None:
        raise SandboxUnavailable("the 'unshare' command (util-linux) is not installed")
    try:
        os.makedirs(SANDBOX_ROOT, exist_ok=True)
    except OSError as exc:
        raise SandboxUnavailable(
            f"/opt/ml does not exist and cannot be created ({exc}); create it once with "
            "'sudo mkdir -p /opt/ml'"
        ) from exc


def sandbox_plan(spec: RunSpec, policy: SandboxPolicy, *, existing=os.path.isdir,
                 software: tuple[str, ...] = ()) -> dict:
    """The mount plan :mod:`sandbox_init` carries out for ``spec`` (pure but for ``existing``).

    In order: a fresh ``/tmp`` and ``/dev/shm``; read-only binds of the host folders the job's
    programs live in when they lie under those (a virtualenv or a checkout under ``/tmp``: the
    command's environment, ``PATH``, ``PYTHONPATH``, ``VIRTUAL_ENV`` and ``software``, the
    interpreter's prefixes); empty covers over the hidden folders (a hidden folder under ``/tmp``
    needs one only inside such a bind); the job's folder on ``/opt/ml``, then the spec's binds (which
    may lie inside ``/opt/ml``); the entries of ``shared_readonly`` the job names. Every bind source
    is opened before the first cover, so a source under a covered path still works.

    Returns:
        ``{"steps": [["cover", path] | ["bind", source, target, read_only], ...], "seal": [...],
        "loopback": bool, "workdir": str}``; ``seal`` lists the covers made read-only at the end.
    """
    private = [p for p in PRIVATE_DIRS if existing(p)]
    steps: list[list] = [["cover", p] for p in private]
    programs = _program_dirs(spec, software)
    kept = [d for d in programs if any(_inside(d, p) and d != p for p in private)]
    kept = [d for d in kept if not any(_inside(d, o) and d != o for o in kept)]  # outermost only
    steps += [["bind", d, d, True] for d in kept if existing(d)]
    hidden = [os.path.abspath(p) for p in policy.hidden if existing(str(p))]
    hidden = [p for p in hidden if not any(_inside(p, q) for q in private) or any(_inside(p, d) for d in kept)]
    steps += [["cover", p] for p in hidden]
    steps.append(["bind", os.path.abspath(spec.opt_ml), SANDBOX_ROOT, False])
    steps += [["bind", os.path.abspath(src), target, False] for src, target in spec.binds]
    steps += [["bind", entry, entry, True] for entry in _shared_entries(spec, policy)]
    return {"steps": steps, "seal": hidden, "loopback": spec.network_isolation, "workdir": spec.workdir}


def encode_plan(plan: dict) -> str:
    """The plan as text for :func:`sandbox_init.decode_plan`: a line a step, tab-separated fields.

    Raises:
        SandboxUnavailable: a path holds a tab or a newline (the text form cannot carry it).
    """
    rows: list[list[str]] = []
    for step in plan["steps"]:
        rows.append(list(step) if step[0] == "cover" else [*step[:3], "ro" if step[3] else "rw"])
    rows += [["seal", path] for path in plan["seal"]]
    rows += [["loopback"]] if plan["loopback"] else []
    rows.append(["workdir", plan["workdir"]])
    for row in rows:
        if any("\t" in field or "\n" in field for field in row):
            raise SandboxUnavailable(f"a sandbox path holds a tab or a newline: {row[1:]!r}")
    return "\n".join("\t".join(row) for row in rows)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _named_paths(spec: RunSpec) -> list[str]:
    """Host paths the job's command and environment name for programs (absolute paths only)."""
    named = [os.path.dirname(os.path.dirname(spec.command[0]))] if spec.command else []
    named += [os.path.dirname(p) for p in spec.env.get("PATH", "").split(os.pathsep)]
    named += spec.env.get("PYTHONPATH", "").split(os.pathsep) + [spec.env.get("VIRTUAL_ENV", "")]
    return [os.path.abspath(p) for p in named if p.startswith("/")]


def _program_dirs(spec: RunSpec, software: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for path in [*_named_paths(spec), *software]:
        if path not in found:
            found.append(path)
    return found


def _shared_entries(spec: RunSpec, policy: SandboxPolicy) -> list[str]:
    entries: list[str] = []
    for root in policy.shared_readonly:
        base = Path(os.path.abspath(root))
        for item in _named_paths(spec):
            path = Path(item)
            if not path.is_relative_to(base) or path == base:
                continue
            entry = str(base / path.relative_to(base).parts[0])
            if entry not in entries:
                entries.append(entry)
    return entries


class ProcessBackend:
    """Runs jobs as local processes in user, PID, mount (and optionally network) namespaces."""

    name = "process"

    def __init__(self, policy: SandboxPolicy | None = None) -> None:
        check_sandbox()
        self._policy = policy or SandboxPolicy()
        self._setpriv = shutil.which("setpriv")

    def confine(self, policy: SandboxPolicy) -> None:
        """Sets the host folders every later job must not see (see :class:`SandboxPolicy`)."""
        self._policy = policy

    def _full_policy(self) -> SandboxPolicy:
        return SandboxPolicy(hidden=(*self._policy.hidden, runtime_dir()),
                             shared_readonly=self._policy.shared_readonly)

    def _argv(self, spec: RunSpec) -> list[str]:
        argv = ["setpriv", "--pdeathsig", "KILL"] if self._setpriv else []
        argv += ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
                 "--pid", "--fork", "--kill-child", "--mount-proc"]
        if spec.network_isolation:
            argv.append("--net")
        return argv + ["--", sys.executable, "-I", "-S", str(INIT), *spec.command]

    def run(self, spec: RunSpec, sink: OutputSink, control: RunControl) -> RunResult:
        started = time.monotonic()
        env = dict(spec.env)
        # the plan travels in the environment (process 1 removes it), not in a command line the job can read
        env[PLAN_VARIABLE] = encode_plan(sandbox_plan(spec, self._full_policy(), software=_INTERPRETER_DIRS))
        if "TMPDIR" in env:
            env["TMPDIR"] = "/tmp"  # the host's temp dir is not there: the job has a private /tmp
        proc = subprocess.Popen(
            self._argv(spec),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=None if self._setpriv else _die_with_parent,
        )
        if spec.pidfile is not None:
            spec.pidfile.write_text(str(proc.pid))
        tail = _Tail()
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
            reader.join(timeout=5)  # the namespace is gone: nothing holds the pipes any more
        if spec.pidfile is not None:
            spec.pidfile.unlink(missing_ok=True)
        code = proc.returncode
        return RunResult(
            exit_code=128 - code if code < 0 else code,
            stopped=stopped,
            timed_out=timed_out,
            stderr_tail=tail.text(),
            elapsed=time.monotonic() - started,
        )


class _Tail:
    """The last lines of a stream, bounded in count and in length."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        with self._lock:
            self._lines.append(line[:TAIL_LINE_CHARS])
            if len(self._lines) > TAIL_LINES:
                del self._lines[0]

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)


def split_block(pending: bytearray, limit: int = MAX_PIECE) -> list[bytes]:
    """Removes and returns the complete lines of ``pending`` (newline kept) and the leading pieces
    of a line longer than ``limit`` bytes (cut before a UTF-8 character, never inside one)."""
    out: list[bytes] = []
    start = 0
    while True:
        newline = pending.find(b"\n", start, start + limit + 1)
        if newline >= 0:
            out.append(bytes(pending[start:newline + 1]))
            start = newline + 1
            continue
        if len(pending) - start <= limit:
            break
        end = start + limit
        while end > start + 1 and (pending[end] & 0xC0) == 0x80:
            end -= 1
        out.append(bytes(pending[start:end]))
        start = end
    del pending[:start]
    return out


def _pump(stream, sink: OutputSink, tail: _Tail | None) -> None:
    fd = stream.fileno()
    pending = bytearray()
    try:
        while True:
            block = os.read(fd, READ_BLOCK)
            if block:
                pending += block
                pieces = split_block(pending)
            else:
                pieces = [bytes(pending)] if pending else []
            for raw in pieces:
                line = raw.decode("utf-8", errors="replace")
                if tail is not None:
                    tail.append(line)
                sink(line.rstrip("\n"))
            if not block:
                break
    finally:
        stream.close()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _terminate(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM, SIGKILL after the grace period (as SageMaker does).

    The signal goes to ``unshare``'s process group: ``unshare`` waits (it blocks SIGTERM) and the
    namespace's process 1 passes it on to the job; SIGKILL ends process 1, and so the namespace.
    """
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
