"""A job network's shape (pure): who gets one, addresses, /etc/hosts, the ports relayed to smlocal,
and what a host's sandbox plan adds for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from smlocal.runtime.backends.base import RunSpec, SandboxPolicy
from smlocal.runtime.backends.jobnet import HostNetwork
from smlocal.runtime.backends.jobnet_plan import (MAX_HOSTS, addresses, host_address, hosts_file, needs_network,
                                                  relayed_ports)
from smlocal.runtime.backends.process import encode_plan, sandbox_plan
from smlocal.runtime.backends.sandbox_init import decode_plan

from test_sandbox_plan import BASE, JOB, MOUNTS, SCRATCH, fake_host  # the same fake host


def test_several_hosts_or_always_get_a_network():
    assert needs_network(("algo-1", "algo-2"), "multi-host")
    assert not needs_network(("algo-1",), "multi-host")
    assert needs_network(("algo-1",), "always")


def test_addresses_are_one_per_host_in_order_and_bounded():
    assert addresses(("algo-1", "algo-2", "algo-3")) == {"algo-1": "10.200.0.1", "algo-2": "10.200.0.2",
                                                         "algo-3": "10.200.0.3"}
    assert host_address(256) == "10.200.1.0" and host_address(MAX_HOSTS) == "10.200.255.254"
    for bad in (0, MAX_HOSTS + 1):
        with pytest.raises(ValueError):
            host_address(bad)


def test_the_hosts_file_names_loopback_and_every_host():
    lines = hosts_file(("algo-1", "algo-2")).splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[-2:] == ["10.200.0.1\talgo-1", "10.200.0.2\talgo-2"]


def test_only_smlocals_loopback_endpoints_are_relayed():
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "AWS_ENDPOINT_URL_S3": "http://localhost:9000",
           "AWS_ENDPOINT_URL_SAGEMAKER": "http://127.0.0.1:4566", "AWS_ENDPOINT_URL_STS": "https://sts.amazonaws.com",
           "OTHER_URL": "http://127.0.0.1:22", "AWS_ENDPOINT_URL_BAD": "http://127.0.0.1:notaport"}
    assert relayed_ports(env) == (4566, 9000)
    assert relayed_ports({}) == ()


def _plan(network):
    host = fake_host({**BASE, "/etc/hosts": "file"}, MOUNTS)
    spec = RunSpec(command=("/usr/bin/python3", "train.py"), env={"PATH": "/usr/bin:/bin"}, opt_ml=Path(JOB),
                   hostname="algo-2", hosts=("algo-1", "algo-2"), network_isolation=True, network=network)
    return sandbox_plan(spec, SandboxPolicy(hidden=(Path("/var/lib/smlocal"),)), host)


def test_a_host_of_a_job_network_gets_its_hosts_file_and_name_and_keeps_its_loopback():
    network = HostNetwork("algo-2", "10.200.0.2", "/proc/1/ns/user", "/proc/2/ns/net", "")
    plan = _plan(network)
    opt_ml = plan["steps"].index(["bind", JOB, "/opt/ml", False])
    assert plan["steps"][opt_ml + 1] == ["bind", f"{SCRATCH}/hosts", "/etc/hosts", False]
    assert plan["hostname"] == "algo-2"
    assert plan["loopback"] is False  # its namespace's lo is up already (and not its own to change)
    assert decode_plan(encode_plan(plan)) == plan
    alone = _plan(None)
    assert alone["hostname"] is None and alone["loopback"] is True
    assert not any(step[-2:] == ["/etc/hosts", False] for step in alone["steps"])
