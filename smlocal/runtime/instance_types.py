"""How many GPUs a SageMaker ML instance type has (pure data, no I/O).

Only the accelerated types are listed (``ml.g*``, ``ml.p*``): smlocal needs their GPU count to tell
a job how many GPUs its instance would have (``SM_NUM_GPUS``) and to give it as many of this
machine's. A CPU type has no GPU; ``SM_NUM_CPUS`` is always this machine's share, never the
instance type's, and memory is never the type's either: only the GPU count is kept.

Provenance: the figures are AWS's, from the Amazon EC2 accelerated-computing instance pages
(https://aws.amazon.com/ec2/instance-types/g4/, /g5/, /g6/, /g6e/, /p2/, /p3/, /p4/, /p5/), the
instances SageMaker trains and processes on being the EC2 types of the same name. Types in the
service model's TrainingInstanceType enum whose figures are not written here (newer families)
are still known as GPU types by their family: see :func:`gpu_count`.
"""

from __future__ import annotations


def _family(family: str, sizes: dict[str, int]) -> dict[str, int]:
    return {f"ml.{family}.{size}": gpus for size, gpus in sizes.items()}


# size: GPUs
_G5_SIZES = {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "16xlarge": 1, "12xlarge": 4, "24xlarge": 4,
             "48xlarge": 8}
#: Each listed instance type's NVIDIA GPUs (the GPU model, as AWS gives it, in the comment).
GPU_COUNTS: dict[str, int] = {
    **_family("g4dn", {"xlarge": 1, "2xlarge": 1, "4xlarge": 1, "8xlarge": 1, "12xlarge": 4, "16xlarge": 1}),  # T4
    **_family("g5", _G5_SIZES),  # A10G
    **_family("g6", _G5_SIZES),  # L4
    **_family("g6e", _G5_SIZES),  # L40S
    **_family("p2", {"xlarge": 1, "8xlarge": 8, "16xlarge": 16}),  # K80
    **_family("p3", {"2xlarge": 1, "8xlarge": 4, "16xlarge": 8}),  # V100
    **_family("p3dn", {"24xlarge": 8}),  # V100
    **_family("p4d", {"24xlarge": 8}),  # A100
    **_family("p4de", {"24xlarge": 8}),  # A100 80GB
    **_family("p5", {"48xlarge": 8, "4xlarge": 1}),  # H100
    **_family("p5e", {"48xlarge": 8}),  # H200
    **_family("p5en", {"48xlarge": 8}),  # H200
}


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
    return GPU_COUNTS.get(instance_type or "")
