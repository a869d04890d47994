"""The shape of a job's private network (pure): who needs one, addresses, ``/etc/hosts``, relayed endpoints.

Every job network is its own: a bridge in a namespace of its own, each host in a namespace joined
to it by a veth pair, nothing linking it to the machine's network or to another job's. The same
addresses therefore serve every job (:data:`SUBNET`): they can never meet.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable
from urllib.parse import urlsplit

from smlocal.auth import is_loopback

#: Every job network's addresses: host ``algo-N`` is ``10.200.H.L`` with ``H*256 + L = N``.
SUBNET_PREFIX, SUBNET_BITS = "10.200", 16
#: The link's MTU: EC2's jumbo frames inside a VPC (9001 bytes), as the hosts of a cluster on AWS see it.
MTU = 9001
MAX_HOSTS = (1 << (32 - SUBNET_BITS)) - 2


def needs_network(hosts: tuple[str, ...], mode: str, *, asked: bool = False) -> bool:
    """Whether a job of ``hosts`` gets a private network under the ``job-network`` ``mode``
    (:data:`smlocal.config.JOB_NETWORK_MODES`); ``asked``: the job needs one even alone."""
    return len(hosts) > 1 or mode == "always" or asked


def host_address(index: int) -> str:
    """The address of the ``index``-th host (1-based: ``algo-1`` is 1).

    Raises:
        ValueError: ``index`` is outside 1..:data:`MAX_HOSTS`.
    """
    if not 1 <= index <= MAX_HOSTS:
        raise ValueError(f"a job network holds 1 to {MAX_HOSTS} hosts, not {index}")
    return f"{SUBNET_PREFIX}.{index >> 8}.{index & 255}"


def addresses(hosts: tuple[str, ...]) -> dict[str, str]:
    """Each host name's address, in the order of ``hosts``."""
    return {name: host_address(i) for i, name in enumerate(hosts, start=1)}


def hosts_file(hosts: tuple[str, ...]) -> str:
    """The ``/etc/hosts`` every host of the job sees: loopback names, then every host by name."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{address}\t{name}" for name, address in addresses(hosts).items()]
    return "\n".join(lines) + "\n"


def relayed_endpoints(urls: Iterable[str]) -> tuple[tuple[str, int], ...]:
    """The loopback addresses and ports of smlocal's own endpoints ``urls`` (the ``AWS_ENDPOINT_URL*``
    smlocal gives every job: :meth:`smlocal.runtime.job.RuntimeContext.relayed_endpoints`).

    Inside a job network the job's loopback is its own: these, and only these, are relayed to the
    same address and port of the machine's. Only smlocal's endpoints: never what a job's request
    names (its ``Environment``), or a job could pick any loopback service of the machine.
    Loopback is :func:`smlocal.auth.is_loopback` (127.0.0.0/8, ``::1``, ``localhost``, which is
    relayed as ``127.0.0.1``: the job's ``/etc/hosts`` gives it that address too).
    """
    found: list[tuple[str, int]] = []
    for url in urls:
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            continue
        if not parts.hostname or not is_loopback(parts.hostname):
            continue
        address = "127.0.0.1" if parts.hostname == "localhost" else str(ipaddress.ip_address(parts.hostname))
        if (address, port) not in found:
            found.append((address, port))
    return tuple(found)


def encode_endpoints(endpoints: Iterable[tuple[str, int]]) -> str:
    """``ADDRESS:PORT,...`` (an IPv6 address as it is: the port is after the last colon), as
    :func:`smlocal.runtime.backends.jobnet_switch.parse_endpoints` reads it."""
    return ",".join(f"{address}:{port}" for address, port in endpoints)

