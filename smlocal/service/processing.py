"""Processing jobs: Create/Describe/List/Stop, the job state machine and crash recovery."""

from __future__ import annotations

import copy
import logging
from typing import Any

from smlocal.errors import ResourceInUse, ValidationError
from smlocal.runtime import contract
from smlocal.runtime.backends.base import RunControl
from smlocal.runtime.processing import KIND as RUNTIME_KIND
from smlocal.runtime.processing import ProcessingOutcome, run_processing_job
from smlocal.service.common import now
from smlocal.service.host_logs import HostLogStreams
from smlocal.service.job_family import SHUTDOWN_REASON, JobFamily
from smlocal.service.store import Store

log = logging.getLogger(__name__)

KIND = "ProcessingJob"
LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
DEFAULT_MAX_RUNTIME = 86400  # ProcessingStoppingCondition when the request gives none (a day)
_SUMMARY_KEYS = (
    "ProcessingJobName", "ProcessingJobArn", "CreationTime", "ProcessingEndTime", "LastModifiedTime",
    "ProcessingJobStatus", "FailureReason", "ExitMessage",
)
# request members that DescribeProcessingJob echoes back
_ECHOED = (
    "ProcessingInputs", "ProcessingOutputConfig", "ProcessingResources", "StoppingCondition",
    "AppSpecification", "Environment", "NetworkConfig", "RoleArn", "ExperimentConfig",
)
_SORT_KEYS = {"Name": "ProcessingJobName", "CreationTime": "CreationTime", "Status": "ProcessingJobStatus"}


class ProcessingJobs(JobFamily):
    """The processing-job family of operations."""

    KIND = KIND
    NOUN = "processing job"
    SUMMARY_KEYS = _SUMMARY_KEYS
    SORT_KEYS = _SORT_KEYS
    RUNTIME_KIND = RUNTIME_KIND

    # ---- operations
    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ProcessingJobName"]
        arn = self._account.arn("processing-job", name)
        check_request(request)
        stamp = now()
        doc = {
            "ProcessingJobName": name,
            "ProcessingJobArn": arn,
            "ProcessingJobStatus": "InProgress",
            **{k: copy.deepcopy(request[k]) for k in _ECHOED if k in request},
            "CreationTime": stamp,
            "LastModifiedTime": stamp,
        }
        _fill_defaults(doc)
        if not self._store.insert(KIND, name, doc):
            raise ResourceInUse(
                "Job name must be unique within an AWS account and region, and a job with this name "
                f"already exists ({arn})"
            )
        self.submit(name)
        return {"ProcessingJobArn": arn}

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._get(request["ProcessingJobName"])

    def not_found(self, name: str) -> ValidationError:
        return ValidationError(f"Could not find processing job '{self._account.arn('processing-job', name)}'.")

    # ---- lifecycle
    def _fail(self, name: str, reason: str) -> None:
        self._finish(name, ProcessingOutcome(failure_reason=reason))

    def _run(self, name: str, control: RunControl) -> None:
        job = self._store.get(KIND, name)
        if job is None:
            return
        if control.stop.is_set():
            self._finish(name, ProcessingOutcome(status="Stopped"))
            return
        reporter = _Reporter(self._store, name, self._runtime.logs_client, self._runtime.log_journal)
        try:
            outcome = run_processing_job(job, self._runtime, reporter, control)
        finally:
            reporter.close()
        if self._stopped_by_shutdown(name, outcome.status):
            outcome.status, outcome.failure_reason = "Failed", SHUTDOWN_REASON
        self._finish(name, outcome)

    def _finish(self, name: str, outcome: ProcessingOutcome) -> None:
        stamp = now()

        def change(d: dict) -> None:
            d["ProcessingJobStatus"] = outcome.status
            d["LastModifiedTime"] = stamp
            d["ProcessingEndTime"] = stamp
            if outcome.started_at is not None:
                d.setdefault("ProcessingStartTime", outcome.started_at)
            if outcome.status == "Failed" and outcome.failure_reason:
                d["FailureReason"] = outcome.failure_reason
            if outcome.exit_message is not None:
                d["ExitMessage"] = outcome.exit_message

        self._store.update(KIND, name, change)


class _Reporter:
    """One CloudWatch stream per host (``<job>/algo-N-<epoch>``), opened when the host first logs."""

    def __init__(self, store: Store, name: str, logs_client, journal=None):
        self._store = store
        self._name = name
        self._streams = HostLogStreams(logs_client, LOG_GROUP, name, journal=journal)

    def started(self) -> None:
        stamp = now()
        self._store.update(KIND, self._name, lambda d: d.update(ProcessingStartTime=stamp, LastModifiedTime=stamp))

    def log(self, host: str, line: str) -> None:
        self._streams.write(host, line)

    def close(self) -> None:
        self._streams.close()


def _fill_defaults(doc: dict[str, Any]) -> None:
    """The defaults DescribeProcessingJob shows for members the request left out."""
    for item in doc.get("ProcessingInputs") or []:
        item.setdefault("AppManaged", False)
        s3 = item.get("S3Input")
        if s3:
            s3.setdefault("S3InputMode", "File")
            s3.setdefault("S3DataDistributionType", "FullyReplicated")
            s3.setdefault("S3CompressionType", "None")
    for item in (doc.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
        item.setdefault("AppManaged", False)
        if item.get("S3Output"):
            item["S3Output"].setdefault("S3UploadMode", "EndOfJob")
    doc.setdefault("StoppingCondition", {"MaxRuntimeInSeconds": DEFAULT_MAX_RUNTIME})


def check_request(request: dict[str, Any]) -> None:
    """Checks CreateProcessingJob makes that the service model cannot express.

    Raises:
        ValidationError: A LocalPath outside /opt/ml/processing/, a duplicate input or output
            name, two inputs on one LocalPath, or Gzip compression without Pipe mode.
    """
    contract.processing_layout(request, job_name=request["ProcessingJobName"], current_host="algo-1",
                               hosts=("algo-1",), num_cpus=1)
    seen: dict[str, str] = {}
    for item in request.get("ProcessingInputs") or []:
        s3 = item.get("S3Input") or {}
        local = s3.get("LocalPath") or (item.get("DatasetDefinition") or {}).get("LocalPath")
        if local is None and s3 and not item.get("AppManaged"):
            raise ValidationError(f"ProcessingInput {item['InputName']}: LocalPath is a required parameter "
                                  "when AppManaged is False.")
        if local is not None:
            key = local.rstrip("/")
            if key in seen:
                raise ValidationError(f"ProcessingInput {item['InputName']}: LocalPath {local} is already "
                                      f"used by ProcessingInput {seen[key]}. Each input needs its own LocalPath.")
            seen[key] = item["InputName"]
        if s3.get("S3CompressionType") == "Gzip" and s3.get("S3InputMode", "File") != "Pipe":
            raise ValidationError(f"ProcessingInput {item['InputName']}: S3CompressionType Gzip can only "
                                  "be used when Pipe mode is specified as the S3InputMode.")
