"""The ``Search`` operation: every ``Resource`` of botocore's ``ResourceType``, as AWS answers it.

A resource smlocal keeps is searched over the records its own Describe answers (called through the
service, never re-implemented), with its ``Tags``, cut to the members botocore's ``SearchRecord``
shape gives that resource, and answered in the record member AWS names for it (``ExperimentTrial``
in ``Trial``, ``Model`` in a ``ModelDashboardModel``...). The expression, sorting and paging are
:mod:`smlocal.service.search`'s. A search sees two things a Describe does not show as such (the
``Filter`` page of the API reference): a training job's ``Metrics.<name>`` (its final metric values)
and ``HyperParameters.<name>`` compared as a number when the hyperparameter and the filter's value
both are numbers.

A resource smlocal cannot create (feature groups, projects, model cards, images ...) has no
records: AWS's empty result, after the same validation of the expression.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Iterable

import botocore.session

from smlocal.errors import ResourceNotFound, ValidationError
from smlocal.service import search
from smlocal.service.common import _offset, _token
from smlocal.service.experiments import EXPERIMENT, TRIAL, Experiments
from smlocal.service.store import Store
from smlocal.service.tags import KIND as TAGS

log = logging.getLogger(__name__)

Call = Callable[[str, dict[str, Any]], dict[str, Any]]
DEFAULT_MAX_RESULTS = 10
# Resource -> (SearchRecord member, store kind, Describe operation, its name parameter)
_DESCRIBED = {
    "TrainingJob": ("TrainingJob", "TrainingJob", "DescribeTrainingJob", "TrainingJobName"),
    "Experiment": ("Experiment", EXPERIMENT, "DescribeExperiment", "ExperimentName"),
    "ExperimentTrial": ("Trial", TRIAL, "DescribeTrial", "TrialName"),
    "Endpoint": ("Endpoint", "Endpoint", "DescribeEndpoint", "EndpointName"),
    "ModelPackage": ("ModelPackage", "ModelPackage", "DescribeModelPackage", "ModelPackageName"),
    "ModelPackageGroup": ("ModelPackageGroup", "ModelPackageGroup", "DescribeModelPackageGroup",
                          "ModelPackageGroupName"),
    "Pipeline": ("Pipeline", "Pipeline", "DescribePipeline", "PipelineName"),
    "PipelineExecution": ("PipelineExecution", "PipelineExecution", "DescribePipelineExecution",
                          "PipelineExecutionArn"),
    "HyperParameterTuningJob": ("HyperParameterTuningJob", "HyperParameterTuningJob",
                                "DescribeHyperParameterTuningJob", "HyperParameterTuningJobName"),
    "Model": ("Model", "Model", "DescribeModel", "ModelName"),
}
# the store's key of each kind is its name, except a model package's (its ARN) and an execution's
_DASHBOARD_ENDPOINT = ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus")
_INDEX = "\x00index"  # a view's place among the records (no property of AWS's has this name)
_KEY_OF = {"ModelPackage": "ModelPackageArn", "PipelineExecution": "PipelineExecutionArn"}


@functools.lru_cache(maxsize=1)
def _record_shape():
    return botocore.session.get_session().get_service_model("sagemaker").shape_for("SearchRecord")


def _cut(record: dict[str, Any], *member: str) -> dict[str, Any]:
    """``record`` with only the members of the ``SearchRecord`` member at the path ``member``."""
    shape = _record_shape()
    for name in member:
        shape = shape.members[name]
    return {k: record[k] for k in shape.members if record.get(k) is not None}


class SearchApi:
    """``Search`` over the records of every family (``call`` is the service's operation call)."""

    def __init__(self, store: Store, call: Call, experiments: Experiments):
        self._store = store
        self._call = call
        self._experiments = experiments

    def operations(self) -> dict:
        return {"Search": self.search}

    def recover(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def search(self, request: dict[str, Any]) -> dict[str, Any]:
        """One page of the records of ``Resource`` that satisfy ``SearchExpression``, sorted."""
        expression = request.get("SearchExpression")
        if expression is not None:
            search.check_expression(expression)
        start = _offset(request.get("NextToken"))
        member, records = self._records(request["Resource"])
        views = [_view(r) | {_INDEX: i} for i, r in enumerate(records)]
        found = search.sort_records([v for v in views if search.matches(v, expression)],
                                    request.get("SortBy"), request.get("SortOrder"))
        found = [records[v[_INDEX]] for v in found]
        size = request.get("MaxResults") or DEFAULT_MAX_RESULTS
        result: dict[str, Any] = {"Results": [{member: r} for r in found[start:start + size]],
                                  "TotalHits": {"Value": len(found), "Relation": "EqualTo"}}
        if start + size < len(found):
            result["NextToken"] = _token(start + size)
        return result

    def _records(self, resource: str) -> tuple[str, list[dict[str, Any]]]:
        """The ``SearchRecord`` member of ``resource`` and its records (none: smlocal cannot create it)."""
        if resource == "ExperimentTrialComponent":
            return "TrialComponent", self._experiments.search_records()
        if resource == "PipelineVersion":
            return "PipelineVersion", self._pipeline_versions()
        if resource not in _DESCRIBED:
            return "", []
        member, kind, operation, name_key = _DESCRIBED[resource]
        key = _KEY_OF.get(kind)
        names = [d[key] for d in self._store.all(kind)] if key else list(self._store.names(kind))
        records = []
        serving = self._serving() if resource == "Model" else {}
        for described in self._describe_all(operation, name_key, names):
            if resource == "Model":  # a ModelDashboardModel: the model as described, and its endpoints
                record = {"Model": _cut(self._with_tags(described, "ModelArn"), "Model", "Model")}
                records.append({**record, "Endpoints": serving[described["ModelName"]]}
                               if described["ModelName"] in serving else record)
                continue
            arn_key = name_key if name_key.endswith("Arn") else name_key[:-len("Name")] + "Arn"
            record = self._with_tags(described, arn_key)
            if resource == "ExperimentTrial":
                record["TrialComponentSummaries"] = self._trial_components(record["TrialName"])
            elif resource == "PipelineExecution":
                record["PipelineParameters"] = self._execution_parameters(record["PipelineExecutionArn"])
            records.append(_cut(record, member))
        return member, records

    def _describe_all(self, operation: str, name_key: str, names: Iterable[str]) -> Iterable[dict[str, Any]]:
        for name in names:
            try:
                yield self._call(operation, {name_key: name})
            except (ResourceNotFound, ValidationError):  # deleted since it was listed (a model: ValidationError)
                continue

    def _with_tags(self, record: dict[str, Any], arn_key: str) -> dict[str, Any]:
        tags = (self._store.get(TAGS, record.get(arn_key, "")) or {}).get("Tags")
        return {**record, "Tags": tags} if tags else dict(record)

    def _trial_components(self, trial: str) -> list[dict[str, Any]]:
        keys = ("TrialComponentName", "TrialComponentArn", "TrialComponentSource", "CreationTime", "CreatedBy")
        return [{k: s[k] for k in keys if s.get(k) is not None}
                for s in self._paged("ListTrialComponents", {"TrialName": trial}, "TrialComponentSummaries")]

    def _execution_parameters(self, arn: str) -> list[dict[str, Any]]:
        return list(self._paged("ListPipelineParametersForExecution", {"PipelineExecutionArn": arn},
                                "PipelineParameters"))

    def _pipeline_versions(self) -> list[dict[str, Any]]:
        records = []
        for name in self._store.names("Pipeline"):
            try:
                records += [_cut(v, "PipelineVersion") for v in
                            self._paged("ListPipelineVersions", {"PipelineName": name}, "PipelineVersionSummaries")]
            except ResourceNotFound:
                continue
        return records

    def _serving(self) -> dict[str, list[dict[str, Any]]]:
        """Model name -> the endpoints whose configuration serves it (``ModelDashboardEndpoint``s)."""
        serving: dict[str, list[dict[str, Any]]] = {}
        for endpoint in self._describe_all("DescribeEndpoint", "EndpointName", list(self._store.names("Endpoint"))):
            try:
                config = self._call("DescribeEndpointConfig", {"EndpointConfigName": endpoint["EndpointConfigName"]})
            except (ResourceNotFound, ValidationError):  # its configuration was deleted
                continue
            summary = {k: endpoint[k] for k in _DASHBOARD_ENDPOINT if k in endpoint}
            for model in {v.get("ModelName") for v in config.get("ProductionVariants") or []} - {None}:
                serving.setdefault(model, []).append(summary)
        return serving

    def _paged(self, operation: str, request: dict[str, Any], key: str) -> Iterable[dict[str, Any]]:
        token = None
        while True:
            page = self._call(operation, {**request, "MaxResults": 100, **({"NextToken": token} if token else {})})
            yield from page.get(key) or []
            token = page.get("NextToken")
            if not token:
                return


def _view(record: dict[str, Any]) -> dict[str, Any]:
    """What a filter sees of ``record``: a training job's ``Metrics`` and numeric ``HyperParameters``."""
    if "TrainingJobName" not in record:
        return record
    view = dict(record)
    view["Metrics"] = {m["MetricName"]: m["Value"] for m in record.get("FinalMetricDataList") or []}
    view["HyperParameters"] = {k: _number_or_text(v) for k, v in (record.get("HyperParameters") or {}).items()}
    return view


def _number_or_text(value: str) -> Any:
    text = value.strip().strip('"')
    try:
        return float(text)
    except ValueError:
        return value
