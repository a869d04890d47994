"""Planning the move of a pipeline definition from smlocal to a real AWS account (pure: no I/O).

A definition that ran on smlocal names smlocal's world: its account (123456789012), its execution
role, buckets that exist only in the local S3 store. ``plan_promotion`` rewrites those names for the
target account and lists what must be copied, without touching anything:

* ``s3://<local bucket>/...`` anywhere in a string (also a bare ``s3://<bucket>`` or a string equal
  to a local bucket name, the parts ``Std:Join`` builds URIs from) → the target bucket, same key;
* literal S3 URIs in *input* positions (parameter defaults, processing/training/transform inputs,
  code, ``ModelDataUrl``, hyperparameters such as ``sagemaker_submit_directory``) are copied;
  URIs under output configurations are only rewritten (the pipeline writes them);
* IAM role ARNs of the source account → the target role; other ARNs of the source account → the
  target account and region;
* blocking problems, found before anything is written: ECR images of another region (SageMaker
  pulls a job's image only from its own region, and the framework image accounts differ per region),
  ``local`` instance types (SDK local mode only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

# members whose S3 URIs a job writes, never reads (their subtrees are rewritten, not copied)
OUTPUT_MEMBERS = frozenset({
    "ProcessingOutputConfig", "OutputDataConfig", "TransformOutput", "CheckpointConfig", "DebugHookConfig",
    "TensorBoardOutputConfig", "ProfilerConfig", "DebugRuleConfigurations", "ProfilerRuleConfigurations",
    "OutputConfig", "AsyncInferenceConfig", "DataCaptureConfig", "S3OutputPath", "OutputPath",
})
_S3_URI = re.compile(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(/[^\s\"']*)?")
_ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/")
_ARN = re.compile(r"arn:(aws[a-z-]*):([a-z0-9-]+):([a-z0-9-]*):(\d{12}):")
_LOCAL_INSTANCE_TYPES = ("local", "local_gpu")


@dataclass(frozen=True)
class Copy:
    """Objects to copy: ``source`` is an object, or a prefix when no object has that exact key."""

    source: str
    target: str
    where: str = ""  # the member path of the first reference


@dataclass
class PromotionPlan:
    definition: dict[str, Any]
    copies: list[Copy] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    account: str
    region: str
    role_arn: str
    bucket: str


def plan_promotion(definition: dict[str, Any], *, source_account: str, local_buckets: set[str],
                   target: Target) -> PromotionPlan:
    """The rewritten definition, the copies it needs and any problem that forbids the move."""
    plan = PromotionPlan(definition={})
    copies: dict[str, Copy] = {}
    outputs: set[str] = set()  # literal URIs the pipeline's jobs write
    foreign_buckets: set[str] = set()

    def rewrite(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {key: rewrite(item, (*path, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [rewrite(item, path) for item in value]
        if not isinstance(value, str):
            return value
        return _rewrite_string(value, path)

    def _rewrite_string(text: str, path: tuple[str, ...]) -> str:
        where = "/".join(path) or "definition"
        if path and path[-1] == "InstanceType" and text in _LOCAL_INSTANCE_TYPES:
            plan.problems.append(f"{where}: instance type {text!r} exists only in SDK local mode")
        image = _ECR_IMAGE.match(text)
        if image and image.group(2) != target.region:
            plan.problems.append(
                f"{where}: image {text} is in region {image.group(2)}, but the target is {target.region} "
                f"(SageMaker pulls images from the job's own region): build the definition for "
                f"{target.region}, e.g. sagemaker.image_uris.retrieve(..., region={target.region!r})")
        role = _ROLE_ARN.match(text)
        if role and role.group(1) == source_account:
            return target.role_arn
        if text in local_buckets:
            return target.bucket
        is_output = any(part in OUTPUT_MEMBERS for part in path)

        def swap(match: re.Match) -> str:
            bucket, key = match.group(1), match.group(2) or ""
            if bucket not in local_buckets:
                foreign_buckets.add(bucket)
                return match.group(0)
            new = f"s3://{target.bucket}{key}"
            if is_output:
                if key.strip("/"):  # a bare bucket (a Std:Join part) says nothing about what is written
                    outputs.add(match.group(0).rstrip("/"))
            elif key.strip("/") and text.strip('"').startswith("s3://"):
                copies.setdefault(match.group(0), Copy(match.group(0), new, where))
            return new

        text = _S3_URI.sub(swap, text)
        return _ARN.sub(lambda m: _swap_arn(m, source_account, target), text)

    plan.definition = rewrite(definition, ())
    # a URI under an output location (e.g. RegisterModel's ModelMetrics reading the evaluation
    # step's report) is produced when the pipeline runs: nothing to copy
    plan.copies = [copy for copy in copies.values()
                   if not any(copy.source == out or copy.source.startswith(out + "/") for out in outputs)]
    for bucket in sorted(foreign_buckets):
        plan.notes.append(f"s3://{bucket} is not a local bucket: its URIs are kept as they are "
                          "(the target account must be able to read them)")
    return plan


def _swap_arn(match: re.Match, source_account: str, target: Target) -> str:
    partition, service, region, account = match.groups()
    if account != source_account:
        return match.group(0)
    return f"arn:{partition}:{service}:{target.region if region else ''}:{target.account}:"


def default_bucket(region: str, account: str) -> str:
    """The SDK's ``Session().default_bucket()`` name for an account and region."""
    return f"sagemaker-{region}-{account}"
