"""The switch of a job network: a bridge in a namespace of its own, one network namespace per host.

Started by :class:`smlocal.runtime.backends.jobnet.JobNetwork` as ``unshare --user --map-root-user
--net -- python -I -S jobnet_switch.py IP CHANNEL_FD ENDPOINTS MTU PREFIX_BITS ADDRESS...``: it is root of
a user namespace the user running smlocal owns (no privilege on the machine needed) with a network
namespace holding only the bridge ``br0``. For each address it forks a *holder*, which makes a
network namespace of its own (owned by the same user namespace), and joins it to the bridge by a
veth pair (``hN`` on the bridge, ``eth0`` in the host's namespace; one ``ip -batch``). Each holder
then brings ``lo`` and ``eth0`` up with its address, lets any port be bound there (as Docker sets
``net.ipv4.ip_unprivileged_port_start=0`` in a container), opens a listening TCP socket on each
``ADDRESS:PORT`` of ``ENDPOINTS`` in its namespace (:func:`parse_endpoints`; may be empty: smlocal's
loopback endpoints) and hands them to smlocal over the ``CHANNEL_FD`` socket (``SOCK_SEQPACKET``,
one message per host: its 1-based index, the sockets as ``SCM_RIGHTS``), then closes its end of
that socket; smlocal accepts on them and relays each connection to the same endpoint of its own
loopback.

When every host is ready it prints ``ready SWITCH_PID HOLDER_PID...`` (process ids of the machine:
no PID namespace here) and waits for its standard input to close; the host sandboxes join
``/proc/SWITCH_PID/ns/user`` and ``/proc/HOLDER_PID/ns/net``. Holders die with the switch
(``PR_SET_PDEATHSIG``, and the end of their pipe), the switch with smlocal's thread that started it
(``setpriv --pdeathsig``). The bridge and the veth pairs live only in these namespaces: nothing of
a job network is ever in the machine's own.

Standard library only, and no ``site``: it starts in a few milliseconds.
"""

import array
import ctypes
import fcntl
import os
import socket
import struct
import sys

CLONE_NEWNET, PR_SET_PDEATHSIG, SIGKILL = 0x40000000, 1, 9
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFADDR, SIOCSIFNETMASK = 0x8913, 0x8914, 0x8916, 0x891C
IFF_UP = 1
BRIDGE = "br0"

_libc = ctypes.CDLL(None, use_errno=True)


class SwitchError(Exception):
    """A step of the network could not be made (the message says which and why)."""


def _ifreq_address(name: str, address: str) -> bytes:
    return struct.pack("16sH2s4s8s", name.encode(), socket.AF_INET, b"\0\0", socket.inet_aton(address),
                       b"\0" * 8).ljust(40, b"\0")


def _up(sock: socket.socket, name: str) -> None:
    request = struct.pack("16sH", name.encode(), 0).ljust(40, b"\0")
    flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", name.encode(), flags | IFF_UP).ljust(40, b"\0"))


def _configure(address: str, prefix_bits: int) -> None:
    """``lo`` up; ``eth0`` up with ``address``/``prefix_bits`` (the kernel adds the subnet's route)."""
    mask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefix_bits)) & 0xFFFFFFFF))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _up(sock, "lo")
        fcntl.ioctl(sock, SIOCSIFADDR, _ifreq_address("eth0", address))
        fcntl.ioctl(sock, SIOCSIFNETMASK, _ifreq_address("eth0", mask))
        _up(sock, "eth0")
    try:  # any port may be bound in the host's namespace, as in a Docker container (sshd's 22 too)
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as knob:
            knob.write("0")
    except FileNotFoundError:  # kernels before 4.11: only the namespace's root binds below 1024
        pass


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    """``ADDRESS:PORT,...`` (:func:`smlocal.runtime.backends.jobnet_plan.encode_endpoints`) as pairs."""
    found = []
    for item in filter(None, text.split(",")):
        address, _, port = item.rpartition(":")
        found.append((address, int(port)))
    return found


def _hold(parent: int, index: int, address: str, prefix_bits: int, endpoints: list[tuple[str, int]],
          channel: socket.socket, ready_w: int, go_r: int) -> int:
    """A holder: its own network namespace, configured once the switch says go; then it waits."""
    _libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        return 1
    if _libc.unshare(CLONE_NEWNET) != 0:
        raise SwitchError(f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())}")
    os.write(ready_w, b"n")
    if os.read(go_r, 1) != b"g":
        return 1
    _configure(address, prefix_bits)
    listeners = []
    for host, port in endpoints:
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((host, port))
        listener.listen(128)
        listeners.append(listener)
    if listeners:
        channel.sendmsg([str(index).encode()],
                        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [s.fileno() for s in listeners]))])
    channel.close()  # its sockets are smlocal's now: the holder keeps nothing of the channel
    for listener in listeners:
        listener.close()
    os.write(ready_w, b"c")
    while os.read(go_r, 1):  # until the switch ends (end of file)
        pass
    return 0


def _run_ip(ip: str, batch: str) -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(read_end, 0)
        os.execv(ip, [ip, "-batch", "-"])
    os.close(read_end)
    os.write(write_end, batch.encode())
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SwitchError(f"{ip} -batch failed (exit {os.waitstatus_to_exitcode(status)})")


def main(argv: list[str]) -> int:
    ip, channel_fd, endpoints_text, mtu, prefix_bits, *addresses = argv[1:]
    endpoints = parse_endpoints(endpoints_text)
    channel = socket.socket(fileno=int(channel_fd))
    me = os.getpid()
    holders: list[tuple[int, int, int]] = []  # (pid, ready read end, go write end)
    for index, address in enumerate(addresses, start=1):
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            for _, other_r, other_w in holders:
                os.close(other_r)
                os.close(other_w)
            os.close(ready_r)
            os.close(go_w)
            try:
                code = _hold(me, index, address, int(prefix_bits), endpoints, channel, ready_w, go_r)
            except (OSError, SwitchError) as exc:
                os.write(2, f"smlocal job network: host {index}: {exc}\n".encode())
                code = 1
            os._exit(code)
        os.close(ready_w)
        os.close(go_r)
        holders.append((pid, ready_r, go_w))
    for index, (_, ready_r, _) in enumerate(holders, start=1):
        if os.read(ready_r, 1) != b"n":
            raise SwitchError(f"host {index}'s network namespace could not be made")
    batch = [f"link add {BRIDGE} mtu {mtu} type bridge", f"link set {BRIDGE} up"]
    for index, (pid, _, _) in enumerate(holders, start=1):
        batch += [f"link add h{index} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {pid}",
                  f"link set h{index} master {BRIDGE}", f"link set h{index} up"]
    _run_ip(ip, "\n".join(batch) + "\n")
    for _, _, go_w in holders:
        os.write(go_w, b"g")
    for index, (_, ready_r, _) in enumerate(holders, start=1):
        if os.read(ready_r, 1) != b"c":
            raise SwitchError(f"host {index}'s network could not be configured")
    channel.close()
    os.write(1, ("ready " + " ".join(str(p) for p in (me, *(h[0] for h in holders))) + "\n").encode())
    while os.read(0, 4096):  # until smlocal closes our standard input (or dies: pdeathsig)
        pass
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv)
    except (OSError, SwitchError, ValueError) as exc:
        os.write(2, f"smlocal job network: {exc}\n".encode())
        code = 1
    os._exit(code)
