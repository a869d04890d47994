"""Runs one batch transform job: input objects → model server → ``.out`` objects.

The service calls :func:`run_transform_job` on a worker thread; it returns the outcome and never
raises for the job's own errors (they become FailureReason). What AWS documents, and this does:

* the inputs are the objects under ``TransformInput.DataSource.S3DataSource`` (S3Prefix, or the
  entries of a ManifestFile); each one is split, batched and filtered by
  :mod:`smlocal.runtime.transform_records` and its output is written to
  ``<S3OutputPath>/<key relative to the prefix>.out`` with ``Accept`` as its content type;
* one model server per job (the Model's containers, ``SAGEMAKER_BATCH=true`` plus
  ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` / ``SAGEMAKER_BATCH_STRATEGY`` /
  ``SAGEMAKER_MAX_CONCURRENT_TRANSFORMS`` when the request sets them, and the request's
  Environment); ``MaxConcurrentTransforms`` requests in flight (default 1);
* "If an input file contains a bad record, the transform job doesn't create an output file for
  that input file"; the other files are still processed and the job ends Failed with
  ``ClientError: See job logs for more information`` (a 4xx answer, bad data) or
  ``AlgorithmError: See job logs for more information`` (a 5xx answer, no answer);
* the container's output goes to ``/aws/sagemaker/TransformJobs`` stream ``<job>/<instance-id>``
  and the platform's own lines (``<time>:[sagemaker logs]: <bucket>/<key>: ...``) to
  ``<job>/<instance-id>/data-log``, as on AWS.

Invocation failures are retried up to ``ModelClientConfig.InvocationsMaxRetries`` (default 3) when
the model answered 5xx or not at all; a 4xx answer is the data's fault and is not retried.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from smlocal.runtime import transform_records as records
from smlocal.runtime.backends.base import RunControl
from smlocal.runtime import gpus
from smlocal.runtime.job import RuntimeContext
from smlocal.runtime.staging import StagingError, _relative, join_s3, split_s3_uri
from smlocal.runtime.transform_jsonpath import JsonPathError

KIND = "transform"
LOG_GROUP = "/aws/sagemaker/TransformJobs"
CLIENT_FAILURE = "ClientError: See job logs for more information"
ALGORITHM_FAILURE = "AlgorithmError: See job logs for more information"
DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT = 600.0  # ModelClientConfig.InvocationsTimeoutInSeconds default
FAILURE_REASON_MAX = 1024


@dataclass
class TransformOutcome:
    """How a transform job ended (status Completed | Failed | Stopped)."""

    status: str = "Failed"
    failure_reason: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    objects: int = 0
    failed_objects: int = 0


class TransformLogs:
    """The job's two log streams: the container's and the platform's data log."""

    def __init__(self, open_stream: Callable[[str], object], job_name: str, instance_id: str | None = None):
        if instance_id is None:
            from smlocal.runtime.model_server import new_instance_id

            instance_id = new_instance_id()
        self.instance_id = instance_id
        self.container = open_stream(f"{job_name}/{self.instance_id}")
        self.data = open_stream(f"{job_name}/{self.instance_id}/data-log")

    def log(self, line: str) -> None:
        self.container.write(line)

    def data_log(self, line: str) -> None:
        self.data.write(data_log_line(line))

    def close(self) -> None:
        for stream in (self.container, self.data):
            stream.close()


def data_log_line(message: str, stamp: float | None = None) -> str:
    """``2024-01-02T03:04:05.678:[sagemaker logs]: <message>`` (the data log's format)."""
    moment = datetime.fromtimestamp(stamp if stamp is not None else time.time(), tz=timezone.utc)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S')}.{moment.microsecond // 1000:03d}:[sagemaker logs]: {message}"


def model_error_lines(origin: str, status: int, body: bytes) -> list[str]:
    """The data-log lines for an error answer: the status line, then ``Message:`` and the body."""
    head = f"ClientError: {status}" if 400 <= status < 500 else f"Bad HTTP status received from algorithm: {status}"
    text = body.decode("utf-8", errors="replace").rstrip("\n")
    lines = [f"{origin}: {head}", f"{origin}: ", f"{origin}: Message:"]
    lines.extend(f"{origin}: {line}" for line in text.split("\n"))
    return lines


def environment_for(job: dict) -> dict[str, str]:
    """The container environment a transform job adds to the Model's (AWS's batch variables)."""
    env: dict[str, str] = {"SAGEMAKER_BATCH": "true"}
    if job.get("MaxPayloadInMB") is not None:
        env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(job["MaxPayloadInMB"])
    if job.get("BatchStrategy"):
        env["SAGEMAKER_BATCH_STRATEGY"] = "SINGLE_RECORD" if job["BatchStrategy"] == "SingleRecord" else "MULTI_RECORD"
    if job.get("MaxConcurrentTransforms"):
        env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(job["MaxConcurrentTransforms"])
    env.update(job.get("Environment") or {})
    return env


def output_uri(output_path: str, relative: str) -> str:
    return join_s3(output_path, relative) + ".out"


class _ObjectFailed(Exception):
    """An input object (or the model server) failed; ``reason`` is the FailureReason it implies."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def list_inputs(job: dict, ctx: RuntimeContext) -> list[tuple[str, str, str]]:
    """(bucket, key, path relative to the prefix) of every input object, in S3 listing order."""
    source = job["TransformInput"]["DataSource"]["S3DataSource"]
    data_type, uri = source["S3DataType"], source["S3Uri"]
    if data_type == "ManifestFile":
        return ctx.stager.manifest_entries(uri)
    if data_type != "S3Prefix":
        raise StagingError(f"S3DataType {data_type} is not supported by smlocal for transform jobs: "
                           "use S3Prefix or ManifestFile.")
    bucket, prefix = split_s3_uri(uri)
    return [(bucket, key, _relative(prefix, key)) for key in ctx.stager.list_keys(uri)]


def run_transform_job(job: dict, model: dict, ctx: RuntimeContext, logs: TransformLogs,
                      control: RunControl, *, on_started: Callable[[float], None] | None = None) -> TransformOutcome:
    """Runs the job to its end.

    Args:
        job: the stored DescribeTransformJob document.
        model: the DescribeModel document of ``job["ModelName"]``.
        ctx: the server's runtime context.
        logs: where the container output and the data log go.
        control: set ``control.stop`` to stop the job (it ends Stopped).
        on_started: called with the time the model server became ready (TransformStartTime).
    """
    outcome = TransformOutcome()
    server = None
    try:
        inputs = list_inputs(job, ctx)
        if not inputs:
            uri = job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
            outcome.failure_reason = f'No S3 objects found under S3 URL "{uri}" given in input data source.'
            return outcome
        try:
            spec = records.TransformSpec.from_job(job)
        except JsonPathError as exc:  # AWS reports it against each input object
            for bucket, key, _ in inputs:
                logs.data_log(f"{bucket}/{key}: {exc}")
            outcome.failure_reason = CLIENT_FAILURE
            return outcome
        if control.stop.is_set():
            outcome.status = "Stopped"
            return outcome
        containers = model.get("Containers") or [model["PrimaryContainer"]]
        try:
            server = _start_server(ctx, containers, job, model, logs, control)
        except _Cancelled:
            outcome.status = "Stopped"
            return outcome
        outcome.started_at = time.time()
        if on_started is not None:
            on_started(outcome.started_at)
        concurrency = max(1, int(job.get("MaxConcurrentTransforms") or 1))
        logs.data_log(f"MaxConcurrentTransforms={concurrency}, MaxPayloadInMB="
                      f"{spec.max_payload_bytes // records.MB}, BatchStrategy="
                      f"{'SINGLE_RECORD' if spec.strategy == 'SingleRecord' else 'MULTI_RECORD'}")
        retries = int((job.get("ModelClientConfig") or {}).get("InvocationsMaxRetries", DEFAULT_MAX_RETRIES))
        timeout = float((job.get("ModelClientConfig") or {}).get("InvocationsTimeoutInSeconds", DEFAULT_TIMEOUT))
        runner = _ObjectRunner(server, spec, job, ctx, logs, control, concurrency, retries, timeout)
        try:
            for bucket, key, relative in inputs:
                if control.stop.is_set():
                    break
                outcome.objects += 1
                try:
                    runner.run(bucket, key, relative)
                except _ObjectFailed as exc:
                    outcome.failed_objects += 1
                    outcome.failure_reason = outcome.failure_reason or exc.reason
        finally:
            runner.close()
        if control.stop.is_set():
            outcome.status, outcome.failure_reason = "Stopped", None
        elif outcome.failure_reason is None:
            outcome.status = "Completed"
    except _ObjectFailed as exc:
        outcome.failure_reason = exc.reason
    except StagingError as exc:
        outcome.failure_reason = _clip(f"ClientError: {exc}")
    except Exception as exc:  # noqa: BLE001 - a job must end, whatever went wrong around it
        outcome.failure_reason = _clip(f"InternalServerError: smlocal could not run the job: {exc!r}")
    finally:
        outcome.ended_at = time.time()  # the work is over; tearing the model server down is not part of it
        if server is not None:
            try:
                server.stop()
            except Exception:  # noqa: BLE001 - stopping must not change how the job ended
                pass
    return outcome


def _start_server(ctx, containers, job, model, logs: TransformLogs, control: RunControl):
    from smlocal.runtime.model_server import ModelServer, ModelServerError

    try:
        gpus.prepare_serving(ctx.settings, (job.get("TransformResources") or {}).get("InstanceType"), logs.log)
    except gpus.GpuUnavailable as exc:
        raise _ObjectFailed(str(exc)) from exc
    try:
        return ModelServer.start(ctx, containers, name=job["TransformJobName"], kind=KIND,
                                 environment=environment_for(job),
                                 network_isolation=bool(model.get("EnableNetworkIsolation")),
                                 log=logs.log, batch=True, instance_id=logs.instance_id, cancel=control.stop)
    except ModelServerError as exc:
        if exc.stage == "cancelled":
            raise _Cancelled() from exc
        prefix = "AlgorithmError" if exc.stage in ("ping", "transport") else "ClientError"
        logs.log(f"smlocal: the model server did not start: {exc}")
        raise _ObjectFailed(_clip(f"{prefix}: {exc}")) from exc


class _Cancelled(Exception):
    """The job was stopped while its model server was starting."""


class _ObjectRunner:
    """Transforms one input object at a time with a shared pool of in-flight requests."""

    def __init__(self, server, spec: records.TransformSpec, job: dict, ctx: RuntimeContext, logs: TransformLogs,
                 control: RunControl, concurrency: int, retries: int, timeout: float):
        self._server = server
        self._spec = spec
        self._ctx = ctx
        self._logs = logs
        self._control = control
        self._retries = max(0, retries)
        self._timeout = timeout
        self._output_path = job["TransformOutput"]["S3OutputPath"]
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="smlocal-transform")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self, bucket: str, key: str, relative: str) -> None:
        origin = f"{bucket}/{key}"
        spec = self._spec
        try:
            data = records.decompress(self._ctx.stager.read_bytes(f"s3://{bucket}/{key}"), spec.compression)
            plan = records.plan_object(data, spec)
        except records.RecordError as exc:
            self._fail(origin, str(exc), CLIENT_FAILURE)
        futures: list[Future] = [self._pool.submit(self._invoke, batch.payload) for batch in plan.batches]
        pieces: list[bytes] = []
        try:
            for batch, future in zip(plan.batches, futures):
                status, body, content_type = future.result()
                if self._control.stop.is_set():
                    return
                if status == -1:
                    detail = body.decode("utf-8", errors="replace")
                    self._fail(origin, "Unable to get response from algorithm" + (f"\n{detail}" if detail else ""),
                               ALGORITHM_FAILURE)
                if status >= 400:
                    for line in model_error_lines(origin, status, body):
                        self._logs.data_log(line)
                    raise _ObjectFailed(CLIENT_FAILURE if status < 500 else ALGORITHM_FAILURE)
                try:
                    pieces.append(records.finish_batch(plan, batch, body, content_type, spec))
                except records.RecordError as exc:
                    self._fail(origin, str(exc), CLIENT_FAILURE)
        finally:
            for future in futures:
                future.cancel()
        self._upload(records.assemble(pieces), output_uri(self._output_path, relative))

    def _invoke(self, payload: bytes) -> tuple[int, bytes, str | None]:
        """One request with retries; status -1 when the model never answered."""
        attempt = 0
        while True:
            if self._control.stop.is_set():
                return -1, b"", None
            try:
                status, body, content_type = self._call(payload)
            except Exception as exc:  # noqa: BLE001 - a dead or hung model server is the model's failure
                status, body, content_type = -1, str(exc).encode(), None
            if (status == -1 or status >= 500) and attempt < self._retries:
                attempt += 1
                continue
            return status, body, content_type

    def _call(self, payload: bytes) -> tuple[int, bytes, str | None]:
        result = self._server.invoke_detailed(payload, self._spec.content_type, self._spec.accept,
                                              timeout=self._timeout)
        return result.status, result.body, result.content_type

    def _upload(self, data: bytes, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        extra = {"ContentType": self._spec.accept} if self._spec.accept else {}
        try:
            self._ctx.stager.s3.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        except Exception as exc:  # noqa: BLE001 - botocore errors of any kind
            raise StagingError(f"Unable to write {uri}: {exc}") from exc

    def _fail(self, origin: str, message: str, reason: str) -> None:
        for line in message.split("\n"):
            self._logs.data_log(f"{origin}: {line}")
        raise _ObjectFailed(reason)


def _clip(text: str) -> str:
    return text if len(text) <= FAILURE_REASON_MAX else text[: FAILURE_REASON_MAX - 3] + "..."
