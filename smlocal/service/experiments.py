"""Experiments, trials and trial components — the part pipelines use.

Every training, processing and transform job gets a trial component named
``<job name>-aws-<training|processing|transform>-job`` with the job as its source, as on AWS
(:meth:`Experiments.record_created`, run after each successful Create*Job); its status, times,
parameters, artifacts and metrics are read from the job when it is described or listed. A job whose
``ExperimentConfig`` names a trial has its component associated with that trial.

A pipeline with a ``PipelineExperimentConfig`` (the SDK's default: experiment = pipeline name,
trial = execution id) gets its experiment and trial created when an execution starts, and every job
the execution runs is associated with that trial. A hyperparameter tuning job gets the experiment
``<tuning job>-aws-tuning-job`` with one trial per training job (``<training job>-aws-training-job``)
holding that job's component.

``sagemaker.experiments.Run`` works on components it creates itself (``<experiment>-<run>``, tagged
``sagemaker:trial-component-source=run``): UpdateTrialComponent keeps what it logs (parameters,
artifacts, status, times), the Metrics service (:mod:`smlocal.service.experiment_metrics`) its
``log_metric`` values, summarised in the component's ``Metrics``; ``Search`` over
``ExperimentTrialComponent`` (:mod:`smlocal.service.search_api`) answers ``list_runs``, ``load_run`` and
``ExperimentAnalytics``.
"""

from __future__ import annotations

import logging
from typing import Any

from smlocal.errors import ResourceNotFound, ServiceError, ValidationError
from smlocal.service.common import Account, list_page, naming, now, pick
from smlocal.service.experiment_metrics import ExperimentMetrics
from smlocal.service.store import Store
from smlocal.service.tags import KIND as TAGS

log = logging.getLogger(__name__)

EXPERIMENT, TRIAL, COMPONENT = "Experiment", "Trial", "TrialComponent"
# a training job's metric statistics over its whole log (written by the training service as the job ends)
METRIC_SUMMARIES = "TrainingJobMetricSummary"
_SOURCE_TYPES = {"training-job": "SageMakerTrainingJob", "processing-job": "SageMakerProcessingJob",
                 "transform-job": "SageMakerTransformJob"}
# Create operation -> (component kind, request key of the job name, response key of its ARN)
_CREATES = {"CreateTrainingJob": ("training-job", "TrainingJobName", "TrainingJobArn"),
            "CreateProcessingJob": ("processing-job", "ProcessingJobName", "ProcessingJobArn"),
            "CreateTransformJob": ("transform-job", "TransformJobName", "TransformJobArn")}
# component kind -> (store kind, status key, start key, end key)
_JOBS = {"training-job": ("TrainingJob", "TrainingJobStatus", "TrainingStartTime", "TrainingEndTime"),
         "processing-job": ("ProcessingJob", "ProcessingJobStatus", "ProcessingStartTime", "ProcessingEndTime"),
         "transform-job": ("TransformJob", "TransformJobStatus", "TransformStartTime", "TransformEndTime")}
# UpdateTrialComponent's limits on the component's maps (the botocore model's max of each request map)
_MAP_LIMITS = {"Parameters": 300, "InputArtifacts": 60, "OutputArtifacts": 60}


class Experiments:
    """Create/Describe/List/Delete Experiment, Trial, TrialComponent and their associations."""

    def __init__(self, store: Store, account: Account):
        self._store = store
        self._account = account
        self.metrics = ExperimentMetrics(store, self._component, self._name_of_arn)

    def operations(self) -> dict:
        return {
            "CreateExperiment": self.create_experiment, "DescribeExperiment": self.describe_experiment,
            "ListExperiments": self.list_experiments, "DeleteExperiment": self.delete_experiment,
            "CreateTrial": self.create_trial, "DescribeTrial": self.describe_trial,
            "ListTrials": self.list_trials, "DeleteTrial": self.delete_trial,
            "CreateTrialComponent": self.create_component, "DescribeTrialComponent": self.describe_component,
            "ListTrialComponents": self.list_components, "DeleteTrialComponent": self.delete_component,
            "AssociateTrialComponent": self.associate, "DisassociateTrialComponent": self.disassociate,
            "UpdateTrialComponent": self.update_component,
            **self.metrics.operations(),  # the SageMaker Metrics service (routed by the gateway)
        }  # fmt: skip

    def recover(self) -> int:
        return 0

    def close(self) -> None:
        pass

    # ---- used by the service (jobs), the pipeline executor and tuning jobs
    def ensure_experiment(self, experiment: str, source: dict | None = None) -> None:
        """Creates the experiment unless it exists; ``source`` ({SourceArn, SourceType}) marks one AWS made."""
        if self._store.exists(EXPERIMENT, experiment):
            return
        try:
            self.create_experiment({"ExperimentName": experiment})
        except ValidationError:
            return  # created concurrently
        if source:
            self._store.update(EXPERIMENT, experiment, lambda d: d.update(Source=source))

    def ensure_trial(self, experiment: str, trial: str, source: dict | None = None) -> None:
        """Creates the experiment and the trial unless they exist (as a pipeline execution does)."""
        self.ensure_experiment(experiment)
        if not self._store.exists(TRIAL, trial):
            try:
                self.create_trial({"TrialName": trial, "ExperimentName": experiment})
            except ValidationError:
                return
            if source:
                self._store.update(TRIAL, trial, lambda d: d.update(Source=source))

    def record_job(self, trial: str, kind: str, job_name: str) -> None:
        """Adds a job's trial component to ``trial`` (when the trial exists).

        Every job is created through the service (pipeline steps and tuning jobs included), whose
        after-call hook :meth:`record_created` has made the component already.
        """
        if self._store.exists(TRIAL, trial):
            self.associate({"TrialComponentName": f"{job_name}-aws-{kind}", "TrialName": trial})

    def record_created(self, operation: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        """After-call hook: a created job gets its ``<job>-aws-<kind>`` trial component, as on AWS."""
        if operation not in _CREATES:
            return
        kind, name_key, arn_key = _CREATES[operation]
        try:  # the job exists already: its create must not fail for its component
            self._job_component(kind, request[name_key], response[arn_key])
            trial = (request.get("ExperimentConfig") or {}).get("TrialName")
            if trial:
                self.record_job(trial, kind, request[name_key])
        except ServiceError as exc:
            log.warning("could not record the trial component of %s: %s", request.get(name_key), exc)

    def _job_component(self, kind: str, job_name: str, job_arn: str) -> None:
        name = f"{job_name}-aws-{kind}"
        stamp = now()
        doc = {"TrialComponentName": name, "TrialComponentArn": self._account.arn("experiment-trial-component", name),
               "DisplayName": job_name, "Source": {"SourceArn": job_arn, "SourceType": _SOURCE_TYPES.get(kind, kind)},
               "CreationTime": stamp, "LastModifiedTime": stamp, "_Trials": [], "_Job": [kind, job_name]}
        self._store.insert(COMPONENT, name, doc)

    def _live(self, doc: dict) -> dict:
        """A job's component with what the job says now: status, times, parameters, artifacts, metrics."""
        kind, job_name = doc.get("_Job") or (None, None)
        if kind not in _JOBS:
            return doc
        store_kind, status_key, start_key, end_key = _JOBS[kind]
        job = self._store.get(store_kind, job_name)
        if job is None:
            return doc
        summaries = self._store.get(METRIC_SUMMARIES, job_name) if kind == "training-job" else None
        fields = job_component_fields(job, status_key, start_key, end_key, (summaries or {}).get("Metrics"))
        for key in _MAP_LIMITS:  # what UpdateTrialComponent added beside the job's own
            if doc.get(key) and key in fields:
                fields[key] = {**doc[key], **fields[key]}
        return {**doc, **fields}

    def _full(self, doc: dict) -> dict:
        """The component as Describe shows it: the job's fields and the metrics logged to it."""
        doc = self._live(doc)
        logged = self.metrics.summaries(doc["TrialComponentName"], doc["TrialComponentArn"])
        if logged:
            names = {m["MetricName"] for m in logged}
            doc["Metrics"] = [m for m in doc.get("Metrics") or [] if m["MetricName"] not in names] + logged
        return doc

    def _name_of_arn(self, arn: str) -> str | None:
        """The name of the existing trial component whose ARN is ``arn``, else None."""
        name = naming(COMPONENT).name_of(arn)
        doc = self._store.get(COMPONENT, name) if name != arn else None
        return doc["TrialComponentName"] if doc and doc["TrialComponentArn"] == arn else None

    # ---- experiments
    def create_experiment(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ExperimentName"]
        arn = self._account.arn("experiment", name)
        stamp = now()
        doc = {"ExperimentName": name, "ExperimentArn": arn, "DisplayName": request.get("DisplayName") or name,
               "Description": request.get("Description"), "CreationTime": stamp, "LastModifiedTime": stamp}
        if not self._store.insert(EXPERIMENT, name, _clean(doc)):
            raise ValidationError(f"Experiment with name ({name}) already exists.")
        return {"ExperimentArn": arn}

    def _get(self, kind: str, name: str, label: str) -> dict:
        doc = self._store.get(kind, name)
        if doc is None:
            raise ResourceNotFound(f"{label} '{self._account.arn(_ARN_KIND[kind], name)}' does not exist.")
        return doc

    def describe_experiment(self, request: dict[str, Any]) -> dict[str, Any]:
        return _public(self._get(EXPERIMENT, request["ExperimentName"], "Experiment"))

    def list_experiments(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._list(EXPERIMENT, "ExperimentName", "ExperimentSummaries",
                          ("ExperimentArn", "ExperimentName", "DisplayName", "CreationTime", "LastModifiedTime"),
                          self._store.all(EXPERIMENT), request)

    def delete_experiment(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._get(EXPERIMENT, request["ExperimentName"], "Experiment")
        if any(t["ExperimentName"] == doc["ExperimentName"] for t in self._store.all(TRIAL)):
            raise ValidationError("Experiment must not have any trials when deleting an experiment.")
        self._store.delete(EXPERIMENT, doc["ExperimentName"])
        return {"ExperimentArn": doc["ExperimentArn"]}

    # ---- trials
    def create_trial(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TrialName"]
        experiment = self._get(EXPERIMENT, request["ExperimentName"], "Experiment")["ExperimentName"]  # any case
        arn = self._account.arn("experiment-trial", name)
        stamp = now()
        doc = {"TrialName": name, "TrialArn": arn, "DisplayName": request.get("DisplayName") or name,
               "ExperimentName": experiment, "MetadataProperties": request.get("MetadataProperties"),
               "CreationTime": stamp, "LastModifiedTime": stamp}
        if not self._store.insert(TRIAL, name, _clean(doc)):
            raise ValidationError(f"Trial with name ({name}) already exists.")
        return {"TrialArn": arn}

    def describe_trial(self, request: dict[str, Any]) -> dict[str, Any]:
        return _public(self._get(TRIAL, request["TrialName"], "Trial"))

    def list_trials(self, request: dict[str, Any]) -> dict[str, Any]:
        items = self._store.all(TRIAL)
        if request.get("ExperimentName"):
            experiment = self._get(EXPERIMENT, request["ExperimentName"], "Experiment")["ExperimentName"]
            items = [t for t in items if t["ExperimentName"] == experiment]
        if request.get("TrialComponentName"):
            component = self._get(COMPONENT, request["TrialComponentName"], "TrialComponent")
            items = [t for t in items if t["TrialName"] in component.get("_Trials", [])]
        return self._list(TRIAL, "TrialName", "TrialSummaries",
                          ("TrialArn", "TrialName", "DisplayName", "CreationTime", "LastModifiedTime"), items, request)

    def delete_trial(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._get(TRIAL, request["TrialName"], "Trial")
        if any(doc["TrialName"] in c.get("_Trials", []) for c in self._store.all(COMPONENT)):
            raise ValidationError("Trial must not have any trial components associated when deleting a trial.")
        self._store.delete(TRIAL, doc["TrialName"])
        return {"TrialArn": doc["TrialArn"]}

    # ---- trial components
    def create_component(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["TrialComponentName"]
        arn = self._account.arn("experiment-trial-component", name)
        stamp = now()
        doc = {"TrialComponentName": name, "TrialComponentArn": arn, "DisplayName": request.get("DisplayName") or name,
               "CreationTime": stamp, "LastModifiedTime": stamp, "_Trials": []}
        for key in ("Status", "StartTime", "EndTime", "Parameters", "InputArtifacts", "OutputArtifacts",
                    "MetadataProperties"):
            if request.get(key) is not None:
                doc[key] = request[key]
        if not self._store.insert(COMPONENT, name, doc):
            raise ValidationError(f"Trial component with name ({name}) already exists.")
        return {"TrialComponentArn": arn}

    def _component(self, value: str) -> dict:
        return self._get(COMPONENT, naming(COMPONENT).name_of(value), "TrialComponent")  # a name or its ARN

    def describe_component(self, request: dict[str, Any]) -> dict[str, Any]:
        return _public(self._full(self._component(request["TrialComponentName"])))

    def list_components(self, request: dict[str, Any]) -> dict[str, Any]:
        items = [self._live(c) for c in self._store.all(COMPONENT)]
        if request.get("TrialName"):
            trial = self._get(TRIAL, request["TrialName"], "Trial")["TrialName"]
            items = [c for c in items if trial in c.get("_Trials", [])]
        if request.get("ExperimentName"):
            experiment = self._get(EXPERIMENT, request["ExperimentName"], "Experiment")["ExperimentName"]
            trials = {t["TrialName"] for t in self._store.all(TRIAL) if t["ExperimentName"] == experiment}
            items = [c for c in items if trials & set(c.get("_Trials", []))]
        if request.get("SourceArn"):
            items = [c for c in items if (c.get("Source") or {}).get("SourceArn") == request["SourceArn"]]
        keys = ("TrialComponentName", "TrialComponentArn", "DisplayName", "Status", "StartTime", "EndTime",
                "CreationTime", "LastModifiedTime")
        result = self._list(COMPONENT, "TrialComponentName", "TrialComponentSummaries", keys, items, request)
        by_name = {c["TrialComponentName"]: c for c in items}
        for summary in result["TrialComponentSummaries"]:
            source = by_name[summary["TrialComponentName"]].get("Source")
            if source:
                summary["TrialComponentSource"] = source
        return result

    def delete_component(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._component(request["TrialComponentName"])
        if doc.get("_Trials"):
            raise ValidationError("Trial component must not be associated with any trials when deleting it.")
        self._store.delete(COMPONENT, doc["TrialComponentName"])
        self.metrics.forget(doc["TrialComponentName"])
        return {"TrialComponentArn": doc["TrialComponentArn"]}

    def update_component(self, request: dict[str, Any]) -> dict[str, Any]:
        """UpdateTrialComponent: each map member adds or replaces keys, its ``...ToRemove`` list removes keys."""
        doc = self._component(request["TrialComponentName"])
        maps = {}
        for key, limit in _MAP_LIMITS.items():
            merged = {**(doc.get(key) or {}), **(request.get(key) or {})}
            for gone in request.get(f"{key}ToRemove") or []:
                merged.pop(gone, None)
            if len(merged) > limit:
                raise ValidationError(f"The trial component {doc['TrialComponentName']} would have {len(merged)} "
                                      f"{key}; the maximum is {limit}.")
            maps[key] = merged
        start, end = request.get("StartTime", doc.get("StartTime")), request.get("EndTime", doc.get("EndTime"))
        if start is not None and end is not None and end < start:
            raise ValidationError("The EndTime of a trial component must not be before its StartTime.")

        def change(d: dict) -> None:
            for key in ("DisplayName", "Status", "StartTime", "EndTime"):
                if request.get(key) is not None:
                    d[key] = request[key]
            for key, merged in maps.items():
                if merged or key in d:
                    d[key] = merged
            d["LastModifiedTime"] = now()

        self._store.update(COMPONENT, doc["TrialComponentName"], change)
        return {"TrialComponentArn": doc["TrialComponentArn"]}

    # ---- Search (Resource=ExperimentTrialComponent: smlocal.service.search_api)
    def search_records(self) -> list[dict[str, Any]]:
        """Every trial component as a ``Search`` record: with its Parents, Tags and (empty or not) maps."""
        experiment_of = {t["TrialName"]: t["ExperimentName"] for t in self._store.all(TRIAL)}
        records = []
        for doc in self._store.all(COMPONENT):
            record = _public(self._full(doc))
            for key in _MAP_LIMITS:  # AWS's records carry each map, empty or not (ExperimentAnalytics relies on it)
                record.setdefault(key, {})
            record["Parents"] = [{"TrialName": t, "ExperimentName": experiment_of[t]}
                                 for t in doc.get("_Trials", []) if t in experiment_of]
            tags = (self._store.get(TAGS, record["TrialComponentArn"]) or {}).get("Tags")
            if tags:
                record["Tags"] = tags
            records.append(record)
        return records

    def associate(self, request: dict[str, Any]) -> dict[str, Any]:
        component = self._component(request["TrialComponentName"])
        trial = self._get(TRIAL, request["TrialName"], "Trial")
        self._store.update(COMPONENT, component["TrialComponentName"],
                           lambda d: d["_Trials"].append(trial["TrialName"])
                           if trial["TrialName"] not in d["_Trials"] else None)
        return {"TrialComponentArn": component["TrialComponentArn"], "TrialArn": trial["TrialArn"]}

    def disassociate(self, request: dict[str, Any]) -> dict[str, Any]:
        component = self._component(request["TrialComponentName"])
        trial = self._get(TRIAL, request["TrialName"], "Trial")
        self._store.update(COMPONENT, component["TrialComponentName"],
                           lambda d: d.update(_Trials=[t for t in d["_Trials"] if t != trial["TrialName"]]))
        return {"TrialComponentArn": component["TrialComponentArn"], "TrialArn": trial["TrialArn"]}

    def _list(self, kind, name_key, list_key, keys, items, request) -> dict[str, Any]:
        request = {**request, "CreationTimeAfter": request.get("CreatedAfter"),
                   "CreationTimeBefore": request.get("CreatedBefore")}
        page, token = list_page(items, request, name_key=name_key)
        result: dict[str, Any] = {list_key: [pick(d, keys) for d in page]}
        if token:
            result["NextToken"] = token
        return result


_ARN_KIND = {EXPERIMENT: "experiment", TRIAL: "experiment-trial", COMPONENT: "experiment-trial-component"}


def job_component_fields(job: dict, status_key: str, start_key: str, end_key: str,
                         metric_summaries: list[dict] | None = None) -> dict:
    """The trial component members AWS derives from a job's description (pure).

    Args:
        job: The job's description.
        status_key, start_key, end_key: Its status and start / end time members.
        metric_summaries: A training job's statistics of each metric over its whole log
            (``MetricCollector.summaries``); without them each metric is its final value alone.
    """
    fields: dict[str, Any] = {}
    status = {"PrimaryStatus": job[status_key]}
    if job.get("FailureReason"):
        status["Message"] = job["FailureReason"]
    fields["Status"] = status
    if job.get(start_key):
        fields["StartTime"] = job[start_key]
    if job.get(end_key):
        fields["EndTime"] = job[end_key]
    fields["LastModifiedTime"] = job.get("LastModifiedTime") or job.get("CreationTime")
    if "TrainingJobArn" in job:
        fields.update(_training_fields(job, metric_summaries))
    return fields


def _training_fields(job: dict, summaries: list[dict] | None) -> dict:
    parameters: dict[str, dict] = {}
    for key, value in (job.get("HyperParameters") or {}).items():
        parameters[key] = _parameter(value)
    resources = job.get("ResourceConfig") or {}
    if resources.get("InstanceType"):
        parameters["SageMaker.InstanceType"] = {"StringValue": resources["InstanceType"]}
    for key in ("InstanceCount", "VolumeSizeInGB"):
        if resources.get(key) is not None:
            parameters[f"SageMaker.{key}"] = {"NumberValue": float(resources[key])}
    inputs = {c["ChannelName"]: _clean({"Value": c["DataSource"].get("S3DataSource", {}).get("S3Uri"),
                                        "MediaType": c.get("ContentType")})
              for c in job.get("InputDataConfig") or [] if c.get("DataSource", {}).get("S3DataSource")}
    image = (job.get("AlgorithmSpecification") or {}).get("TrainingImage")
    if image:
        inputs["SageMaker.ImageUri"] = {"Value": image}
    fields: dict[str, Any] = {"Parameters": parameters, "InputArtifacts": inputs}
    model = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if model:
        fields["OutputArtifacts"] = {"SageMaker.ModelArtifact": {"Value": model}}
    if summaries:  # AWS summarises every value the job logged (TrialComponentMetricSummary)
        metrics = [{**s, "SourceArn": job["TrainingJobArn"]} for s in summaries]
    else:  # a job that ended before smlocal kept statistics: its final values alone
        metrics = [{"MetricName": m["MetricName"], "SourceArn": job["TrainingJobArn"], "TimeStamp": m["Timestamp"],
                    "Max": m["Value"], "Min": m["Value"], "Last": m["Value"], "Count": 1, "Avg": m["Value"],
                    "StdDev": 0.0} for m in job.get("FinalMetricDataList") or []]
    if metrics:
        fields["Metrics"] = metrics
    return fields


def _parameter(value: str) -> dict:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return {"StringValue": str(value)}
    return {"NumberValue": number} if number == number and abs(number) != float("inf") else {"StringValue": value}


def _clean(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if v is not None}


def _public(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not k.startswith("_")}
