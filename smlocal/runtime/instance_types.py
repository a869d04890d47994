"""What a SageMaker ML instance type has: vCPUs, GPUs and memory (pure data, no I/O).

Only the accelerated types are listed (``ml.g*``, ``ml.p*``): smlocal needs their GPU count to tell
a job how many GPUs its instance would have (``SM_NUM_GPUS``) and to give it as many of this
machine's. A CPU type has no GPU; ``SM_NUM_CPUS`` is always this machine's share, never the
instance type's.

Provenance: the figures are AWS's, from the Amazon EC2 accelerated-computing instance pages
(https://aws.amazon.com/ec2/instance-types/g4/, /g5/, /g6/, /g6e/, /p2/, /p3/, /p4/, /p5/), the
instances SageMaker trains and processes on being the EC2 types of the same name. Types in the
service model's TrainingInstanceType enum whose figures are not written here (newer families)
are still known as GPU types by their family: see :func:`gpu_count`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    """One instance type's resources.

    Attributes:
        name: ``ml.<family>.<size>``.
        vcpus: vCPUs.
        gpus: NVIDIA GPUs.
        memory_gib: Memory in GiB.
        gpu_model: The GPU's name, as AWS gives it.
    """

    name: str
    vcpus: int
    gpus: int
    memory_gib: int
    gpu_model: str


def _family(family: str, model: str, sizes: dict[str, tuple[int, int, int]]) -> dict[str, InstanceType]:
    return {f"ml.{family}.{size}": InstanceType(f"ml.{family}.{size}", vcpus, gpus, memory, model)
            for size, (vcpus, gpus, memory) in sizes.items()}


# size: (vCPUs, GPUs, memory GiB)
_G5_SIZES = {"xlarge": (4, 1, 16), "2xlarge": (8, 1, 32), "4xlarge": (16, 1, 64), "8xlarge": (32, 1, 128),
             "16xlarge": (64, 1, 256), "12xlarge": (48, 4, 192), "24xlarge": (96, 4, 384),
             "48xlarge": (192, 8, 768)}
INSTANCE_TYPES: dict[str, InstanceType] = {
    **_family("g4dn", "NVIDIA T4", {"xlarge": (4, 1, 16), "2xlarge": (8, 1, 32), "4xlarge": (16, 1, 64),
                                    "8xlarge": (32, 1, 128), "12xlarge": (48, 4, 192), "16xlarge": (64, 1, 256)}),
    **_family("g5", "NVIDIA A10G", _G5_SIZES),
    **_family("g6", "NVIDIA L4", _G5_SIZES),
    **_family("g6e", "NVIDIA L40S", {"xlarge": (4, 1, 32), "2xlarge": (8, 1, 64), "4xlarge": (16, 1, 128),
                                     "8xlarge": (32, 1, 256), "16xlarge": (64, 1, 512), "12xlarge": (48, 4, 384),
                                     "24xlarge": (96, 4, 768), "48xlarge": (192, 8, 1536)}),
    **_family("p2", "NVIDIA K80", {"xlarge": (4, 1, 61), "8xlarge": (32, 8, 488), "16xlarge": (64, 16, 732)}),
    **_family("p3", "NVIDIA V100", {"2xlarge": (8, 1, 61), "8xlarge": (32, 4, 244), "16xlarge": (64, 8, 488)}),
    **_family("p3dn", "NVIDIA V100", {"24xlarge": (96, 8, 768)}),
    **_family("p4d", "NVIDIA A100", {"24xlarge": (96, 8, 1152)}),
    **_family("p4de", "NVIDIA A100 80GB", {"24xlarge": (96, 8, 1152)}),
    **_family("p5", "NVIDIA H100", {"48xlarge": (192, 8, 2048), "4xlarge": (16, 1, 256)}),
    **_family("p5e", "NVIDIA H200", {"48xlarge": (192, 8, 2048)}),
    **_family("p5en", "NVIDIA H200", {"48xlarge": (192, 8, 2048)}),
}


def lookup(instance_type: str | None) -> InstanceType | None:
    """The listed figures of ``instance_type``, or None (a CPU type, ``local``, or unlisted)."""
    return INSTANCE_TYPES.get(instance_type or "")


def is_gpu_type(instance_type: str | None) -> bool:
    """Whether the type has NVIDIA GPUs: the ``ml.g*`` and ``ml.p*`` families (``ml.g7e.2xlarge``,
    ``ml.p6-b200.48xlarge``...), listed here or not."""
    family = (instance_type or "").split(".")
    return len(family) == 3 and family[0] == "ml" and family[1][:1] in ("g", "p")


def gpu_count(instance_type: str | None) -> int | None:
    """How many GPUs ``instance_type`` has: 0 for a CPU type, the listed figure for a GPU type,
    None for a GPU type whose figure smlocal does not list (at least one)."""
    if not is_gpu_type(instance_type):
        return 0
    listed = lookup(instance_type)
    return listed.gpus if listed is not None else None
