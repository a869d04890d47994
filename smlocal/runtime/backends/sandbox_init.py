"""Process 1 of a job sandbox: builds the job's view of the filesystem, then runs the job as its child.

Started by :class:`smlocal.runtime.backends.process.ProcessBackend` through ``unshare --user --mount
--pid --fork --mount-proc [--net]`` as ``python -I -S sandbox_init.py COMMAND...``, so it runs as
root of a fresh user namespace, as pid 1 of a fresh PID namespace, with a private mount table. The
environment variable ``SMLOCAL_SANDBOX_PLAN`` (removed before the job starts) holds
:func:`smlocal.runtime.backends.process.sandbox_plan` in the text form of
:func:`smlocal.runtime.backends.process.encode_plan`:

* ``steps``, in order: ``["cover", path]`` mounts an empty tmpfs over ``path`` (a private ``/tmp``,
  the smlocal data dir...); ``["bind", source, target, read_only]`` a bind mount. Every source is
  opened before anything is covered, so a source under a covered path (a job folder under
  ``/tmp/smlocal``) is still reachable;
* ``seal``: covers remounted read-only once the binds inside them are in place;
* ``loopback``: bring ``lo`` up (network isolation: a namespace with only a loopback device);
* ``workdir``: the job's working directory.

Then the job runs in a nested user and mount namespace: every mount above is locked there, so the
job (root of its own namespace) can neither unmount a cover nor make a read-only bind writable.
This process forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the job (a process 1
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

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 32, 4096, 16384
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2)

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
    plan: dict = {"steps": [], "seal": [], "loopback": False, "workdir": "/opt/ml"}
    for line in text.split("\n"):
        kind, *fields = line.split("\t")
        if kind == "cover":
            plan["steps"].append(["cover", fields[0]])
        elif kind == "bind":
            plan["steps"].append(["bind", fields[0], fields[1], fields[2] == "ro"])
        elif kind == "seal":
            plan["seal"].append(fields[0])
        elif kind == "loopback":
            plan["loopback"] = True
        elif kind == "workdir":
            plan["workdir"] = fields[0]
    return plan


def build_view(plan: dict) -> None:
    """Carries out the plan's steps, then seals its covers (see the module docstring)."""
    steps = plan["steps"]
    sources = {i: os.open(step[1], os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
               for i, step in enumerate(steps) if step[0] == "bind"}
    for i, step in enumerate(steps):
        if step[0] == "cover":
            os.makedirs(step[1], exist_ok=True)
            mode = "1777" if step[1] in ("/tmp", "/dev/shm") else "755"
            _mount("smlocal-sandbox", step[1], "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode}")
            continue
        _, _, target, read_only = step
        os.makedirs(target, exist_ok=True)
        _mount(f"/proc/self/fd/{sources[i]}", target, None, MS_BIND | MS_REC)
        if read_only:
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(sources[i])
    for path in plan["seal"]:
        _mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    if plan.get("loopback"):
        _loopback_up()


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
    try:
        build_view(plan)
        _enter_nested_namespace()
        os.chdir(plan["workdir"])
    except OSError as exc:
        os.write(2, f"smlocal sandbox: {exc}\n".encode())
        return 125
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
