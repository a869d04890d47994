"""A job's private network on the process backend: the switch process, its hosts' namespaces, the relay.

:class:`JobNetwork` starts :mod:`smlocal.runtime.backends.jobnet_switch` (a bridge in a user and
network namespace of its own, one network namespace per host joined to it by a veth pair) and gives
each host a :class:`HostNetwork`: the namespaces its sandbox joins (``nsenter --user --net``), its
address and the ``/etc/hosts`` it sees. No privilege is needed: the user running smlocal owns every
namespace, as rootless container tools do; as root it is the same.

Inside a host's namespace its loopback is its own, so the loopback endpoints smlocal gives a job
for itself (:func:`jobnet_plan.relayed_endpoints`: smlocal's own settings, never the job's
request) would lead nowhere: the switch opens a listening socket on exactly those addresses and
ports in each host's namespace and hands it here, and each connection accepted on it is relayed to
the same endpoint on this machine's loopback. The gateway sees a client on loopback, as it sees a
job sharing the machine's network: the job gets no more than before, and nothing else of the
machine (no other loopback service, no other job) is reachable. With network isolation no socket
is opened: the hosts reach only each other. A network relays at most :data:`RELAYS_PER_HOST`
connections per host at once (a thread and an upstream connection each; its hosts share them):
one more is closed as soon as it is accepted, so a job that opens connections without end costs
the server a bounded number of threads and descriptors, and the gateway keeps answering everyone
else.

Everything dies with the job: the switch is killed on exit (and dies with smlocal's thread that
started it, ``setpriv --pdeathsig``), its holders with it; the bridge and the veth pairs are only in
those namespaces, never in the machine's, so a crash leaves no interface behind.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from smlocal.runtime.backends.base import JOB_MARKER_VARIABLE, JobNetworkUnavailable
from smlocal.runtime.backends.jobnet_plan import MAX_HOSTS, MTU, SUBNET_BITS, addresses, encode_endpoints, hosts_file

_log = logging.getLogger(__name__)

SWITCH = Path(__file__).with_name("jobnet_switch.py")
START_TIMEOUT = 30.0
RELAY_BLOCK = 256 * 1024
#: The connections a job network relays at once, per host (its hosts and endpoints share them): a
#: boto3 client keeps up to 10 open, so a host has room for a few.
RELAYS_PER_HOST = 32
# where iproute2 lives when the server's PATH lacks the sbin folders (an unprivileged user's often does)
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_USERNS_SWITCHES = (("/proc/sys/user/max_user_namespaces", "0", "this kernel allows no user namespaces"),
                    ("/proc/sys/kernel/unprivileged_userns_clone", "0",
                     "this kernel forbids unprivileged user namespaces"),
                    ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
                     "AppArmor forbids unprivileged user namespaces"))


@dataclass(frozen=True)
class HostNetwork:
    """One host's share of a job network.

    Attributes:
        name: the host's name (``algo-N``), also its ``hostname``.
        address: its address on the job's bridge.
        user_ns: the user namespace its sandbox joins (the switch's).
        net_ns: the network namespace its sandbox joins (its holder's).
        hosts_text: its ``/etc/hosts``.
    """

    name: str
    address: str
    user_ns: str
    net_ns: str
    hosts_text: str


def find_ip() -> str | None:
    """The ``ip`` program (iproute2), on ``PATH`` or in the sbin folders."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which("ip", path=path)


def network_problem() -> str | None:
    """Why this machine cannot give a job a private network, or None."""
    if find_ip() is None:
        return "the 'ip' command (iproute2) is not installed (apt-get install iproute2)"
    if shutil.which("nsenter") is None:
        return "the 'nsenter' command (util-linux) is not installed"
    for path, forbidden, why in _USERNS_SWITCHES:
        if path.endswith("max_user_namespaces") or os.getuid() != 0:
            try:
                if Path(path).read_text().strip() == forbidden:
                    return f"{why} ({path} is {forbidden})"
            except OSError:
                continue
    return None


class JobNetwork:
    """A context manager: the private network of one job's ``hosts`` while it is entered.

    Args:
        hosts: the job's host names, ``algo-1`` first.
        endpoints: the loopback ``(address, port)`` pairs of smlocal relayed into every host (empty
            with network isolation).
        marker: the job's ``SMLOCAL_JOB`` value, in the switch's environment as in every process
            of the job (how a job's processes are recognised).

    Raises:
        JobNetworkUnavailable: on entry, when the network cannot be made (the reason says why).
    """

    def __init__(self, hosts: tuple[str, ...], endpoints: tuple[tuple[str, int], ...] = (),
                 marker: str = "") -> None:
        self.hosts = hosts
        self.endpoints = endpoints
        self.marker = marker
        self._relays = threading.BoundedSemaphore(RELAYS_PER_HOST * max(1, len(hosts)))
        self._proc: subprocess.Popen | None = None
        self._listeners: list[socket.socket] = []
        self._members: dict[str, HostNetwork] = {}

    def host(self, name: str) -> HostNetwork:
        return self._members[name]

    def __enter__(self) -> JobNetwork:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        problem = network_problem()
        if problem is None and len(self.hosts) > MAX_HOSTS:
            problem = f"a job network holds at most {MAX_HOSTS} hosts"
        if problem:
            raise JobNetworkUnavailable(problem)
        by_name = addresses(self.hosts)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            argv = ["setpriv", "--pdeathsig", "KILL", "unshare", "--user", "--map-root-user", "--net", "--",
                    sys.executable, "-I", "-S", str(SWITCH), find_ip() or "ip", str(theirs.fileno()),
                    encode_endpoints(self.endpoints), str(MTU), str(SUBNET_BITS), *by_name.values()]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), JOB_MARKER_VARIABLE: self.marker}
            self._proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, pass_fds=(theirs.fileno(),),
                                          start_new_session=True)
            theirs.close()
            pids = self._wait_ready()
            if self.endpoints:
                self._take_listeners(ours)
        finally:
            ours.close()
            theirs.close()
        text = hosts_file(self.hosts)
        user_ns = f"/proc/{pids[0]}/ns/user"
        for (name, address), holder in zip(by_name.items(), pids[1:]):
            self._members[name] = HostNetwork(name, address, user_ns, f"/proc/{holder}/ns/net", text)

    def _wait_ready(self) -> list[int]:
        proc = self._proc
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline().decode(errors="replace") if ready else ""
        if not line.startswith("ready "):
            self._kill()
            why = proc.stderr.read().decode(errors="replace").strip()
            raise JobNetworkUnavailable(_reason(why) if ready else f"its switch did not start in {START_TIMEOUT:g} s")
        pids = [int(p) for p in line.split()[1:]]
        if len(pids) != len(self.hosts) + 1:
            raise JobNetworkUnavailable(f"its switch answered {line.strip()!r}")
        return pids

    def _take_listeners(self, channel: socket.socket) -> None:
        channel.settimeout(START_TIMEOUT)
        for _ in self.hosts:
            _, fds, _, _ = socket.recv_fds(channel, 64, len(self.endpoints))
            if len(fds) != len(self.endpoints):
                for fd in fds:
                    os.close(fd)
                raise JobNetworkUnavailable("a host's relay sockets did not arrive")
            for fd, endpoint in zip(fds, self.endpoints):
                os.set_inheritable(fd, False)  # received descriptors are inheritable: no other child gets one
                listener = socket.socket(fileno=fd)
                self._listeners.append(listener)
                threading.Thread(target=_accept, args=(listener, endpoint, self._relays),
                                 name=f"smlocal-jobnet-{endpoint[1]}", daemon=True).start()

    def close(self) -> None:
        """Ends the network: the relays stop accepting, the switch and its holders are killed."""
        for listener in self._listeners:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        self._listeners.clear()
        self._kill()
        if self._proc is not None:
            for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
                stream.close()

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


def _reason(stderr: str) -> str:
    """The switch's own words, with what they usually mean."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    text = lines[-1] if lines else "its switch ended at once"
    if "unshare failed" in text and ("Operation not permitted" in text or "No space left" in text):
        text += " (user namespaces are not allowed here, or their limit is reached)"
    return text


def _accept(listener: socket.socket, endpoint: tuple[str, int], relays: threading.BoundedSemaphore) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:  # closed: the job has ended
            return
        if not relays.acquire(blocking=False):  # the network's share is in use: this one is refused
            conn.close()
            continue
        try:
            threading.Thread(target=_relay, args=(conn, endpoint, relays), name="smlocal-jobnet-relay",
                             daemon=True).start()
        except RuntimeError:  # no thread to be had
            conn.close()
            relays.release()


def _relay(conn: socket.socket, endpoint: tuple[str, int], relays: threading.BoundedSemaphore) -> None:
    try:
        try:
            upstream = socket.create_connection(endpoint)
        except OSError:
            conn.close()
            return
        try:
            splice(conn, upstream)
        finally:
            conn.close()
            upstream.close()
    finally:
        relays.release()


def splice(a: socket.socket, b: socket.socket) -> None:
    """Copies bytes both ways between two connected sockets until both directions have ended."""
    poller = select.poll()
    peer = {a.fileno(): (a, b), b.fileno(): (b, a)}
    for fd in peer:
        poller.register(fd, select.POLLIN)
    live = len(peer)
    while live:
        for fd, _ in poller.poll():
            source, target = peer[fd]
            try:
                data = source.recv(RELAY_BLOCK)
            except OSError:
                data = b""
            if data:
                try:
                    target.sendall(data)
                    continue
                except OSError:
                    return
            poller.unregister(fd)
            live -= 1
            try:
                target.shutdown(socket.SHUT_WR)
            except OSError:
                pass
