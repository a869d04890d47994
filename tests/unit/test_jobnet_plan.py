"""A job network's shape (pure): who gets one, addresses, /etc/hosts, the ports relayed to smlocal,
and what a host's sandbox plan adds for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from smlocal.runtime.backends.base import RunSpec, SandboxPolicy
from smlocal.runtime.backends.jobnet import HostNetwork
from smlocal.runtime.backends.jobnet_plan import (MAX_HOSTS, addresses, encode_endpoints, host_address, hosts_file,
                                                  needs_network, relayed_endpoints)
from smlocal.runtime.backends.jobnet_switch import parse_endpoints
from smlocal.runtime.backends.sandbox_plan import encode_plan, gpu_device_nodes, sandbox_plan
from smlocal.runtime.backends.sandbox_init import decode_plan

from test_sandbox_plan import BASE, JOB, MOUNTS, SCRATCH, fake_host  # the same fake host


def test_several_hosts_or_always_get_a_network():
    assert needs_network(("algo-1", "algo-2"), "multi-host")
    assert not needs_network(("algo-1",), "multi-host")
    assert needs_network(("algo-1",), "always")
    assert needs_network(("algo-1",), "multi-host", asked=True)  # an MPI host binds eth0 alone too


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


def test_only_loopback_endpoints_are_relayed_each_to_its_own_address():
    urls = ["http://127.0.0.1:4566", "http://localhost:9000", "http://127.0.0.1:4566/", "https://sts.amazonaws.com",
            "http://127.0.0.1:notaport", "http://[::1]:4567", "http://127.0.0.2:4568", "https://localhost",
            "http://10.0.0.5:80", "not a url"]
    assert relayed_endpoints(urls) == (("127.0.0.1", 4566), ("127.0.0.1", 9000), ("::1", 4567),
                                       ("127.0.0.2", 4568), ("127.0.0.1", 443))
    assert relayed_endpoints([]) == ()
    # what the switch is told, and reads back (an IPv6 address keeps its colons)
    endpoints = relayed_endpoints(urls)
    assert parse_endpoints(encode_endpoints(endpoints)) == list(endpoints)
    assert parse_endpoints("") == []


def test_a_host_given_gpus_sees_their_nodes_and_the_drivers_only():
    present = ["null", "nvidiactl", "nvidia-uvm", "nvidia-modeset", "nvidia0", "nvidia1", "nvidia2", "nvidia3",
               "nvidia-caps"]
    assert gpu_device_nodes(("2", "3"), present) == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-modeset",
                                                      "/dev/nvidia2", "/dev/nvidia3"]
    assert gpu_device_nodes((), present) == []  # no GPU planned: no NVIDIA node at all
    assert gpu_device_nodes(("5",), present) == ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-modeset"]
    assert gpu_device_nodes(("0",), ["null"]) == []


def test_the_sandbox_plan_binds_a_hosts_gpu_nodes_after_dev():
    entries = {**BASE, "/dev/nvidiactl": "file", "/dev/nvidia0": "file", "/dev/nvidia1": "file",
               "/dev/nvidia-uvm": "file"}
    host = fake_host(entries, MOUNTS)
    policy = SandboxPolicy(hidden=(Path("/var/lib/smlocal"),))
    spec = RunSpec(command=("/usr/bin/python3", "train.py"), env={"PATH": "/usr/bin:/bin"}, opt_ml=Path(JOB),
                   gpus=("1",))
    plan = sandbox_plan(spec, policy, host)
    dev = plan["steps"].index(["dev"])
    assert plan["steps"][dev + 1:dev + 4] == [["device", "/dev/nvidiactl"], ["device", "/dev/nvidia-uvm"],
                                              ["device", "/dev/nvidia1"]]
    assert plan["steps"][dev + 4] == ["cover", "/dev/shm"]
    assert decode_plan(encode_plan(plan)) == plan
    without = sandbox_plan(RunSpec(command=spec.command, env=spec.env, opt_ml=Path(JOB)), policy, host)
    assert not any(step[0] == "device" for step in without["steps"])


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
