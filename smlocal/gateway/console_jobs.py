"""The console's job APIs: a job's CloudWatch log, a training job's metrics over time, S3 objects as downloads.

Read-only handlers of ``/_smlocal/console/api/<name>`` (:data:`HANDLERS`, dispatched by
:class:`smlocal.gateway.console.Console`, which checks the console token first and answers a raised
:class:`~smlocal.errors.ServiceError` in AWS's shape):

* ``log-events?job=<name>&kind=<training|processing|transform>[&stream=<name>][&nextToken=<token>]`` →
  ``{"logStreams": DescribeLogStreams' entries, "logStreamName", "events": GetLogEvents' events,
  "nextForwardToken"}``: the job's streams and one page of events of ``stream`` (the first stream by
  default), from the head or from ``nextToken`` (the previous answer's ``nextForwardToken``). No stream
  yet: ``logStreams`` is empty. An unknown job is the service's Describe error; a stream that is not the
  job's is Logs' ``ResourceNotFoundException``.
* ``metrics?job=<training job>`` → ``{"series": {"<metric>": [[epoch_seconds, value], ...]},
  "final": FinalMetricDataList}``. As on AWS, a training job's metrics come from its CloudWatch log:
  the MetricDefinitions the training runtime applies (a built-in algorithm's, then the job's own,
  :func:`smlocal.runtime.training.metric_definitions`) are run over the log events of every host's
  stream, each value at its event's time (the runtime's own :class:`~smlocal.runtime.job.MetricCollector`).
* ``s3-object?uri=s3://bucket/key[&maxBytes=N]`` → the object as an attachment
  (``application/octet-stream``, ``Content-Disposition: attachment``, ``nosniff``), streamed; with
  ``maxBytes`` (the console's inline JSON views) a larger object is refused instead of sent. S3's own
  errors (``NoSuchKey``, ``NoSuchBucket``: 404) keep their code and status.
* ``s3-list?uri=s3://bucket/prefix`` → the objects under a job's S3 location (the page's download links).

They read through the server's own clients (:class:`smlocal.gateway.console.Readers`: the training
runtime's S3 client and CloudWatch Logs client), which the server sets on the console.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable, Iterator
from urllib.parse import quote

from botocore.exceptions import ClientError, ParamValidationError
from werkzeug.wrappers import Response

from smlocal.errors import ServiceError, ValidationError
from smlocal.gateway.console import json_answer
from smlocal.runtime import contract
from smlocal.runtime.images import Runtime, UnresolvableImage, resolve_runtime
from smlocal.runtime.job import MetricCollector
from smlocal.runtime.logs import job_log_streams, read_log_stream
from smlocal.runtime.training import metric_definitions
from smlocal.runtime.transform import LOG_GROUP as TRANSFORM_LOG_GROUP
from smlocal.service.processing import LOG_GROUP as PROCESSING_LOG_GROUP
from smlocal.service.training import LOG_GROUP as TRAINING_LOG_GROUP

log = logging.getLogger(__name__)

MAX_LOG_PAGES = 200  # GetLogEvents pages read per stream (10,000 events each at most): a bound, not a target
CHUNK = 256 * 1024
MAX_LISTED = 1000  # objects s3-list shows under one location
LOG_KINDS = {"training": ("TrainingJob", TRAINING_LOG_GROUP), "processing": ("ProcessingJob", PROCESSING_LOG_GROUP),
             "transform": ("TransformJob", TRANSFORM_LOG_GROUP)}
"""The console's job kind → (the SageMaker noun of its Describe call, its CloudWatch log group)."""
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


class InvalidURI(ServiceError):
    """S3's ``InvalidURI``: the ``uri`` parameter names no S3 object (or location)."""

    code = "InvalidURI"
    status = 400


def _client_failure(exc: ClientError) -> ServiceError:
    """A boto3 client's AWS error as the console's: its code and message, its 4xx status (a 5xx: 502)."""
    error = exc.response.get("Error", {})
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 400)
    return ServiceError(error.get("Message") or str(exc), code=error.get("Code") or "InvalidRequest",
                        status=status if 400 <= status < 500 else 502)


# ---- the log
def log_events(console, params: dict[str, str]) -> Response:
    """``GET api/log-events?job=<name>&kind=<kind>[&stream=<name>][&nextToken=<token>]``."""
    name, kind = params.get("job", ""), params.get("kind", "")
    if not name:
        raise ValidationError("The parameter 'job' (a job name) is required.")
    if kind not in LOG_KINDS:
        raise ValidationError(f"The parameter 'kind' must be one of {', '.join(LOG_KINDS)}, not {kind!r}.")
    noun, group = LOG_KINDS[kind]
    console.service.call(f"Describe{noun}", {f"{noun}Name": name})  # an unknown job: the service's 400
    logs = console.require_readers().logs
    try:
        streams = job_log_streams(logs, group, name)
        names = [stream["logStreamName"] for stream in streams]
        stream = params.get("stream") or (names[0] if names else None)
        if stream is not None and stream not in names:
            raise ServiceError("The specified log stream does not exist.", code="ResourceNotFoundException",
                               status=400)
        events, forward = read_log_stream(logs, group, stream, params.get("nextToken") or None,
                                          max_pages=1) if stream else ([], None)
    except ClientError as exc:  # e.g. a nextToken Logs does not accept
        raise _client_failure(exc) from exc
    return json_answer({"logStreams": streams, "logStreamName": stream, "events": events,
                        "nextForwardToken": forward})


# ---- metrics
def job_runtime(job: dict) -> Runtime:
    """What a training job's image is, as far as its metrics go (a built-in algorithm or not)."""
    spec = job.get("AlgorithmSpecification") or {}
    program = contract.framework_params(job.get("HyperParameters") or {}).program
    try:
        return resolve_runtime(spec.get("TrainingImage") or "", has_entry_point=bool(program))
    except UnresolvableImage:
        return Runtime(kind="custom", image=spec.get("TrainingImage") or "")


def metric_series(definitions: list[dict], events: Iterable[tuple[int, str]]) -> dict[str, list[list[float]]]:
    """Each metric's ``[epoch_seconds, value]`` points from log events ``(timestamp_ms, message)``,
    in the events' order (pure)."""
    collector = MetricCollector(definitions, keep_series=True)
    for stamp, message in events:
        collector.feed(message, stamp / 1000.0)
    return {name: [[at, value] for at, value in points] for name, points in (collector.series or {}).items()}


def job_log_events(logs, group: str, job_name: str) -> list[tuple[int, str]]:
    """Every log event ``(timestamp_ms, message)`` of a job's streams (``<job>/...`` in ``group``), oldest first."""
    events: list[tuple[int, str]] = []
    for stream in job_log_streams(logs, group, job_name):
        page, _ = read_log_stream(logs, group, stream["logStreamName"], max_pages=MAX_LOG_PAGES)
        events += [(event["timestamp"], event["message"]) for event in page]
    events.sort(key=lambda event: event[0])  # stable: a stream's own order is kept at equal times
    return events


def metrics(console, params: dict[str, str]) -> Response:
    """``GET api/metrics?job=<training job name>``."""
    name = params.get("job", "")
    if not name:
        raise ValidationError("The parameter 'job' (a training job name) is required.")
    job = console.service.call("DescribeTrainingJob", {"TrainingJobName": name})  # an unknown job: the service's 400
    try:
        events = job_log_events(console.require_readers().logs, TRAINING_LOG_GROUP, name)
    except ClientError as exc:
        raise _client_failure(exc) from exc
    series = metric_series(metric_definitions(job, job_runtime(job)), events)
    return json_answer({"series": series, "final": job.get("FinalMetricDataList") or []})


# ---- S3 objects
def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``(bucket, key)`` of an ``s3://bucket/key`` URI naming one object; raises S3's ``InvalidURI``."""
    if not uri.startswith("s3://"):
        raise InvalidURI(f"Couldn't parse the specified URI: {uri!r} is not s3://bucket/key.")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise InvalidURI(f"Couldn't parse the specified URI: {uri!r} names no object key.")
    return bucket, key


def attachment_disposition(key: str) -> str:
    """``Content-Disposition`` for a download of ``key``: its last segment as the file name, an
    ASCII-only ``filename`` (no quotes, separators or control characters) and the exact name as
    RFC 5987 ``filename*``."""
    base = key.rstrip("/").rsplit("/", 1)[-1] or "download"
    plain = _SAFE_FILENAME.sub("_", base).lstrip(".") or "download"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(base, safe='')}"


def _chunks(body) -> Iterator[bytes]:
    try:
        while True:
            chunk = body.read(CHUNK)
            if not chunk:
                return
            yield chunk
    finally:
        body.close()


def s3_object(console, params: dict[str, str]) -> Response:
    """``GET api/s3-object?uri=s3://bucket/key[&maxBytes=N]``."""
    bucket, key = parse_s3_uri(params.get("uri", ""))
    limit = _max_bytes(params.get("maxBytes"))
    s3 = console.require_readers().s3
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except ParamValidationError as exc:  # botocore refuses e.g. an invalid bucket name before sending
        raise InvalidURI(f"Couldn't parse the specified URI: {exc}") from exc
    except ClientError as exc:
        raise _client_failure(exc) from exc
    size = int(answer.get("ContentLength") or 0)
    if limit is not None and size > limit:
        answer["Body"].close()
        raise ServiceError(f"The object is {size} bytes, more than the {limit} bytes shown here: download it "
                           "instead.", code="EntityTooLarge", status=400)
    response = Response(_chunks(answer["Body"]), content_type="application/octet-stream", direct_passthrough=True)
    response.headers["Content-Length"] = str(size)
    response.headers["Content-Disposition"] = attachment_disposition(key)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _max_bytes(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise ValidationError(f"maxBytes must be a whole number of bytes, not {value!r}.")
    return int(value)


def s3_list(console, params: dict[str, str]) -> Response:
    """``GET api/s3-list?uri=s3://bucket/prefix`` → ``{"objects": [{"key", "uri", "size"}], "truncated"}``:
    the first :data:`MAX_LISTED` objects under a job's S3 location (one ListObjectsV2 page)."""
    uri = params.get("uri", "")
    if not uri.startswith("s3://") or not uri[len("s3://"):].partition("/")[0]:
        raise InvalidURI(f"Couldn't parse the specified URI: {uri!r} is not s3://bucket/prefix.")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    s3 = console.require_readers().s3
    try:
        page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=MAX_LISTED)
    except ParamValidationError as exc:
        raise InvalidURI(f"Couldn't parse the specified URI: {exc}") from exc
    except ClientError as exc:
        raise _client_failure(exc) from exc
    objects = [{"key": o["Key"], "uri": f"s3://{bucket}/{o['Key']}", "size": o.get("Size", 0)}
               for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    return json_answer({"objects": objects, "truncated": bool(page.get("IsTruncated"))})


HANDLERS = {"log-events": log_events, "metrics": metrics, "s3-object": s3_object, "s3-list": s3_list}
