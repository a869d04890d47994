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
  NVIDIA device nodes: :func:`gpu_device_nodes`); ``/sys`` and ``/proc/sys``,
  ``/proc/sysrq-trigger``... read-only;
* empty read-only folders over the smlocal data dir (every job's folder, the state store) and the
  servers' runtime dir, and over the credentials of the user running smlocal,
  :data:`CREDENTIAL_PATHS` (cloud, git, registry and database keys, tokens, shell histories, the
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterator, Sequence

from smlocal.auth import runtime_dir
from smlocal.runtime.backends.base import JOB_MARKER_VARIABLE, OutputSink, RunControl, RunResult, RunSpec, SandboxPolicy
from smlocal.runtime.backends.jobnet import HostNetwork, JobNetwork
from smlocal.runtime.backends.jobnet_plan import needs_network
from smlocal.runtime.logs import MAX_EVENT_BYTES

_log = logging.getLogger(__name__)

INIT = Path(__file__).with_name("sandbox_init.py")
SANDBOX_ROOT = "/opt/ml"
READ_BLOCK = 64 * 1024
MAX_PIECE = MAX_EVENT_BYTES  # the longest piece of a line handed to the sink
TAIL_LINES, TAIL_LINE_CHARS = 200, 4096
PLAN_VARIABLE = "SMLOCAL_SANDBOX_PLAN"
HOSTS_FILE = "hosts"  # in the scratch folder: a host's /etc/hosts in a job network
_INTERPRETER_DIRS = tuple(dict.fromkeys(os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)))
# What a job's Python imports besides its interpreter: smlocal's own source (an editable install
# lives in its checkout, e.g. a CI clone under /tmp: the built-in algorithms run from it) and the
# server's import path.
SOFTWARE_DIRS = tuple(dict.fromkeys((*_INTERPRETER_DIRS, str(Path(__file__).resolve().parents[3]),
                                      *(os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)))))
PRIVATE_DIRS = ("/tmp", "/dev/shm")  # a fresh empty one per job
# never taken from the host's tree as they are; /run in particular holds the host's Unix sockets (docker,
# dbus, systemd): a socket is reachable through an overlay or a read-only bind, so a job gets a fresh /run
REPLACED_DIRS = ("/proc", "/sys", "/dev", "/tmp", "/run")
# container engines' state: other containers' root filesystems (jobs of the Docker backend among them),
# whose mounts come and go while a job starts; a job sees these folders empty
CONTAINER_STATE_DIRS = ("/var/lib/docker", "/var/lib/containerd", "/var/lib/containers")
#: Where the user running smlocal keeps credentials (``~`` is the server's and the job's ``HOME``):
#: a job sees each as an empty read-only folder, or an empty read-only file.
CREDENTIAL_PATHS = ("~/.aws", "~/.ssh", "~/.gnupg", "~/.docker", "~/.kube", "~/.config/gcloud", "~/.azure",
                    "~/.config/gh", "~/.config/hub", "~/.config/rclone", "~/.databrickscfg", "~/.boto", "~/.s3cfg",
                    "~/.huggingface/token", "~/.cache/huggingface/token", "~/.npmrc", "~/.pgpass", "~/.my.cnf",
                    "~/.netrc", "~/.pypirc", "~/.git-credentials", "~/.bash_history", "~/.zsh_history",
                    "~/.python_history", "/etc/ssh", "/etc/shadow", "/etc/gshadow")
#: The NVIDIA driver's nodes a CUDA program opens besides its GPUs' (those this machine has).
NVIDIA_CONTROL_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
COPY_LIMIT = 1 << 20  # a file beside the folders rebuilt entry by entry: copied up to this size, else read-only
_SKIPPED_FSTYPES = frozenset({"autofs", "nsfs", "binfmt_misc"})


class SandboxUnavailable(RuntimeError):
    """The machine cannot give a job a private /opt/ml."""


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


@dataclass(frozen=True)
class Mount:
    """One line of ``/proc/self/mountinfo``: where, which filesystem, read-only or not."""

    point: str
    fstype: str
    read_only: bool


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """The mounts of a ``/proc/self/mountinfo`` text (octal escapes such as ``\\040`` decoded)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        point = _unescape(fields[4])
        mounts.append(Mount(point, fields[sep + 1], "ro" in fields[5].split(",")))
    return tuple(mounts)


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit() and len(text[i + 1:i + 4]) == 3:
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class HostFacts:
    """What a plan needs to know of the host; :meth:`local` reads the real one.

    Attributes:
        mounts: the host's mounts (:func:`parse_mountinfo`).
        kind: ``"dir"``, ``"file"``, ``"link"`` or ``None`` (absent, or another type) for a path,
            not following a last symbolic link.
        listdir: the names in a folder.
        readlink: a symbolic link's target.
        realpath: a path with every link resolved.
        home: the home of the user running smlocal.
        size: a file's size in bytes.
    """

    mounts: tuple[Mount, ...]
    kind: Callable[[str], str | None]
    listdir: Callable[[str], list[str]]
    readlink: Callable[[str], str]
    realpath: Callable[[str], str] = os.path.realpath
    home: str = field(default_factory=lambda: os.path.expanduser("~"))
    size: Callable[[str], int] = os.path.getsize

    @classmethod
    def local(cls) -> HostFacts:
        with open("/proc/self/mountinfo") as handle:
            mounts = parse_mountinfo(handle.read())
        return cls(mounts=mounts, kind=_path_kind, listdir=os.listdir, readlink=os.readlink)


def _path_kind(path: str) -> str | None:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else None


def scratch_dir(spec: RunSpec) -> Path:
    """The job's scratch folder on disk (upper layers, ``/tmp``), next to its host folder."""
    return spec.opt_ml.parent / f".{spec.opt_ml.name}.sandbox"


def sandbox_plan(spec: RunSpec, policy: SandboxPolicy, host: HostFacts, *, software: tuple[str, ...] = ()) -> dict:
    """The plan :mod:`sandbox_init` carries out for ``spec`` (pure: the host is ``host``).

    ``steps``, in order:

    1. the new root, built in the scratch folder before ``pivot_root``: ``root``; then, for each
       entry of ``/`` and, down to every host mount, the scratch folder and the home, of each
       folder on the way: ``dir`` (a folder of the new root itself: such a folder on the way, a
       place for a later mount, an empty host folder), ``link`` (the same symbolic link),
       ``layer`` (an overlay of the host entry, upper layer in the scratch), ``copy`` (a copy of
       a file of at most :data:`COPY_LIMIT` bytes) or ``robind`` (a read-only bind: a larger file,
       a host mount of a file, a read-only host mount);
    2. ``pivot`` (the host's root stays reachable to the plan's sources until the end), ``proc``,
       ``sys``, ``dev``, ``device`` (the host's GPUs' nodes, :func:`gpu_device_nodes`), ``cover /dev/shm``;
    3. the job's ``/tmp`` (a bind of the scratch's ``tmp``); ``layer`` of the folders its
       programs live in when they lie under ``/tmp`` (a virtualenv or a checkout: the command,
       ``PATH``, ``PYTHONPATH``, ``VIRTUAL_ENV``, ``software``); ``cover`` of the hidden folders
       and the credential folders, ``blank`` of the credential files (a hidden folder under
       ``/tmp`` needs one only inside such a layer); the job's folder on ``/opt/ml``, then the
       spec's binds (which may lie inside ``/opt/ml``); ``layer`` of the entries of
       ``shared_copy_on_write`` the job names.

    Every bind source is opened before the first step, so a source under a covered path works.

    Returns:
        ``{"scratch": str, "steps": [[kind, *fields], ...], "seal": [...], "loopback": bool,
        "workdir": str, "hostname": str | None}``; ``seal`` lists the covers made read-only at the
        end; ``hostname`` is set in a job network (a bind of the job's ``/etc/hosts`` follows
        ``/opt/ml`` then).
    """
    scratch = host.realpath(str(scratch_dir(spec)))
    exists = lambda p: host.kind(host.realpath(p)) is not None  # noqa: E731
    hidden_all = [os.path.abspath(p) for p in (*policy.hidden, scratch)]
    hidden_real = [host.realpath(p) for p in hidden_all]
    layers = _Layers()
    steps = _root_steps(scratch, hidden_real, host, layers)
    steps += [["pivot"], ["proc"], ["sys"], ["dev"]]
    steps += [["device", path] for path in gpu_device_nodes(spec.gpus, _dev_names(host) if spec.gpus else ())]
    steps += [["cover", "/dev/shm"], ["cover", "/run"], ["bind", f"{scratch}/tmp", "/tmp", False]]
    programs = _program_dirs(spec, software)
    kept = [d for d in programs if any(_inside(d, p) and d != p for p in PRIVATE_DIRS)]
    kept = [d for d in kept if not any(_inside(d, o) and d != o for o in kept)]  # outermost only
    kept = [d for d in kept if host.kind(host.realpath(d)) == "dir"]
    steps += [["layer", d, d, layers.next()] for d in kept]
    visible = lambda p: not any(_inside(p, q) for q in PRIVATE_DIRS) or any(_inside(p, d) for d in kept)  # noqa: E731
    hidden = [p for p in hidden_all[:-1] if exists(p) and visible(p)]
    covers, blanks = _credentials(spec, host, visible)
    covers = [p for p in covers if p not in hidden]
    steps += [["cover", p] for p in hidden + covers]
    steps += [["blank", p] for p in blanks]
    steps.append(["bind", os.path.abspath(spec.opt_ml), SANDBOX_ROOT, False])
    if spec.network is not None:  # its peers by name (the scratch's copy, written by the backend)
        steps.append(["bind", f"{scratch}/{HOSTS_FILE}", "/etc/hosts", False])
    steps += [["bind", os.path.abspath(src), target, False] for src, target in spec.binds]
    steps += [["layer", entry, entry, layers.next()] for entry in _shared_entries(spec, policy)]
    networked = spec.network is not None  # a job network's host: its lo is up, not its own to change
    return {"scratch": scratch, "steps": steps, "seal": hidden + covers,
            "loopback": spec.network_isolation and not networked, "workdir": spec.workdir,
            "hostname": spec.hostname if networked else None}


def gpu_device_nodes(gpus: Sequence[str], present: Collection[str]) -> list[str]:
    """The ``/dev`` nodes of this machine a host given the GPUs ``gpus`` sees in its sandbox (pure).

    The driver's control nodes (:data:`NVIDIA_CONTROL_DEVICES`) and ``/dev/nvidiaN`` for each GPU,
    those of them in ``present`` (the names in this machine's ``/dev``); none without GPUs.
    ``gpus`` are nvidia-smi's indices (:func:`smlocal.runtime.gpus.machine_gpus`), taken as the
    nodes' minor numbers: on a typical machine both follow the PCI bus order (the driver's
    ``/proc/driver/nvidia/gpus/*/information`` gives each GPU's "Device Minor" where they differ).
    """
    if not gpus:
        return []
    wanted = [*NVIDIA_CONTROL_DEVICES, *(f"nvidia{index}" for index in gpus)]
    return [f"/dev/{name}" for name in dict.fromkeys(wanted) if name in present]


def _dev_names(host: HostFacts) -> list[str]:
    try:
        return host.listdir("/dev")
    except OSError:
        return []


class _Layers:
    def __init__(self) -> None:
        self.count = 0

    def next(self) -> int:
        self.count += 1
        return self.count


def _root_steps(scratch: str, hidden: list[str], host: HostFacts, layers: _Layers) -> list[list]:
    """Step 1 of :func:`sandbox_plan`: the new root, copy-on-write over the host.

    A folder that holds a host mount, or the scratch folder, is rebuilt entry by entry: in a user
    namespace the kernel refuses an overlay (or a plain bind) of a folder with mounts inside it
    (they are locked there), and an overlay cannot show a folder that holds its own upper layer.
    """
    by_point = {m.point: m for m in host.mounts}
    placeholders = (*REPLACED_DIRS, *CONTAINER_STATE_DIRS, *hidden)
    # the home is a layer of its own: an unprivileged user may write there, and its parents are
    # usually root's, which the user's namespace cannot copy up (EOVERFLOW)
    split = {scratch, host.realpath(host.home), *(m.point for m in host.mounts)}
    steps: list[list] = [["root"]]

    def walk(folder: str) -> None:
        try:
            names = sorted(host.listdir(folder))
        except OSError:  # a folder the server may not read: the job sees it empty
            names = []
        for name in names:
            path = os.path.join(folder, name)
            kind = host.kind(path)
            mount = by_point.get(path)
            if kind == "link":
                steps.append(["link", path, host.readlink(path)])
            elif kind == "dir" and path in placeholders:
                steps.append(["dir", path])
            elif kind == "dir" and any(_inside(p, path) and p != path for p in split):
                steps.append(["dir", path])
                walk(path)
            elif mount is not None and mount.fstype in _SKIPPED_FSTYPES:
                continue
            elif kind == "file" and mount is None and _size(host, path) <= COPY_LIMIT:
                steps.append(["copy", path])  # copy-on-write of a small file: a copy in the scratch
            elif kind == "file" or (kind == "dir" and mount is not None and mount.read_only):
                steps.append(["robind", path, path])
            elif kind == "dir" and mount is None and _empty(host, path):
                steps.append(["dir", path])  # the same as an overlay of it, without the mount
            elif kind == "dir":
                steps.append(["layer", path, path, layers.next()])

    walk("/")
    return steps


def _size(host: HostFacts, path: str) -> int:
    try:
        return host.size(path)
    except OSError:
        return COPY_LIMIT + 1


def _empty(host: HostFacts, path: str) -> bool:
    try:
        return not host.listdir(path)
    except OSError:
        return False


def _credentials(spec: RunSpec, host: HostFacts, visible: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """The credential folders to cover and files to blank (:data:`CREDENTIAL_PATHS`), real paths."""
    homes = [host.home, spec.env.get("HOME", "")]
    covers: list[str] = []
    blanks: list[str] = []
    for home in dict.fromkeys(os.path.abspath(h) for h in homes if h.startswith("/")):
        for entry in CREDENTIAL_PATHS:
            path = host.realpath(home + entry[1:] if entry.startswith("~") else entry)
            kind = host.kind(path)
            target = covers if kind == "dir" else blanks if kind == "file" else None
            if target is not None and path not in target and visible(path):
                target.append(path)
    return covers, blanks


def encode_plan(plan: dict) -> str:
    """The plan as text for :func:`sandbox_init.decode_plan`: a line a step, tab-separated fields.

    Raises:
        SandboxUnavailable: a path holds a tab or a newline (the text form cannot carry it).
    """
    rows: list[list[str]] = [["scratch", plan["scratch"]]]
    for step in plan["steps"]:
        rows.append([("ro" if f else "rw") if isinstance(f, bool) else str(f) for f in step])
    rows += [["seal", path] for path in plan["seal"]]
    rows += [["loopback"]] if plan["loopback"] else []
    rows += [["hostname", plan["hostname"]]] if plan.get("hostname") else []
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
    for root in policy.shared_copy_on_write:
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
        several hosts, or any job under ``job-network = "always"``; else ``specs`` unchanged.

        Raises:
            JobNetworkUnavailable: the network cannot be made here (the job's FailureReason).
        """
        hosts = specs[0].all_hosts if specs else ()
        if not specs or not needs_network(hosts, self._policy.job_network):
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
        plan = sandbox_plan(spec, self._full_policy(), HostFacts.local(), software=SOFTWARE_DIRS)
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
