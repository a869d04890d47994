"""Hyperparameter tuning jobs: random and grid search over local training jobs.

A tuning job runs on its own thread: it creates training jobs (``<tuning job>-<NNN>-<8 hex>``)
through the training family, at most ``MaxParallelTrainingJobs`` at a time, reads each job's
objective metric from its ``FinalMetricDataList`` and keeps the best one.

The objective must be one of the MetricDefinitions or, for a built-in algorithm (XGBoost, k-NN), one
of the metrics the algorithm is tuned on (``runtime/algorithms/metrics.py``; no MetricDefinitions
needed, as on AWS). As on AWS, the tuning job gets the experiment ``<tuning job>-aws-tuning-job``
with a trial ``<training job>-aws-training-job`` per training job, holding that job's trial component.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from typing import Any

from smlocal.errors import ResourceInUse, ResourceNotFound, ServiceError, ValidationError
from smlocal.runtime.algorithms import metrics as builtin_metrics
from smlocal.runtime.images import UnresolvableImage, resolve_runtime
from smlocal.service import tuning_search as search
from smlocal.service.common import Account, list_page, now, pick
from smlocal.service.store import Store

log = logging.getLogger(__name__)

KIND = "HyperParameterTuningJob"
_RECOVERED = "InternalServerError: the smlocal server stopped while this tuning job was running."
_SHUTDOWN = "InternalServerError: the smlocal server shut down while this tuning job was running."
_TRAINING_KEYS = ("RoleArn", "InputDataConfig", "VpcConfig", "OutputDataConfig", "ResourceConfig", "StoppingCondition",
                  "EnableNetworkIsolation", "EnableInterContainerTrafficEncryption", "EnableManagedSpotTraining",
                  "CheckpointConfig", "RetryStrategy", "Environment")
_SUMMARY = ("HyperParameterTuningJobName", "HyperParameterTuningJobArn", "HyperParameterTuningJobStatus",
            "CreationTime", "HyperParameterTuningEndTime", "LastModifiedTime", "TrainingJobStatusCounters",
            "ObjectiveStatusCounters")
_COUNTERS = {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}
# AWS's wording (seen in aws/sagemaker-python-sdk#3932 and aws/amazon-sagemaker-examples#1207)
_NO_METRIC = ("A metric is required for this hyperparameter tuning job objective. Provide a metric in the metric "
              "definitions.")
EXPERIMENT_SUFFIX = "-aws-tuning-job"
TRIAL_SUFFIX = "-aws-training-job"


class TuningJobs:
    """Create/Describe/List/Stop hyperparameter tuning jobs and ListTrainingJobsForHyperParameterTuningJob."""

    def __init__(self, store: Store, account: Account, service, poll_seconds: float = 0.1,
                 experiments=None):
        self._store = store
        self._account = account
        self._service = service
        self._experiments = experiments
        self._poll = poll_seconds
        self._stops: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()

    def operations(self) -> dict:
        return {
            "CreateHyperParameterTuningJob": self.create, "DescribeHyperParameterTuningJob": self.describe,
            "ListHyperParameterTuningJobs": self.list, "StopHyperParameterTuningJob": self.stop,
            "ListTrainingJobsForHyperParameterTuningJob": self.list_training_jobs,
        }  # fmt: skip

    def recover(self) -> int:
        count = 0
        for doc in self._store.all(KIND):
            if doc["HyperParameterTuningJobStatus"] in ("InProgress", "Stopping"):
                self._store.update(KIND, doc["HyperParameterTuningJobName"], lambda d: d.update(
                    HyperParameterTuningJobStatus="Failed", FailureReason=_RECOVERED, HyperParameterTuningEndTime=now()))
                count += 1
        return count

    def close(self) -> None:
        self._closing.set()
        for thread in self._threads:
            thread.join(timeout=5)

    # ---- operations
    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["HyperParameterTuningJobName"]
        if request.get("TrainingJobDefinitions") or not request.get("TrainingJobDefinition"):
            raise ValidationError("smlocal runs tuning jobs with exactly one TrainingJobDefinition "
                                  "(TrainingJobDefinitions with several algorithms are not emulated).")
        config, definition = request["HyperParameterTuningJobConfig"], request["TrainingJobDefinition"]
        objective = config.get("HyperParameterTuningJobObjective") or definition.get("TuningObjective")
        if not objective:
            raise ValidationError("HyperParameterTuningJobObjective is required.")
        if not definition.get("ResourceConfig") and not definition.get("HyperParameterTuningResourceConfig"):
            raise ValidationError("The TrainingJobDefinition must specify either ResourceConfig or "
                                  "HyperParameterTuningResourceConfig.")
        ranges = config.get("ParameterRanges") or definition.get("HyperParameterRanges") or {}
        search.validate({**config, "ParameterRanges": ranges})
        metrics = self._metric_definitions(definition, objective["MetricName"])
        arn = self._account.arn("hyper-parameter-tuning-job", name)
        stamp = now()
        doc = {
            "HyperParameterTuningJobName": name, "HyperParameterTuningJobArn": arn,
            "HyperParameterTuningJobConfig": copy.deepcopy(config), "TrainingJobDefinition": copy.deepcopy(definition),
            "HyperParameterTuningJobStatus": "InProgress", "CreationTime": stamp, "LastModifiedTime": stamp,
            "TrainingJobStatusCounters": dict(_COUNTERS),
            "ObjectiveStatusCounters": {"Succeeded": 0, "Pending": 0, "Failed": 0},
            "_Objective": objective, "_Ranges": ranges, "_MetricDefinitions": metrics, "_Children": [],
        }  # fmt: skip
        if not self._store.insert(KIND, name, doc):
            raise ResourceInUse(f"Hyperparameter tuning job names must be unique within an AWS account and region, "
                                f"and a tuning job with this name already exists ({arn})")
        self._experiment(doc)
        stop = self._stops[name] = threading.Event()
        thread = threading.Thread(target=self._run, args=(name, stop), name=f"smlocal-tuning-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return {"HyperParameterTuningJobArn": arn}

    def _metric_definitions(self, definition: dict, objective: str) -> list[dict]:
        """The MetricDefinitions the training jobs get; raises AWS's error if the objective is not emitted."""
        given = definition["AlgorithmSpecification"].get("MetricDefinitions") or []
        if any(m.get("Name") == objective for m in given):
            return given
        algorithm = self._builtin_algorithm(definition)
        if algorithm and objective in builtin_metrics.objectives(algorithm):
            return given  # the service knows the built-in algorithm's metrics: none need defining
        raise ValidationError(_NO_METRIC)

    @staticmethod
    def _builtin_algorithm(definition: dict) -> str | None:
        spec = definition["AlgorithmSpecification"]
        try:
            runtime = resolve_runtime(spec.get("TrainingImage") or "", has_entry_point=bool(
                (definition.get("StaticHyperParameters") or {}).get("sagemaker_program")))
        except UnresolvableImage:
            return None
        return runtime.algorithm if runtime.kind == "algorithm" else None

    def _experiment(self, doc: dict) -> None:
        if self._experiments is None:
            return
        try:
            self._experiments.ensure_experiment(doc["HyperParameterTuningJobName"] + EXPERIMENT_SUFFIX, {
                "SourceArn": doc["HyperParameterTuningJobArn"], "SourceType": "SageMakerHyperParameterTuningJob"})
        except ServiceError as exc:
            log.warning("could not create the experiment of tuning job %s: %s", doc["HyperParameterTuningJobName"],
                        exc)

    def _trial(self, doc: dict, child: str, arn: str) -> None:
        """The training job's trial in the tuning job's experiment, holding the job's trial component."""
        if self._experiments is None:
            return
        trial = child + TRIAL_SUFFIX
        try:
            self._experiments.ensure_trial(doc["HyperParameterTuningJobName"] + EXPERIMENT_SUFFIX, trial,
                                           {"SourceArn": arn, "SourceType": "SageMakerTrainingJob"})
            self._experiments.record_job(trial, "training-job", child)
        except ServiceError as exc:
            log.warning("could not record training job %s in its tuning experiment: %s", child, exc)

    def _job(self, name: str) -> dict:
        doc = self._store.get(KIND, name)
        if doc is None:
            raise ResourceNotFound(f"Amazon SageMaker can't find a tuning job with name {name}")
        return doc

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._job(request["HyperParameterTuningJobName"])
        return {k: v for k, v in doc.items() if not k.startswith("_")}

    def list(self, request: dict[str, Any]) -> dict[str, Any]:
        page, token = list_page(self._store.all(KIND), request, name_key="HyperParameterTuningJobName",
                                status_key="HyperParameterTuningJobStatus")
        summaries = []
        for doc in page:
            summary = pick(doc, _SUMMARY)
            summary["Strategy"] = doc["HyperParameterTuningJobConfig"]["Strategy"]
            summary["ResourceLimits"] = doc["HyperParameterTuningJobConfig"]["ResourceLimits"]
            summaries.append(summary)
        result: dict[str, Any] = {"HyperParameterTuningJobSummaries": summaries}
        if token:
            result["NextToken"] = token
        return result

    def stop(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._job(request["HyperParameterTuningJobName"])
        name = doc["HyperParameterTuningJobName"]  # as created (the request's case may differ)
        if doc["HyperParameterTuningJobStatus"] != "InProgress":
            raise ValidationError(f"The hyperparameter tuning job is in status {doc['HyperParameterTuningJobStatus']}"
                                  " and cannot be stopped.")
        self._store.update(KIND, name, lambda d: d.update(HyperParameterTuningJobStatus="Stopping",
                                                          LastModifiedTime=now()))
        if name in self._stops:
            self._stops[name].set()
        return {}

    def list_training_jobs(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._job(request["HyperParameterTuningJobName"])
        children = [c for c in doc["_Children"] if not request.get("StatusEquals")
                    or c["TrainingJobStatus"] == request["StatusEquals"]]
        sort_by = request.get("SortBy") or "Name"
        if sort_by == "FinalObjectiveMetricValue":
            children = [c for c in children if c.get("FinalHyperParameterTuningJobObjectiveMetric")]
            for child in children:
                child["_Value"] = child["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        keys = {"Name": "TrainingJobName", "CreationTime": "CreationTime", "Status": "TrainingJobStatus",
                "FinalObjectiveMetricValue": "_Value"}
        query = {**request, "SortBy": sort_by, "SortOrder": request.get("SortOrder") or "Ascending"}
        page, token = list_page(children, query, name_key="TrainingJobName", sort_keys=keys, default_sort="Name")
        result: dict[str, Any] = {"TrainingJobSummaries": [{k: v for k, v in c.items() if not k.startswith("_")}
                                                           for c in page]}
        if token:
            result["NextToken"] = token
        return result

    # ---- the search
    def _run(self, name: str, stop: threading.Event) -> None:
        try:
            self._search(name, stop)
        except Exception as exc:  # noqa: BLE001 - a tuning job must always end
            log.exception("tuning job %s crashed", name)
            self._finish(name, "Failed", f"InternalServerError: {exc!r}")

    def _search(self, name: str, stop: threading.Event) -> None:
        doc = self._store.get(KIND, name)
        config = {**doc["HyperParameterTuningJobConfig"], "ParameterRanges": doc["_Ranges"]}
        limits = config["ResourceLimits"]
        max_jobs = limits.get("MaxNumberOfTrainingJobs") or (search.grid_size(config) if config["Strategy"] == "Grid"
                                                             else 1)
        pending = list(search.candidates(config, max_jobs))
        parallel = max(1, limits.get("MaxParallelTrainingJobs") or 1)
        running: dict[str, dict] = {}
        index = 0
        while pending or running:
            if stop.is_set() or self._closing.is_set():
                for child in running:
                    try:
                        self._service.call("StopTrainingJob", {"TrainingJobName": child})
                    except ServiceError:
                        pass
                pending = []
            while pending and len(running) < parallel:
                index += 1
                tuned = pending.pop(0)
                child = f"{name}-{index:03d}-{secrets.token_hex(4)}"
                try:
                    created = self._service.call("CreateTrainingJob", self._training_request(doc, child, tuned))
                    self._trial(doc, child, created["TrainingJobArn"])
                except ServiceError as exc:
                    self._record(name, {"TrainingJobName": child, "TrainingJobArn": self._account.arn(
                        "training-job", child), "TuningJobName": name, "CreationTime": now(),
                        "TrainingJobStatus": "Failed", "TunedHyperParameters": tuned,
                        "FailureReason": exc.message, "ObjectiveStatus": "Failed"})
                    continue
                running[child] = tuned
                self._store.update(KIND, name, _in_progress(+1))
            for child, tuned in list(running.items()):
                job = self._service.call("DescribeTrainingJob", {"TrainingJobName": child})
                if job["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
                    del running[child]
                    self._store.update(KIND, name, _in_progress(-1))
                    self._record(name, self._summary(doc, job, tuned))
            time.sleep(self._poll)
        final = self._store.get(KIND, name)
        if self._closing.is_set() and not stop.is_set():
            self._finish(name, "Failed", _SHUTDOWN)
        elif stop.is_set():
            self._finish(name, "Stopped", None)
        elif final.get("BestTrainingJob"):
            self._finish(name, "Completed", None)
        else:
            self._finish(name, "Failed", "No training job succeeded with a value of the objective metric.")

    def _training_request(self, doc: dict, child: str, tuned: dict) -> dict:
        definition = doc["TrainingJobDefinition"]
        spec = {k: v for k, v in definition["AlgorithmSpecification"].items()
                if k in ("TrainingImage", "TrainingInputMode", "AlgorithmName")}
        if doc["_MetricDefinitions"]:
            spec["MetricDefinitions"] = doc["_MetricDefinitions"]
        hyperparameters = {**(definition.get("StaticHyperParameters") or {}), **tuned,
                           "_tuning_objective_metric": doc["_Objective"]["MetricName"]}
        request = {"TrainingJobName": child, "AlgorithmSpecification": spec, "HyperParameters": hyperparameters,
                   "TuningJobArn": doc["HyperParameterTuningJobArn"]}  # DescribeTrainingJob shows it
        request.update({k: copy.deepcopy(definition[k]) for k in _TRAINING_KEYS if k in definition})
        if "ResourceConfig" not in request:
            request["ResourceConfig"] = _resource_config(definition["HyperParameterTuningResourceConfig"])
        return request

    def _summary(self, doc: dict, job: dict, tuned: dict) -> dict:
        objective = doc["_Objective"]
        summary = {k: job[k] for k in ("TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingStartTime",
                                      "TrainingEndTime", "TrainingJobStatus", "FailureReason") if job.get(k)}
        summary.update(TuningJobName=doc["HyperParameterTuningJobName"], TunedHyperParameters=tuned)
        value = next((m["Value"] for m in job.get("FinalMetricDataList") or []
                      if m["MetricName"] == objective["MetricName"]), None)
        if value is not None and job["TrainingJobStatus"] == "Completed":
            summary["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": objective["Type"], "MetricName": objective["MetricName"], "Value": value}
            summary["ObjectiveStatus"] = "Succeeded"
        else:
            summary["ObjectiveStatus"] = "Failed"
        return summary

    def _record(self, name: str, summary: dict) -> None:
        def change(d: dict) -> None:
            d["_Children"].append(summary)
            counters = dict(_COUNTERS)
            objectives = {"Succeeded": 0, "Pending": 0, "Failed": 0}
            for child in d["_Children"]:
                status = child["TrainingJobStatus"]
                counters["NonRetryableError" if status == "Failed" else status] += 1
                objectives[child["ObjectiveStatus"]] += 1
            counters["InProgress"] = objectives["Pending"] = d.get("_InProgress", 0)
            d["TrainingJobStatusCounters"], d["ObjectiveStatusCounters"] = counters, objectives
            top = search.best(d["_Objective"], d["_Children"])
            if top is not None:
                d["BestTrainingJob"] = top
            d["LastModifiedTime"] = now()

        self._store.update(KIND, name, change)

    def _finish(self, name: str, status: str, reason: str | None) -> None:
        def change(d: dict) -> None:
            d.update(HyperParameterTuningJobStatus=status, HyperParameterTuningEndTime=now(), LastModifiedTime=now())
            if reason:
                d["FailureReason"] = reason

        try:
            self._store.update(KIND, name, change)
        except Exception:  # noqa: BLE001 - the store may be closed at shutdown
            log.warning("could not record the end of tuning job %s", name)


def _resource_config(tuning: dict) -> dict:
    """The ResourceConfig of a training job from HyperParameterTuningResourceConfig (what SDK v2 sends).

    With ``InstanceConfigs`` (several instance types, Prioritized) the first one is used.
    """
    chosen = (tuning.get("InstanceConfigs") or [tuning])[0]
    config = {k: chosen[k] for k in ("InstanceType", "InstanceCount", "VolumeSizeInGB") if k in chosen}
    if tuning.get("VolumeKmsKeyId"):
        config["VolumeKmsKeyId"] = tuning["VolumeKmsKeyId"]
    return config


def _in_progress(delta: int):
    def change(d: dict) -> None:
        d["_InProgress"] = d.get("_InProgress", 0) + delta
        d["TrainingJobStatusCounters"]["InProgress"] = d["ObjectiveStatusCounters"]["Pending"] = d["_InProgress"]

    return change
