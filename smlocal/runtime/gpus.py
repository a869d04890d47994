"""Which of this machine's GPUs a job's host gets, and what it is told (SM_NUM_GPUS, a log line).

An ``ml.g*``/``ml.p*`` instance has GPUs (:mod:`smlocal.runtime.instance_types`). Where this machine
has NVIDIA GPUs, each host of such a job gets as many as its instance type has (or all of them,
``gpu-devices = "all"``), dealt round-robin over the hosts; the training toolkit's count
(``SM_NUM_GPUS``) is how many it got. Where the machine has none, the job runs on the CPU with
``SM_NUM_GPUS=0`` and its log says so, or fails (``gpu = "fail"``) with that reason. A CPU type
gets no GPU, as on AWS.

:func:`plan` is pure; :func:`machine_gpus` reads the machine (``nvidia-smi -L``, else the driver's
``/proc/driver/nvidia/gpus``).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from typing import Sequence

from smlocal.runtime import contract, instance_types

_log = logging.getLogger(__name__)

_NVIDIA_SMI_LINE = re.compile(r"^GPU (\d+):")
_PROC_GPUS = "/proc/driver/nvidia/gpus"


@dataclass(frozen=True)
class GpuPlan:
    """What one host of a job gets.

    Attributes:
        num_gpus: The GPUs the host sees (the toolkit's SM_NUM_GPUS).
        devices: This machine's GPU indices given to it (CUDA_VISIBLE_DEVICES, a container's
            device request); empty: none.
        note: A line for the job's log (first), or None.
        failure: The FailureReason when the job must not run (``gpu = "fail"``), else None.
        machine_has_gpus: Whether this machine has any (then a host without GPUs must have them
            hidden: CUDA_VISIBLE_DEVICES empty).
    """

    num_gpus: int = 0
    devices: tuple[str, ...] = ()
    note: str | None = None
    failure: str | None = None
    machine_has_gpus: bool = False

    def environment(self) -> dict[str, str]:
        """The variables a local process gets: CUDA_VISIBLE_DEVICES where the machine has GPUs."""
        return {"CUDA_VISIBLE_DEVICES": ",".join(self.devices)} if self.machine_has_gpus else {}


def _count_text(count: int | None) -> str:
    if count is None:
        return "GPUs"
    return "1 GPU" if count == 1 else f"{count} GPUs"


def plan(instance_type: str | None, machine: Sequence[str], *, mode: str = "cpu-fallback",
         devices: str = "instance", host_index: int = 0) -> GpuPlan:
    """The GPUs of host ``host_index`` of a job on ``instance_type``.

    Args:
        instance_type: The host's instance type (its group's, in a heterogeneous cluster).
        machine: This machine's GPU indices (:func:`machine_gpus`).
        mode: ``cpu-fallback`` (run on the CPU when the machine has none) or ``fail``.
        devices: ``instance`` (as many as the type has) or ``all`` (every GPU of the machine).
        host_index: The host's 0-based index in the job: hosts take consecutive slices, wrapping.

    Example: ``plan("ml.g5.xlarge", [])`` -> ``num_gpus=0`` and the note
    ``smlocal: ml.g5.xlarge has 1 GPU; this machine has none: running on the CPU (SM_NUM_GPUS=0)``.
    """
    has = bool(machine)
    wanted = instance_types.gpu_count(instance_type)
    if wanted == 0:
        return GpuPlan(machine_has_gpus=has)
    if not has:
        text = f"{instance_type} has {_count_text(wanted)}; this machine has none"
        if mode == "fail":
            return GpuPlan(failure=(
                "CapacityError: Unable to provision requested ML compute capacity: " + text
                + ' (smlocal\'s gpu setting is "fail"; "cpu-fallback" runs the job on the CPU).'))
        return GpuPlan(note=f"smlocal: {text}: running on the CPU (SM_NUM_GPUS=0)")
    if devices == "all" or wanted is None or wanted >= len(machine):
        given = tuple(machine)
    else:
        start = (host_index * wanted) % len(machine)
        given = tuple(machine[(start + i) % len(machine)] for i in range(wanted))
    note = None
    if wanted is not None and len(given) < wanted:
        note = (f"smlocal: {instance_type} has {_count_text(wanted)}; this machine has {len(machine)}: "
                f"the job sees {len(given)} (SM_NUM_GPUS={len(given)})")
    return GpuPlan(num_gpus=len(given), devices=given, note=note, machine_has_gpus=True)


def plan_hosts(instance_types_of_hosts: Sequence[str | None], *, mode: str, devices: str) -> list[GpuPlan]:
    """One :func:`plan` per host of a job (in host order) on this machine's GPUs."""
    machine = machine_gpus()
    return [plan(kind, machine, mode=mode, devices=devices, host_index=index)
            for index, kind in enumerate(instance_types_of_hosts)]


def _from_nvidia_smi() -> tuple[str, ...] | None:
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if listed.returncode != 0:
        return None
    return tuple(m.group(1) for m in map(_NVIDIA_SMI_LINE.match, listed.stdout.splitlines()) if m)


@functools.lru_cache(maxsize=1)
def machine_gpus() -> tuple[str, ...]:
    """This machine's NVIDIA GPUs as CUDA indices (``("0", "1")``); empty when it has none.

    ``nvidia-smi -L`` (as the training toolkit counts them), else one per entry of the driver's
    ``/proc/driver/nvidia/gpus``. Read once per server.
    """
    found = _from_nvidia_smi()
    if found is None:
        try:
            found = tuple(str(i) for i in range(len(os.listdir(_PROC_GPUS))))
        except OSError:
            found = ()
    _log.info("this machine's GPUs: %s", ", ".join(found) or "none")
    return found


class GpuUnavailable(Exception):
    """The job's instance type has GPUs, this machine none, and ``gpu = "fail"``: the FailureReason."""


def prepare(settings, resources: dict, hosts: Sequence[str], log) -> list[GpuPlan]:
    """Every host's plan for a job's instances; logs each distinct note once. The one way a training
    job (its ResourceConfig) and a processing job (its ClusterConfig) get their GPUs.

    Args:
        settings: The server's :class:`~smlocal.config.Settings` (``gpu``, ``gpu_devices``).
        resources: The job's ResourceConfig (InstanceType, or InstanceGroups) or ClusterConfig
            (InstanceType).
        hosts: The job's hosts, in order.
        log: Writes one line to the job's log.

    Raises:
        GpuUnavailable: With the reason, when the job must not run.
    """
    plans = plan_hosts(contract.host_instance_types(resources, hosts), mode=settings.gpu,
                       devices=settings.gpu_devices)
    return _report(plans, log)


def _report(plans: list[GpuPlan], log) -> list[GpuPlan]:
    failure = next((p.failure for p in plans if p.failure), None)
    if failure:
        raise GpuUnavailable(failure)
    for note in dict.fromkeys(p.note for p in plans if p.note):
        log(note)
    return plans


def prepare_serving(settings, instance_type: str | None, log) -> GpuPlan:
    """The plan of a model server (an endpoint variant's instance, a transform job's) on
    ``instance_type``: the CPU fallback's line in its log, or :class:`GpuUnavailable`. Hosting
    tells a container no GPU count (the model servers count the devices they see)."""
    return _report(plan_hosts([instance_type], mode=settings.gpu, devices=settings.gpu_devices), log)[0]
