"""Training jobs: Create/Describe/List/Stop, the job state machine and crash recovery."""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

from smlocal.errors import ResourceInUse, ValidationError, not_found
from smlocal.runtime.backends.base import RunControl
from smlocal.runtime.training import run_training_job
from smlocal.service.common import now
from smlocal.service.experiments import METRIC_SUMMARIES
from smlocal.service.host_logs import HostLogStreams
from smlocal.service.job_family import SHUTDOWN_REASON, JobFamily
from smlocal.service.store import Store

log = logging.getLogger(__name__)

KIND = "TrainingJob"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")
_SUMMARY_KEYS = (
    "TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingEndTime", "LastModifiedTime",
    "TrainingJobStatus", "SecondaryStatus",
)
# request members that DescribeTrainingJob echoes back
_ECHOED = (
    "HyperParameters", "AlgorithmSpecification", "RoleArn", "InputDataConfig", "OutputDataConfig",
    "ResourceConfig", "VpcConfig", "StoppingCondition", "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining", "CheckpointConfig",
    "DebugHookConfig", "DebugRuleConfigurations", "TensorBoardOutputConfig", "ExperimentConfig",
    "ProfilerConfig", "Environment", "RetryStrategy", "RemoteDebugConfig", "InfraCheckConfig",
    "SessionChainingConfig",
    "TuningJobArn",  # set only by a tuning job's own call (the gateway passes no member the model lacks)
)


class TrainingJobs(JobFamily):
    """The training-job family of operations."""

    KIND = KIND
    NOUN = "training job"
    SUMMARY_KEYS = _SUMMARY_KEYS
    RUNTIME_KIND = "training"

    # ---- operations
    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TrainingJobName"]
        arn = self._account.arn("training-job", name)
        _check_request(request)
        stamp = now()
        doc = {
            "TrainingJobName": name,
            "TrainingJobArn": arn,
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Starting",
            **{k: copy.deepcopy(request[k]) for k in _ECHOED if k in request},
            "CreationTime": stamp,
            "LastModifiedTime": stamp,
            "SecondaryStatusTransitions": [],
        }
        doc["AlgorithmSpecification"].setdefault("EnableSageMakerMetricsTimeSeries", False)
        doc.setdefault("EnableNetworkIsolation", False)
        doc.setdefault("EnableInterContainerTrafficEncryption", False)
        doc.setdefault("EnableManagedSpotTraining", False)
        if not self._store.insert(KIND, name, doc):
            raise ResourceInUse(
                "Training job names must be unique within an AWS account and region, and a training "
                f"job with this name already exists ({arn})"
            )
        self.submit(name)
        return {"TrainingJobArn": arn}

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._get(request["TrainingJobName"])

    def not_found(self, name: str) -> ValidationError:
        return not_found()

    # ---- lifecycle
    def _fail(self, name: str, reason: str) -> None:
        self._finish(name, "Failed", "Failed", reason, None, [], None, None)

    def _run(self, name: str, control: RunControl) -> None:
        job = self._store.get(KIND, name)
        if job is None:
            return
        if control.stop.is_set():
            self._finish(name, "Stopped", "Stopped", None, None, [], None, None)
            return
        streams = HostLogStreams(self._runtime.logs_client, LOG_GROUP, name, journal=self._runtime.log_journal)
        streams.open("algo-1")  # the job's first stream exists from its start; the others when their host logs
        reporter = _Reporter(self._store, name, streams)
        try:
            outcome = run_training_job(job, self._runtime, reporter, control)
        finally:
            streams.close()
        if self._stopped_by_shutdown(name, outcome.status):
            outcome.status = outcome.secondary = "Failed"
            outcome.failure_reason = SHUTDOWN_REASON
        if outcome.metric_summaries:  # before the job ends: its trial component shows them once it has
            self._store.put(METRIC_SUMMARIES, job["TrainingJobName"], {"Metrics": outcome.metric_summaries})
        self._finish(name, outcome.status, outcome.secondary, outcome.failure_reason,
                     outcome.model_artifacts, outcome.metrics, outcome.started_at, outcome.ended_at)

    def _finish(self, name, status, secondary, reason, artifacts, metrics, started, ended) -> None:
        stamp = now()
        messages = {
            "Completed": "Training job completed",
            "Failed": "Training job failed",
            "Stopped": "Training job stopped",
            "MaxRuntimeExceeded": "Training job runtime exceeded MaxRuntimeInSeconds provided",
        }

        def change(d: dict) -> None:
            _close_transition(d, stamp)
            d["SecondaryStatusTransitions"].append(
                {"Status": secondary, "StartTime": stamp, "EndTime": stamp, "StatusMessage": messages[secondary]}
            )
            d["TrainingJobStatus"] = status
            d["SecondaryStatus"] = secondary
            d["LastModifiedTime"] = stamp
            d["TrainingEndTime"] = stamp
            if started is not None:
                d.setdefault("TrainingStartTime", started)
            if reason:
                d["FailureReason"] = reason
            if artifacts:
                d["ModelArtifacts"] = {"S3ModelArtifacts": artifacts}
            if metrics:
                d["FinalMetricDataList"] = metrics
            if d.get("TrainingStartTime"):
                seconds = max(1, math.ceil((ended or stamp) - d["TrainingStartTime"]))
                d["TrainingTimeInSeconds"] = seconds
                d["BillableTimeInSeconds"] = seconds * int((d.get("ResourceConfig") or {}).get("InstanceCount", 1))

        self._store.update(KIND, name, change)


class _Reporter:
    """A training job's :class:`~smlocal.runtime.training.TrainingReporter`: status in the store,
    each host's lines in its own stream (``<job>/algo-N-<epoch>``)."""

    def __init__(self, store: Store, name: str, streams: HostLogStreams):
        self._store = store
        self._name = name
        self._streams = streams

    def secondary(self, status: str, message: str) -> None:
        stamp = now()

        def change(d: dict) -> None:
            _close_transition(d, stamp)
            d["SecondaryStatusTransitions"].append({"Status": status, "StartTime": stamp, "StatusMessage": message})
            d["SecondaryStatus"] = status
            d["LastModifiedTime"] = stamp
            if status == "Training":
                d["TrainingStartTime"] = stamp

        self._store.update(KIND, self._name, change)

    def log(self, line: str, host: str = "algo-1") -> None:
        self._streams.write(host, line)


def _close_transition(doc: dict, stamp: float) -> None:
    transitions = doc.setdefault("SecondaryStatusTransitions", [])
    if transitions and "EndTime" not in transitions[-1]:
        transitions[-1]["EndTime"] = stamp


def _check_request(request: dict[str, Any]) -> None:
    """Checks AWS makes at create time that the service model cannot express."""
    spec = request.get("AlgorithmSpecification") or {}  # optional in the model, required to run anything
    if not spec.get("TrainingImage") and not spec.get("AlgorithmName"):
        raise ValidationError("Either TrainingImage or AlgorithmName must be specified in AlgorithmSpecification.")
    names = [c["ChannelName"] for c in request.get("InputDataConfig") or []]
    dots = sorted({n for n in names if n in (".", "..")})
    if dots:  # the model's pattern allows them, but each channel is a folder /opt/ml/input/data/<name>
        raise ValidationError(f"Channel names {dots} are not valid: a channel name cannot be '.' or '..'.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValidationError(f"Channel names must be unique. Duplicate channel names: {duplicates}")
    _check_channel_groups(request)


def _check_channel_groups(request: dict[str, Any]) -> None:
    """Heterogeneous clusters: ResourceConfig has InstanceGroups or InstanceType/InstanceCount, not both;
    all channels name instance groups (S3DataSource.InstanceGroupNames) or none does; each named group
    is one of ResourceConfig.InstanceGroups.

    AWS's wording of the first two: "InstanceType or InstanceCount cannot be specified with
    InstanceGroups" (quoted in sagemaker-python-sdk PR #5564) and "Some channels have assigned instance
    groups: [test, train] while others not: [sm_drivers, code]" (sagemaker-python-sdk issues #5225,
    #6089: the all-or-nothing rule). The unknown-group message is smlocal's own.
    """
    resources = request.get("ResourceConfig") or {}
    if resources.get("InstanceGroups") and ("InstanceType" in resources or "InstanceCount" in resources):
        raise ValidationError("InstanceType or InstanceCount cannot be specified with InstanceGroups")
    channels = request.get("InputDataConfig") or []
    named = {c["ChannelName"]: ((c.get("DataSource") or {}).get("S3DataSource") or {}).get("InstanceGroupNames")
             for c in channels}
    assigned = [name for name, groups in named.items() if groups]
    if not assigned:
        return
    others = [name for name, groups in named.items() if not groups]
    if others:
        raise ValidationError(f"Some channels have assigned instance groups: [{', '.join(assigned)}] while others not: "
                              f"[{', '.join(others)}]")
    known = [g.get("InstanceGroupName") for g in (request.get("ResourceConfig") or {}).get("InstanceGroups") or []]
    for name in assigned:
        unknown = [group for group in named[name] if group not in known]
        if unknown:
            raise ValidationError(f"Channel {name}: the instance groups {unknown} in InstanceGroupNames are not "
                                  f"instance groups of the job (ResourceConfig.InstanceGroups: {known}).")
