"""The sandbox plan (pure): what a job's filesystem is made of, in which order, and its text form.

:func:`sandbox_plan` turns a job's :class:`RunSpec`, the :class:`SandboxPolicy` and the facts of the
host (:class:`HostFacts`, read by :func:`smlocal.runtime.backends.process.local_host_facts`) into the
steps :mod:`smlocal.runtime.backends.sandbox_init` carries out (mounts, overlays, device nodes, covers
of :data:`CREDENTIAL_PATHS`, the host name); :func:`encode_plan` is its text form. Nothing here reads
or changes the machine: :class:`smlocal.runtime.backends.process.ProcessBackend` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Sequence

from smlocal.runtime.backends.base import RunSpec, SandboxPolicy

SANDBOX_ROOT = "/opt/ml"
HOSTS_FILE = "hosts"  # in the scratch folder: a host's /etc/hosts in a job network
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
    """What a plan needs to know of the host (:func:`smlocal.runtime.backends.process.local_host_facts`: the real one).

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
