"""Process 1 of a job sandbox: builds the job's view of the filesystem, then runs the job as its child.

Started by :class:`smlocal.runtime.backends.process.ProcessBackend` through ``unshare --user --mount
--pid --fork --mount-proc [--net]`` (in a job network: ``--uts``, inside the network's user and
the host's network namespace) as ``python -I -S sandbox_init.py COMMAND...``, so it runs as
root of a fresh user namespace, as pid 1 of a fresh PID namespace, with a private mount table. The
environment variable ``SMLOCAL_SANDBOX_PLAN`` (removed before the job starts) holds
:func:`smlocal.runtime.backends.sandbox_plan.sandbox_plan` in the text form of
:func:`smlocal.runtime.backends.sandbox_plan.encode_plan`. Every source of a bind or a layer is opened
(``O_PATH``) before the first step, then the steps run in order:

* before ``pivot``, in the new root (``SCRATCH/root``): ``root`` (the new root, a bind of that
  folder), ``dir`` (a folder, with the host folder's mode), ``link``, ``copy`` (a copy of a small
  file), ``layer SOURCE TARGET N`` (an overlay: lower layer the host's SOURCE, upper layer
  ``SCRATCH/upper/N``; where the kernel refuses it, a read-only bind and a line on stderr, the
  job's log), ``robind`` (a read-only bind);
* ``pivot``: ``pivot_root`` into the new root, the host's root kept under ``/.smlocal-oldroot``
  until the last step, then detached;
* after it, in the job's root: ``proc`` (the namespace's ``/proc`` moved in, ``/proc/sys``,
  ``/proc/sysrq-trigger``... read-only), ``sys`` (the host's ``/sys``, read-only), ``dev`` (a tmpfs
  with the harmless devices and a fresh ``devpts``), ``device PATH`` (the host's device node at
  ``PATH``, a GPU's), ``cover PATH`` (an empty tmpfs), ``blank
  PATH`` (``/dev/null`` over a file, read-only), ``bind SOURCE TARGET ro|rw``, ``layer`` again;
* ``seal``: covers remounted read-only once the binds inside them are in place;
* ``loopback``: bring ``lo`` up (network isolation: a namespace with only a loopback device);
* ``hostname NAME``: the host's name in its own UTS namespace (a host of a job network, whose
  namespaces :mod:`smlocal.runtime.backends.jobnet` made);
* ``workdir``: the job's working directory.

Then the job runs in a nested user and mount namespace: every mount above is locked there, so the
job (root of its own namespace) can neither unmount a cover nor make a read-only bind writable;
this process is not dumpable, so the job cannot ptrace it or open its ``/proc/1/fd``.
It forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the job (a process 1
ignores signals it has no handler for, so without forwarding StopTrainingJob's SIGTERM would not
reach a job that has none), reaps orphans, and exits with the job's exit status (128+N for a death
by signal N, as a shell reports it). Its exit ends the PID namespace: the kernel kills every
process left in it, forked and ``setsid`` children included.

Standard library only, and no ``site``: it starts in a few milliseconds.
"""

import ctypes
import os
import sys

import _signal  # the C module: ``signal`` imports enum, a few milliseconds on every job start

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 1, 2, 4, 8, 32, 4096, 8192, 16384
MS_NOATIME, MS_NODIRATIME = 1024, 2048
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MNT_DETACH, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY, SYS_MOUNT_SETATTR = 2, -100, 0x8000, 1, 442
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
PR_SET_DUMPABLE = 4
OLD_ROOT = "/.smlocal-oldroot"
FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
PROC_READ_ONLY = ("sys", "sysrq-trigger", "bus", "fs", "irq")
ARITY = {"root": 0, "dir": 1, "link": 2, "copy": 1, "layer": 3, "robind": 2, "pivot": 0, "proc": 0, "sys": 0, "dev": 0,
         "device": 1, "cover": 1, "blank": 1, "bind": 3}
SOURCED = ("layer", "robind", "bind")  # steps whose field 1 is a host path opened before the first step

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source, target, fstype, flags, data=None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {source} on {target}")


def decode_plan(text: str) -> dict:
    """The plan from its text form: one step a line, fields separated by tabs (no ``json``: fast)."""
    plan: dict = {"scratch": "", "steps": [], "seal": [], "loopback": False, "workdir": "/opt/ml", "hostname": None}
    for line in text.split("\n"):
        kind, *fields = line.split("\t")
        if kind in ARITY:
            if len(fields) != ARITY[kind]:
                raise ValueError(f"sandbox plan: {kind} takes {ARITY[kind]} fields: {fields!r}")
            if kind == "bind":
                fields[2] = fields[2] == "ro"
            elif kind == "layer":
                fields[2] = int(fields[2])
            plan["steps"].append([kind, *fields])
        elif kind == "seal":
            plan["seal"].append(fields[0])
        elif kind == "loopback":
            plan["loopback"] = True
        elif kind in ("workdir", "scratch", "hostname"):
            plan[kind] = fields[0]
    return plan


def source_order(plan: dict) -> list[int]:
    """The indices of the steps whose host source is opened before any step runs, in order."""
    return [i for i, step in enumerate(plan["steps"]) if step[0] in SOURCED]


class _View:
    """Carries out a plan; ``prefix`` is where the job's root is until ``pivot``, then ``""``."""

    def __init__(self, plan: dict) -> None:
        self.plan = plan
        self.notes: list[str] = []
        self.prefix = plan["scratch"] + "/root"
        self.scratch = os.open(plan["scratch"], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.sources: dict[int, int] = {}
        for i in source_order(plan):
            try:
                self.sources[i] = os.open(plan["steps"][i][1], os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                pass  # a mount gone since the plan was made (e.g. a container's root that just ended)
        self.null = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC)
        for name in ("upper", "work"):
            os.mkdir(name, 0o700, dir_fd=self.scratch)

    def build(self) -> None:
        for i, step in enumerate(self.plan["steps"]):
            if step[0] in SOURCED and i not in self.sources:
                continue  # its host source vanished: there is nothing to show
            getattr(self, "_" + step[0])(i, *step[1:])
        _check(_libc.umount2(OLD_ROOT.encode(), MNT_DETACH), "umount the host's root")
        os.rmdir(OLD_ROOT)
        for path in self.plan["seal"]:
            _mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        for fd in (self.scratch, self.null, *self.sources.values()):
            os.close(fd)

    def _fd(self, i: int) -> str:
        return f"/proc/self/fd/{self.sources[i]}"

    # ---- the new root, before the pivot
    def _root(self, _i) -> None:
        _mount(self.prefix, self.prefix, None, MS_BIND)

    def _dir(self, _i, path) -> None:
        target = self.prefix + path
        os.mkdir(target)
        try:
            os.chmod(target, os.stat(path).st_mode & 0o7777)
        except FileNotFoundError:
            pass  # gone from the host since the plan was made (a folder of a container that ended)

    def _link(self, _i, path, target) -> None:
        os.symlink(target, self.prefix + path)

    def _copy(self, _i, path) -> None:
        try:
            source = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return  # a file the server may not read: the job does not see it either
        try:
            mode = os.fstat(source).st_mode & 0o7777
            copy = os.open(self.prefix + path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                while os.sendfile(copy, source, None, 1 << 20):
                    pass
                os.fchmod(copy, mode & 0o777)  # no set-id bits on a copy
            finally:
                os.close(copy)
        finally:
            os.close(source)

    def _layer(self, i, source, target, index) -> None:
        where = self.prefix + target
        os.makedirs(where, exist_ok=True)
        for name in ("upper", "work"):
            os.mkdir(f"{name}/{index}", 0o755, dir_fd=self.scratch)
        scratch = f"/proc/self/fd/{self.scratch}"
        options = (f"lowerdir={self._fd(i)},upperdir={scratch}/upper/{index},workdir={scratch}/work/{index},"
                   "userxattr,volatile")
        try:
            _mount("smlocal-sandbox", where, "overlay", MS_NOSUID | MS_NODEV, options)
        except OSError as exc:
            self.notes.append(f"smlocal sandbox: {target} is shown read-only, copy-on-write is unavailable "
                              f"here ({exc.strerror})")
            self._robind(i, source, target)

    def _robind(self, i, _source, target) -> None:
        where = self.prefix + target
        folder = os.path.isdir(self._fd(i))
        try:
            if folder:
                os.makedirs(where, exist_ok=True)
            elif not os.path.exists(where):
                os.makedirs(os.path.dirname(where), exist_ok=True)
                os.close(os.open(where, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            _mount(self._fd(i), where, None, MS_BIND | MS_REC)
            _read_only(where)
        except OSError as exc:  # what is there instead is the job's own scratch, or copy-on-write
            self.notes.append(f"smlocal sandbox: {target} is not shown ({exc.strerror})")

    def _pivot(self, _i) -> None:
        os.mkdir(self.prefix + OLD_ROOT)
        number = SYS_PIVOT_ROOT.get(os.uname().machine)
        if number is None:
            raise OSError(38, f"pivot_root: unknown system call number on {os.uname().machine}")
        _check(_libc.syscall(number, self.prefix.encode(), (self.prefix + OLD_ROOT).encode()), "pivot_root")
        os.chdir("/")
        self.prefix = ""

    # ---- after the pivot, in the job's root
    def _proc(self, _i) -> None:
        _mount(OLD_ROOT + "/proc", "/proc", None, MS_MOVE)
        for name in PROC_READ_ONLY:
            path = "/proc/" + name
            if os.path.exists(path):
                _mount(path, path, None, MS_BIND | MS_REC)
                _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    def _sys(self, _i) -> None:
        _mount(OLD_ROOT + "/sys", "/sys", None, MS_BIND | MS_REC)
        _read_only("/sys")

    def _dev(self, _i) -> None:
        _mount("smlocal-sandbox", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755")
        for name in DEVICES:
            path = "/dev/" + name
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
            _mount(OLD_ROOT + path, path, None, MS_BIND)
        os.mkdir("/dev/pts")
        try:
            _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
            os.symlink("pts/ptmx", "/dev/ptmx")
        except OSError:
            pass  # no pseudo-terminals: nothing a batch job needs
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                             ("stderr", "/proc/self/fd/2")):
            os.symlink(target, "/dev/" + name)

    def _device(self, _i, path) -> None:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o666))
        _mount(OLD_ROOT + path, path, None, MS_BIND)

    def _cover(self, _i, path) -> None:
        os.makedirs(path, exist_ok=True)
        mode = "1777" if path in ("/tmp", "/dev/shm") else "755"
        _mount("smlocal-sandbox", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode}")

    def _blank(self, _i, path) -> None:
        _mount(f"/proc/self/fd/{self.null}", path, None, MS_BIND)
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)

    def _bind(self, i, _source, target, read_only) -> None:
        if os.path.isdir(self._fd(i)):
            os.makedirs(target, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        _mount(self._fd(i), target, None, MS_BIND | MS_REC)
        if read_only:
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _read_only(path: str) -> None:
    """Makes the mount at ``path`` and every mount under it read-only (only the top before 5.12)."""
    attr = (ctypes.c_uint64 * 4)(MOUNT_ATTR_RDONLY, 0, 0, 0)
    if _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, ctypes.byref(attr), 32) != 0:
        _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _locked_flags(path))


def _locked_flags(path: str) -> int:
    """The flags of the mount at ``path`` that a remount in a user namespace must keep."""
    flags = os.statvfs(path).f_flag
    return sum(bit for st, bit in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                                   (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME)) if flags & st)


def build_view(plan: dict) -> list[str]:
    """Carries out the plan (see the module docstring); returns the notes for the job's log."""
    view = _View(plan)
    view.build()
    if plan.get("loopback"):
        _loopback_up()
    if plan.get("hostname"):
        name = plan["hostname"].encode()
        _check(_libc.sethostname(name, len(name)), "sethostname")
    return view.notes


def _loopback_up() -> None:
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, 0x8913, request)[:18])[1]  # SIOCGIFFLAGS
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP


def _enter_nested_namespace() -> None:
    """A user + mount namespace of our own: the mounts made above become locked for the job."""
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def main(argv: list[str]) -> int:
    plan, command = decode_plan(os.environ.pop("SMLOCAL_SANDBOX_PLAN")), argv[1:]
    # blocked until the handlers exist: a SIGTERM that arrives during the set-up is kept, not lost
    _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED)
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the job must not ptrace the namespace's owner
    try:
        notes = build_view(plan)
        _enter_nested_namespace()
        os.chdir(plan["workdir"])
    except (OSError, ValueError) as exc:
        os.write(2, f"smlocal sandbox: {exc}\n".encode())
        return 125
    for note in notes:
        os.write(2, (note + "\n").encode())
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"smlocal sandbox: cannot run {command[0]}: {exc.strerror}\n".encode())
            os._exit(127)

    def forward(signum, _frame) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED:
        _signal.signal(signum, forward)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if pid == child:
            return _exit_code(status)


if __name__ == "__main__":
    os._exit(main(sys.argv))
