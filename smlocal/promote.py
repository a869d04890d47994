"""`smlocal promote --to aws`: the pipeline that ran on smlocal, created in a real AWS account.

The source is a pipeline in an smlocal emulator (a running one, or the one a bundled workflow just
defined); the target is whatever boto3 resolves from the caller's own environment (profile,
credentials, region, ``AWS_ENDPOINT_URL`` if set), never smlocal's client settings. The order keeps
a failed promotion from leaving anything half-written in the target: identity and every check first,
then the bucket and object copies, then Create/UpdatePipeline, then (``--start``) one execution.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Callable

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from smlocal.pipelines.promotion import PromotionPlan, Target, default_bucket, plan_promotion

CONSOLE = "https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/pipelines"


class PromotionError(Exception):
    """Stops the promotion before anything is written to the target."""


@dataclass
class Source:
    """The emulator holding the pipeline: its clients and account."""

    sagemaker: object
    s3: object
    endpoint: str
    account: str


@dataclass
class Request:
    pipeline: str
    role_arn: str
    target_name: str | None = None
    bucket: str | None = None
    region: str | None = None
    profile: str | None = None
    start: bool = False
    parameters: dict[str, str] | None = None
    dry_run: bool = False


def source_from_env(env: dict[str, str]) -> Source:
    """Clients for the emulator described by a client environment (``Emulator.client_env()``)."""
    session = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                    region_name=env["AWS_DEFAULT_REGION"])
    endpoint = env["SMLOCAL_ENDPOINT"]
    return Source(sagemaker=session.client("sagemaker", endpoint_url=endpoint),
                  s3=session.client("s3", endpoint_url=env.get("AWS_ENDPOINT_URL_S3", endpoint)),
                  endpoint=endpoint,
                  account=session.client("sts", endpoint_url=endpoint).get_caller_identity()["Account"])


def target_region(profile: str | None, region: str | None) -> str:
    """The target's region as boto3 resolves it from the caller's configuration."""
    resolved = boto3.session.Session(profile_name=profile, region_name=region).region_name
    if not resolved:
        raise PromotionError("no AWS region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    return resolved


def promote(source: Source, request: Request, out: Callable[[str], None] = print) -> int:
    """Promotes ``request.pipeline`` from ``source`` to the caller's AWS account; returns an exit code."""
    try:
        _promote(source, request, out)
    except (ClientError, PromotionError) as exc:
        print(f"smlocal promote: {exc}", file=sys.stderr)
        return 1
    return 0


def _promote(source: Source, request: Request, out: Callable[[str], None]) -> None:
    session = boto3.session.Session(profile_name=request.profile, region_name=request.region)
    target, clients = _resolve_target(session, source, request)
    described = source.sagemaker.describe_pipeline(PipelineName=request.pipeline)
    local_buckets = {b["Name"] for b in source.s3.list_buckets().get("Buckets", [])}
    plan = plan_promotion(json.loads(described["PipelineDefinition"]), source_account=source.account,
                          local_buckets=local_buckets, target=target)
    name = request.target_name or request.pipeline
    out(f"Promoting pipeline {request.pipeline} from smlocal ({source.endpoint}) to AWS account "
        f"{target.account}, region {target.region}, as {name}")
    out(f"  role {target.role_arn}\n  bucket s3://{target.bucket}")
    for note in plan.notes:
        out(f"  note: {note}")
    if plan.problems:
        raise PromotionError("\nsmlocal promote: ".join([*plan.problems, "nothing was written to the target"]))
    objects = _objects_to_copy(source.s3, plan)
    for copy in plan.copies:
        out(f"  copy {copy.source} -> {copy.target}")
    if request.dry_run:
        out("Dry run: nothing was written. The definition that would be created:")
        out(json.dumps(plan.definition, indent=2, sort_keys=True))
        return
    _ensure_bucket(clients["s3"], target)
    size = _copy_objects(source.s3, clients["s3"], objects)
    out(f"Copied {len(objects)} object(s), {size} bytes")
    out(f"Pipeline {_upsert(clients['sagemaker'], name, plan, target, described)}")
    if request.start:
        parameters = [{"Name": k, "Value": v} for k, v in (request.parameters or {}).items()]
        started = clients["sagemaker"].start_pipeline_execution(PipelineName=name, PipelineParameters=parameters)
        out(f"Started {started['PipelineExecutionArn']}")
    out(f"Console: {CONSOLE.format(region=target.region)}/{name}")


def _resolve_target(session, source: Source, request: Request) -> tuple[Target, dict]:
    region = target_region(request.profile, request.region)
    clients = {name: session.client(name) for name in ("sts", "s3", "sagemaker")}
    if clients["sagemaker"].meta.endpoint_url.rstrip("/") == source.endpoint.rstrip("/"):
        raise PromotionError(f"the AWS target resolves to smlocal itself ({source.endpoint}): run promote "
                             "outside `smlocal exec` (unset AWS_ENDPOINT_URL)")
    try:
        identity = clients["sts"].get_caller_identity()
    except NoCredentialsError as exc:
        raise PromotionError("no AWS credentials found for the target (configure a profile, "
                             "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or pass --profile)") from exc
    except (ClientError, BotoCoreError) as exc:
        raise PromotionError(f"cannot confirm the AWS identity: {exc}") from exc
    account = identity["Account"]
    bucket = request.bucket or default_bucket(region, account)
    return Target(account=account, region=region, role_arn=request.role_arn, bucket=bucket), clients


def _ensure_bucket(s3, target: Target) -> None:
    try:
        s3.head_bucket(Bucket=target.bucket)
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise PromotionError(f"bucket {target.bucket} exists but is not usable: {exc}") from exc
    kwargs = {} if target.region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": target.region}}
    s3.create_bucket(Bucket=target.bucket, **kwargs)


def _objects_to_copy(source_s3, plan: PromotionPlan) -> list[tuple[str, str, str, str]]:
    """(bucket, key, target bucket, target key) of every object the planned copies cover."""
    objects = []
    for copy in plan.copies:
        bucket, key = copy.source[5:].split("/", 1)
        target_bucket, target_key = copy.target[5:].split("/", 1)
        for source_key in _source_keys(source_s3, bucket, key, copy.where):
            objects.append((bucket, source_key, target_bucket, target_key + source_key[len(key):]))
    return objects


def _copy_objects(source_s3, target_s3, objects: list[tuple[str, str, str, str]]) -> int:
    """Streams each object from the local store to the target; returns the bytes copied."""
    size = 0
    for bucket, key, target_bucket, target_key in objects:
        body = source_s3.get_object(Bucket=bucket, Key=key)["Body"]
        target_s3.upload_fileobj(body, target_bucket, target_key)
        size += target_s3.head_object(Bucket=target_bucket, Key=target_key)["ContentLength"]
    return size


def _source_keys(s3, bucket: str, key: str, where: str) -> list[str]:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return [key]
    except ClientError:
        pass
    prefix = key.rstrip("/") + "/"
    keys = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for obj in page.get("Contents", [])]
    if not keys:
        raise PromotionError(f"s3://{bucket}/{key} (at {where}) is read by the pipeline but holds no object in the "
                             "local store")
    return keys


def _upsert(sm, name: str, plan: PromotionPlan, target: Target, described: dict) -> str:
    body = json.dumps(plan.definition)
    extra = {k: described[k] for k in ("PipelineDisplayName", "PipelineDescription", "ParallelismConfiguration")
             if described.get(k)}
    try:
        return sm.create_pipeline(PipelineName=name, PipelineDefinition=body, RoleArn=target.role_arn,
                                  **extra)["PipelineArn"]
    except ClientError as exc:  # AWS answers a taken name with a ValidationException "... already exists"
        error = exc.response["Error"]
        if not (error["Code"] == "ValidationException" and "already exists" in error.get("Message", "")):
            raise
    return sm.update_pipeline(PipelineName=name, PipelineDefinition=body, RoleArn=target.role_arn,
                              **extra)["PipelineArn"]
