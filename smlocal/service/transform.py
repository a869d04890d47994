"""Transform jobs: Create/Describe/List/Stop, the job state machine and crash recovery.

Checks CreateTransformJob makes beyond the service model (AWS wording where known):

* the Model must exist: ``Could not find model "<model arn>".``;
* the input must have objects: ``No S3 objects found under S3 URL "<uri>" given in input data
  source. Please ensure that the bucket exists in the selected region (<region>), that objects
  exist under that S3 prefix, and that the role "<model role>" has "s3:ListBucket" permissions on
  bucket "<bucket>".`` (AWS answers this at CreateTransformJob, not as a failed job);
* ``MaxPayloadInMB`` at most 100, and ``MaxConcurrentTransforms * MaxPayloadInMB`` at most 100
  (the API reference's limits; the wording is smlocal's);
* a duplicate name is ResourceInUse with the wording the other job families use.
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Protocol


from smlocal.errors import ResourceInUse, ValidationError
from smlocal.runtime.backends.base import RunControl
from smlocal.runtime.job import RuntimeContext
from smlocal.runtime.logs import LogStreamWriter
from smlocal.runtime.staging import StagingError, split_s3_uri
from smlocal.runtime.transform import KIND as RUNTIME_KIND
from smlocal.runtime.transform import LOG_GROUP, TransformLogs, TransformOutcome, run_transform_job
from smlocal.service.common import Account, now, pick
from smlocal.service.job_family import SHUTDOWN_REASON, JobFamily
from smlocal.service.scheduler import JobScheduler
from smlocal.service.store import Store

log = logging.getLogger(__name__)

KIND = "TransformJob"
MAX_PAYLOAD_MB = 100
_DESCRIBE_KEYS = (
    "TransformJobName", "TransformJobArn", "TransformJobStatus", "FailureReason", "ModelName",
    "MaxConcurrentTransforms", "ModelClientConfig", "MaxPayloadInMB", "BatchStrategy", "Environment",
    "TransformInput", "TransformOutput", "DataCaptureConfig", "TransformResources", "CreationTime",
    "TransformStartTime", "TransformEndTime", "LabelingJobArn", "AutoMLJobArn", "DataProcessing",
    "ExperimentConfig",
)
_SUMMARY_KEYS = (
    "TransformJobName", "TransformJobArn", "CreationTime", "TransformEndTime", "LastModifiedTime",
    "TransformJobStatus", "FailureReason",
)
# request members that DescribeTransformJob echoes back
_ECHOED = (
    "ModelName", "MaxConcurrentTransforms", "ModelClientConfig", "MaxPayloadInMB", "BatchStrategy",
    "Environment", "TransformInput", "TransformOutput", "DataCaptureConfig", "TransformResources",
    "DataProcessing", "ExperimentConfig",
)
_SORT_KEYS = {"Name": "TransformJobName", "CreationTime": "CreationTime", "Status": "TransformJobStatus"}


class ModelLookup(Protocol):
    """The models family: ``get(name)`` is the DescribeModel document; an unknown name raises
    ValidationError ``Could not find model "<arn>".``"""

    def get(self, name: str) -> dict: ...

    def serving(self, name: str) -> dict:
        """The model with ``Containers`` set to the containers to run (model packages resolved)."""
        ...


class TransformJobs(JobFamily):
    """The transform-job family of operations."""

    KIND = KIND
    NOUN = "transform job"
    SUMMARY_KEYS = _SUMMARY_KEYS
    SORT_KEYS = _SORT_KEYS
    RUNTIME_KIND = RUNTIME_KIND

    def __init__(self, store: Store, scheduler: JobScheduler, account: Account, runtime: RuntimeContext,
                 models: ModelLookup):
        super().__init__(store, scheduler, account, runtime)
        self._models = models

    # ---- operations
    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TransformJobName"]
        arn = self._account.arn("transform-job", name)
        model = self._models.get(request["ModelName"])
        check_limits(request)
        if self._store.exists(KIND, name):
            raise _duplicate(arn)
        self._check_input(request, model)
        stamp = now()
        doc = {
            "TransformJobName": name,
            "TransformJobArn": arn,
            "TransformJobStatus": "InProgress",
            **{k: copy.deepcopy(request[k]) for k in _ECHOED if k in request},
            "CreationTime": stamp,
            "LastModifiedTime": stamp,
        }
        if not self._store.insert(KIND, name, doc):
            raise _duplicate(arn)
        self.submit(name)
        return {"TransformJobArn": arn}

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        return pick(self._get(request["TransformJobName"]), _DESCRIBE_KEYS)

    def not_found(self, name: str) -> ValidationError:
        return ValidationError(f"Could not find requested job with name {name}")

    def _check_input(self, request: dict[str, Any], model: dict) -> None:
        source = request["TransformInput"]["DataSource"]["S3DataSource"]
        if source["S3DataType"] != "S3Prefix":
            return  # a manifest's entries are read when the job runs
        uri = source["S3Uri"]
        try:
            found = bool(self._runtime.stager.list_keys(uri))
        except StagingError:
            found = False
        if not found:
            bucket = split_s3_uri(uri)[0] if uri.startswith("s3://") else uri
            role = model.get("ExecutionRoleArn", "")
            raise ValidationError(
                f'No S3 objects found under S3 URL "{uri}" given in input data source. Please ensure that the '
                f"bucket exists in the selected region ({self._account.region}), that objects exist under that "
                f'S3 prefix, and that the role "{role}" has "s3:ListBucket" permissions on bucket "{bucket}".'
            )

    # ---- lifecycle
    def _fail(self, name: str, reason: str) -> None:
        self._finish(name, TransformOutcome(failure_reason=reason))

    def _run(self, name: str, control: RunControl) -> None:
        job = self._store.get(KIND, name)
        if job is None:
            return
        if control.stop.is_set():
            self._finish(name, TransformOutcome(status="Stopped"))
            return
        try:
            model = self._models.serving(job["ModelName"])
        except ValidationError as exc:  # deleted between create and run
            self._finish(name, TransformOutcome(failure_reason=f"ClientError: {exc.message}"))
            return
        logs = TransformLogs(lambda stream: LogStreamWriter(self._runtime.logs_client, LOG_GROUP, stream,
                                                      journal=self._runtime.log_journal), name)
        try:
            outcome = run_transform_job(job, model, self._runtime, logs, control, on_started=self._started(name))
        finally:
            logs.close()
        if self._stopped_by_shutdown(name, outcome.status):
            outcome.status, outcome.failure_reason = "Failed", SHUTDOWN_REASON
        self._finish(name, outcome)

    def _started(self, name: str):
        def mark(stamp: float) -> None:
            self._store.update(KIND, name, lambda d: d.update(TransformStartTime=stamp, LastModifiedTime=now()))

        return mark

    def _finish(self, name: str, outcome: TransformOutcome) -> None:
        stamp = now()

        def change(d: dict) -> None:
            d["TransformJobStatus"] = outcome.status
            d["LastModifiedTime"] = stamp
            d["TransformEndTime"] = outcome.ended_at or stamp
            if outcome.started_at is not None:
                d.setdefault("TransformStartTime", outcome.started_at)
            if outcome.status == "Failed" and outcome.failure_reason:
                d["FailureReason"] = outcome.failure_reason

        self._store.update(KIND, name, change)


def _duplicate(arn: str) -> ResourceInUse:
    return ResourceInUse(
        f"Job name must be unique within an AWS account and region, and a job with this name already exists ({arn})"
    )


def check_limits(request: dict[str, Any]) -> None:
    """MaxPayloadInMB ≤ 100 MB and MaxConcurrentTransforms × MaxPayloadInMB ≤ 100 MB (API reference).

    Raises:
        ValidationError: a limit is exceeded.
    """
    payload = request.get("MaxPayloadInMB")
    concurrency = request.get("MaxConcurrentTransforms")
    if payload is not None and payload > MAX_PAYLOAD_MB:
        raise ValidationError(f"MaxPayloadInMB ({payload}) cannot be greater than {MAX_PAYLOAD_MB} MB.")
    if payload and concurrency and payload * concurrency > MAX_PAYLOAD_MB:
        raise ValidationError(
            f"The value of (MaxConcurrentTransforms * MaxPayloadInMB) ({concurrency} * {payload}) cannot exceed "
            f"{MAX_PAYLOAD_MB} MB."
        )
