"""Which smlocal server made a container or network, and removing what a gone server left.

Every container and network the Docker backend creates carries :data:`SERVER_LABEL` (the data
dir's id), :data:`OWNER_LABEL` (the server process, :func:`owner_id`) and :data:`JOB_LABEL`
(``<kind>/<name>``; containers :data:`HOST_LABEL` too). A server that starts removes what its
data dir's previous server left (:func:`remove_labelled`) and what any smlocal server of this
machine whose process is gone left (:func:`remove_dead_owners`), whatever its data dir.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

_log = logging.getLogger(__name__)

SERVER_LABEL = "smlocal.server"
JOB_LABEL = "smlocal.job"
HOST_LABEL = "smlocal.host"
OWNER_LABEL = "smlocal.owner"


def remove_container(api, container: str) -> None:
    """Removes the container (and its anonymous volumes), running or not; gone already is fine."""
    try:
        api.remove_container(container, force=True, v=True)
    except Exception as exc:  # noqa: BLE001 - already removed
        _log.info("removing %s: %s", container[:12], exc)


def remove_labelled(client, server: str, labels: dict[str, str]) -> int:
    """Removes the containers and networks of ``server`` (its :data:`SERVER_LABEL` value) that also
    carry every one of ``labels``; returns how many containers."""
    wanted = [f"{SERVER_LABEL}={server}", *(f"{k}={v}" for k, v in labels.items())]
    removed = 0
    for info in client.api.containers(all=True, filters={"label": wanted}):
        remove_container(client.api, info["Id"])
        removed += 1
    for network in client.networks.list(filters={"label": wanted}):
        try:
            network.remove()
        except Exception as exc:  # noqa: BLE001 - still in use by a container being removed
            _log.info("removing the network %s: %s", network.name, exc)
    if removed:
        _log.warning("removed %d container(s) a previous smlocal server left", removed)
    return removed


def remove_dead_owners(client, own: str) -> int:
    """Removes the containers and networks of every smlocal server (any data dir) whose owner
    label names a process of this machine that is gone; a live server's, another machine's,
    ``own`` (this server's :func:`owner_id`) and unlabelled ones stay. Returns how many containers."""
    dead: set[str] = set()
    for info in client.api.containers(all=True, filters={"label": OWNER_LABEL}):
        owner = (info.get("Labels") or {}).get(OWNER_LABEL, "")
        if owner != own and owner_is_dead(owner):
            dead.add(owner)
    for network in client.networks.list(filters={"label": OWNER_LABEL}):
        owner = (network.attrs.get("Labels") or {}).get(OWNER_LABEL, "")
        if owner != own and owner_is_dead(owner):
            dead.add(owner)
    removed = 0
    for owner in dead:
        for info in client.api.containers(all=True, filters={"label": f"{OWNER_LABEL}={owner}"}):
            remove_container(client.api, info["Id"])
            removed += 1
        for network in client.networks.list(filters={"label": f"{OWNER_LABEL}={owner}"}):
            try:
                network.remove()
            except Exception as exc:  # noqa: BLE001 - in use by a container being removed
                _log.info("removing the network %s: %s", network.name, exc)
    if removed:
        _log.warning("removed %d container(s) of smlocal servers that are gone", removed)
    return removed


def _machine() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text().strip()
            if value:
                return value[:32]
        except OSError:
            continue
    import socket

    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:32]


def _boot() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:32]
    except OSError:
        return "unknown"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def owner_id(pid: int | None = None) -> str:
    """``machine.boot.pid.start``: this process, told apart from a later one of the same pid."""
    pid = os.getpid() if pid is None else pid
    return f"{_machine()}.{_boot()}.{pid}.{_start_time(pid) or 0}"


def owner_is_dead(owner: str) -> bool:
    """Whether the process an :func:`owner_id` names is gone: this machine, and another boot or no
    such process (same pid and start time). Another machine's owner is never judged dead."""
    parts = owner.split(".")
    if len(parts) != 4 or parts[0] != _machine():
        return False
    if parts[1] != _boot():
        return True
    try:
        return _start_time(int(parts[2])) != parts[3]
    except ValueError:
        return False
