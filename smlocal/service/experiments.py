"""Experiments, trials and trial components — the part pipelines use.

A pipeline with a ``PipelineExperimentConfig`` (the SDK's default: experiment = pipeline name,
trial = execution id) gets its experiment and trial created when an execution starts, and every job
the execution runs is recorded as a trial component of that trial (named
``<job name>-aws-<training|processing|transform>-job``, with the job as its source).
"""

from __future__ import annotations

from typing import Any

from smlocal.errors import ResourceNotFound, ValidationError
from smlocal.service.common import Account, list_page, now, pick
from smlocal.service.store import Store

EXPERIMENT, TRIAL, COMPONENT = "Experiment", "Trial", "TrialComponent"
_SOURCE_TYPES = {"training-job": "SageMakerTrainingJob", "processing-job": "SageMakerProcessingJob",
                 "transform-job": "SageMakerTransformJob"}


class Experiments:
    """Create/Describe/List/Delete Experiment, Trial, TrialComponent and their associations."""

    def __init__(self, store: Store, account: Account):
        self._store = store
        self._account = account

    def operations(self) -> dict:
        return {
            "CreateExperiment": self.create_experiment, "DescribeExperiment": self.describe_experiment,
            "ListExperiments": self.list_experiments, "DeleteExperiment": self.delete_experiment,
            "CreateTrial": self.create_trial, "DescribeTrial": self.describe_trial,
            "ListTrials": self.list_trials, "DeleteTrial": self.delete_trial,
            "CreateTrialComponent": self.create_component, "DescribeTrialComponent": self.describe_component,
            "ListTrialComponents": self.list_components, "DeleteTrialComponent": self.delete_component,
            "AssociateTrialComponent": self.associate, "DisassociateTrialComponent": self.disassociate,
        }  # fmt: skip

    def recover(self) -> int:
        return 0

    def close(self) -> None:
        pass

    # ---- used by the pipeline executor
    def ensure_trial(self, experiment: str, trial: str) -> None:
        """Creates the experiment and the trial unless they exist (as a pipeline execution does)."""
        if not self._store.exists(EXPERIMENT, experiment):
            try:
                self.create_experiment({"ExperimentName": experiment})
            except ValidationError:
                pass  # created concurrently
        if not self._store.exists(TRIAL, trial):
            try:
                self.create_trial({"TrialName": trial, "ExperimentName": experiment})
            except ValidationError:
                pass

    def record_job(self, trial: str, kind: str, job_name: str, job_arn: str) -> None:
        """Records a job of an execution as a trial component of the execution's trial."""
        name = f"{job_name}-aws-{kind}"
        stamp = now()
        doc = {"TrialComponentName": name, "TrialComponentArn": self._account.arn("experiment-trial-component", name),
               "DisplayName": job_name, "Source": {"SourceArn": job_arn, "SourceType": _SOURCE_TYPES.get(kind, kind)},
               "CreationTime": stamp, "LastModifiedTime": stamp, "_Trials": []}
        self._store.insert(COMPONENT, name, doc)
        if self._store.exists(TRIAL, trial):
            self.associate({"TrialComponentName": name, "TrialName": trial})

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
        name, experiment = request["TrialName"], request["ExperimentName"]
        self._get(EXPERIMENT, experiment, "Experiment")
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
            self._get(EXPERIMENT, request["ExperimentName"], "Experiment")
            items = [t for t in items if t["ExperimentName"] == request["ExperimentName"]]
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
        return self._get(COMPONENT, value.rsplit("/", 1)[-1] if value.startswith("arn:") else value, "TrialComponent")

    def describe_component(self, request: dict[str, Any]) -> dict[str, Any]:
        return _public(self._component(request["TrialComponentName"]))

    def list_components(self, request: dict[str, Any]) -> dict[str, Any]:
        items = self._store.all(COMPONENT)
        if request.get("TrialName"):
            self._get(TRIAL, request["TrialName"], "Trial")
            items = [c for c in items if request["TrialName"] in c.get("_Trials", [])]
        if request.get("ExperimentName"):
            self._get(EXPERIMENT, request["ExperimentName"], "Experiment")
            trials = {t["TrialName"] for t in self._store.all(TRIAL) if t["ExperimentName"] == request["ExperimentName"]}
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
        return {"TrialComponentArn": doc["TrialComponentArn"]}

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


def _clean(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if v is not None}


def _public(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not k.startswith("_")}
