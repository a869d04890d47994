"""ProcessBackend: a job is a local process in a sandbox as tight as a container.

Each job runs under ``unshare --user --mount --pid --fork --kill-child --mount-proc [--net]``:

* a user namespace, root included, so the job holds no capability over anything of the host
  (it cannot ``setns()`` into the server's network namespace, nor remount what it sees);
* a PID namespace with its own ``/proc``: the job sees only its own processes, and when it ends
  every process it left (forked, ``setsid``) is killed;
* its own root filesystem (built by :mod:`smlocal.runtime.backends.sandbox_init`, the namespace's
  process 1, then ``pivot_root``), **copy-on-write over the host** like a container's writable
  layer: every folder of the host is an overlay whose lower layer is the host folder and whose
  upper layer is a per-job scratch folder on disk (``.NAME.sandbox`` next to the job's folder,
  removed when the job ends), so a job may write ``/root``, ``/etc``, smlocal's own virtualenv or
  ``pip install`` into its interpreter and the host never changes. Read-only host mounts are
  shown read-only. Where an overlay cannot be mounted (old kernel, odd filesystem) that folder is
  shown read-only and the job's log says so: never writable. (An overlay of a folder that holds
  a host mount is refused in a user namespace, and one that holds its own upper layer cannot show
  it: those folders are rebuilt one level at a time, each of their entries its own overlay.)
* a private ``/tmp`` (a folder in the scratch, on disk), ``/dev/shm`` (tmpfs) and ``/dev`` (only
  ``null zero full random urandom tty``, a fresh ``devpts``, and for a host given GPUs their
  NVIDIA device nodes: :func:`sandbox_plan.gpu_device_nodes`); ``/sys`` and ``/proc/sys``,
  ``/proc/sysrq-trigger``... read-only;
* empty read-only folders over the smlocal data dir (every job's folder, the state store) and the
  servers' runtime dir, and over the credentials of the user running smlocal,
  :data:`sandbox_plan.CREDENTIAL_PATHS` (cloud, git, registry and database keys, tokens, shell histories, the
  host's SSH keys, ``/etc/shadow``): a folder as an empty read-only tmpfs, a file as ``/dev/null``
  read-only, for the server's ``HOME`` and the job's. Other files of the home stay readable (the
  job runs the developer's software from it); a list, not a fresh home, so keys kept elsewhere are not covered.
  A job still gets the ``AWS_*`` environment smlocal gives it (its role), never its developer's keys;
* the job's folder on ``/opt/ml`` and the binds of its spec; the cached requirements environment
  it runs in (under the data dir) copy-on-write: what a job installs there is gone after it;
* with network isolation, a network namespace with only a loopback device: no route anywhere.
  Without it the job shares the host's network, as a container on the host network does;
* a job of several hosts (or any job under ``job-network = "always"``) on a private network of its
  own instead (:mod:`smlocal.runtime.backends.jobnet`, made around all hosts by :meth:`ProcessBackend.job_network`):
  each host joins its network namespace and the network's user namespace (``nsenter``), has its
  own UTS namespace (``hostname`` is ``algo-N``) and ``/etc/hosts`` naming its peers, and reaches
  smlocal on its loopback port and nothing else (with network isolation: only its peers). It has
  no capability over that namespace: it cannot change its interfaces or send raw packets.

``unshare`` dies with the server thread that started it (``setpriv --pdeathsig``), and its child,
the namespace's process 1, dies with ``unshare`` (``--kill-child``): no job outlives its server.
Output is read in fixed-size blocks and split into lines here; a line longer than a log event may
be is handed on in pieces, so a job printing a 50 MB line costs no 50 MB of memory.

What the sandbox is made of is planned, without touching the machine, by
:mod:`smlocal.runtime.backends.sandbox_plan`; this module reads the host, starts the processes and
tends them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from smlocal.auth import runtime_dir
from smlocal.runtime.backends.base import JOB_MARKER_VARIABLE, OutputSink, RunControl, RunResult, RunSpec, SandboxPolicy
from smlocal.runtime.backends.jobnet import HostNetwork, JobNetwork
from smlocal.runtime.backends.jobnet_plan import needs_network
from smlocal.runtime.backends.sandbox_plan import (HOSTS_FILE, SANDBOX_ROOT, HostFacts, SandboxUnavailable, encode_plan,
                                                   parse_mountinfo, sandbox_plan, scratch_dir)
from smlocal.runtime.logs import MAX_EVENT_BYTES

_log = logging.getLogger(__name__)

INIT = Path(__file__).with_name("sandbox_init.py")
READ_BLOCK = 64 * 1024
MAX_PIECE = MAX_EVENT_BYTES  # the longest piece of a line handed to the sink
TAIL_LINES, TAIL_LINE_CHARS = 200, 4096
PLAN_VARIABLE = "SMLOCAL_SANDBOX_PLAN"
_INTERPRETER_DIRS = tuple(dict.fromkeys(os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)))
# What a job's Python imports besides its interpreter: smlocal's own source (an editable install
# lives in its checkout, e.g. a CI clone under /tmp: the built-in algorithms run from it) and the
# server's import path.
SOFTWARE_DIRS = tuple(dict.fromkeys((*_INTERPRETER_DIRS, str(Path(__file__).resolve().parents[3]),
                                      *(os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)))))


def check_sandbox() -> None:
    """Ensures /opt/ml exists as a mount point and ``unshare`` can make a mount namespace."""
    for command in ("unshare", "setpriv"):
        if shutil.which(command) is None:
            raise SandboxUnavailable(f"the '{command}' command (util-linux) is not installed")
    try:
        os.makedirs(SANDBOX_ROOT, exist_ok=True)
    except OSError as exc:
        raise SandboxUnavailable(
            f"/opt/ml does not exist and cannot be created ({exc}); create it once with "
            "'sudo mkdir -p /opt/ml'"
        ) from exc


def local_host_facts() -> HostFacts:
    """The facts of this machine a sandbox plan needs (its mounts, its files)."""
    with open("/proc/self/mountinfo") as handle:
        mounts = parse_mountinfo(handle.read())
    return HostFacts(mounts=mounts, kind=_path_kind, listdir=os.listdir, readlink=os.readlink)


def _path_kind(path: str) -> str | None:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else None


class ProcessBackend:
    """Runs jobs as local processes in user, PID, mount (and optionally network) namespaces."""

    name = "process"
    runs_images = False  # the runners map the image to this machine's software (runtime.images)

    def __init__(self, policy: SandboxPolicy | None = None) -> None:
        check_sandbox()
        self._policy = policy or SandboxPolicy()

    def image_problem(self, image: str | None) -> str | None:
        """None: which images run as local processes is the runners' mapping (:mod:`runtime.images`)."""
        return None

    def confine(self, policy: SandboxPolicy) -> None:
        """Sets the host folders every later job must not see (see :class:`SandboxPolicy`)."""
        self._policy = policy

    def sweep(self, job_folder: Path) -> None:
        """Removes the copy-on-write scratch folders a dead server's runs left under ``job_folder``."""
        remove_leftover_scratch(job_folder)

    def _full_policy(self) -> SandboxPolicy:
        return dataclasses.replace(self._policy, hidden=(*self._policy.hidden, runtime_dir()))

    @contextlib.contextmanager
    def job_network(self, specs: list[RunSpec]) -> Iterator[list[RunSpec]]:
        """The job's private network while its hosts run (see :mod:`jobnet`), when it needs one:
        several hosts, a host that asks for one (:attr:`RunSpec.own_network`), or any job under
        ``job-network = "always"``; else ``specs`` unchanged.

        Raises:
            JobNetworkUnavailable: the network cannot be made here (the job's FailureReason).
        """
        hosts = specs[0].all_hosts if specs else ()
        if not specs or not needs_network(hosts, self._policy.job_network,
                                          asked=any(spec.own_network for spec in specs)):
            yield specs
            return
        # smlocal's own endpoints (the policy's), never the job's environment: its request fills that
        endpoints = () if specs[0].network_isolation else self._policy.relayed_endpoints
        with JobNetwork(hosts, endpoints, marker=specs[0].env.get(JOB_MARKER_VARIABLE, "")) as network:
            yield [dataclasses.replace(spec, network=network.host(spec.hostname)) for spec in specs]

    def _argv(self, spec: RunSpec) -> list[str]:
        argv = ["setpriv", "--pdeathsig", "KILL",  # the job dies with the server thread that started it
                "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
                 "--pid", "--fork", "--kill-child", "--mount-proc"]
        net: HostNetwork | None = spec.network
        if net is not None:
            # inside the job network's user namespace (its owner's, so no privilege is needed) and
            # this host's network namespace; its own UTS namespace for its host name
            argv = ["nsenter", "--preserve-credentials", f"--user={net.user_ns}", f"--net={net.net_ns}", "--",
                    *argv, "--uts"]
        elif spec.network_isolation:
            argv.append("--net")
        return argv + ["--", sys.executable, "-I", "-S", str(INIT), *spec.command]

    def run(self, spec: RunSpec, sink: OutputSink, control: RunControl) -> RunResult:
        scratch = scratch_dir(spec)
        _remove_tree(scratch)  # left by a server that died during a job
        scratch.mkdir(mode=0o700)
        try:
            (scratch / "root").mkdir()
            (scratch / "tmp").mkdir()
            os.chmod(scratch / "tmp", 0o1777)
            if spec.network is not None:
                (scratch / HOSTS_FILE).write_text(spec.network.hosts_text)
            return self._run(spec, sink, control)
        finally:
            _remove_tree(scratch)

    def _run(self, spec: RunSpec, sink: OutputSink, control: RunControl) -> RunResult:
        started = time.monotonic()
        env = dict(spec.env)
        plan = sandbox_plan(spec, self._full_policy(), local_host_facts(), software=SOFTWARE_DIRS)
        # the plan travels in the environment (process 1 removes it), not in a command line the job can read
        env[PLAN_VARIABLE] = encode_plan(plan)
        if "TMPDIR" in env:
            env["TMPDIR"] = "/tmp"  # the host's temp dir is not there: the job has a private /tmp
        if spec.gpus:  # only its GPUs' nodes are there: CUDA numbers those from 0, as in a container
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(spec.gpus)))
        proc = subprocess.Popen(
            self._argv(spec),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
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


def remove_leftover_scratch(job_folder: Path) -> int:
    """Removes the scratch folders a dead server's jobs left under ``job_folder``; returns how many."""
    leftovers = sorted(job_folder.glob(".*.sandbox")) if job_folder.is_dir() else []
    for path in leftovers:
        _remove_tree(path)
    return len(leftovers)


def _remove_tree(path: Path) -> None:
    """Removes a scratch folder, whatever modes the job (or overlayfs: ``work/*/work`` is mode 0) left."""
    if not os.path.lexists(path):
        return
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return
    for folder, dirs, _ in os.walk(path):  # not root: no permission to enter mode-0 folders
        for name in dirs:
            child = os.path.join(folder, name)
            if not os.path.islink(child):
                os.chmod(child, 0o700)
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        _log.warning("could not remove the job scratch folder %s", path)



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
