"""Pieces every resource family shares: names and ARNs, clock, listing with AWS paging and filters."""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable

from smlocal.errors import ValidationError


@dataclass(frozen=True)
class Naming:
    """How AWS names the resources of one family.

    Attributes:
        kind: The family's record kind in the store (its API noun, ``"TrainingJob"``).
        resource: The resource type in the family's ARNs (``"training-job"``).
        arn_keeps_case: AWS keeps the name's case in the ARN; else the ARN carries it lower-cased.
        case_insensitive: Names that differ only in case are one resource: a second Create is a
            duplicate, and Describe/Stop/Delete/... find the resource under any case (an ARN's
            lower-cased name included).
    """

    kind: str
    resource: str
    arn_keeps_case: bool
    case_insensitive: bool

    def arn_name(self, name: str) -> str:
        """The name as the family's ARNs carry it."""
        return name if self.arn_keeps_case else name.lower()

    def name_of(self, value: str) -> str:
        """The name ``value`` gives: a name as it is, the name part of an ARN of this family's
        resource type (the botocore model's ``...NameOrArn`` members), anything else unchanged."""
        match = _ARN.fullmatch(value)
        if match is not None and match["resource"] == self.resource:
            return match["name"]
        return value


_ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:(?:\d{12}|aws):(?P<resource>[a-z\-]+)/(?P<name>.+)")

# The one table of AWS's naming rules, used by Account.arn, the Store (case-insensitive kinds), the
# ...NameOrArn lookups and the tags. Sources:
# - ARN case: AWS lower-cases the name in SageMaker ARNs (the Pipelines tutorial's list_steps output:
#   training-job/pipelines-...-abalonetrain-..., model/..., model-package/abalonemodelpackagegroupname/1;
#   boto3#4606 for tuning jobs; SDK v2 jumpstart/session_utils.py lower-cases endpoint names to build
#   their ARN) except a pipeline's: the SDK's integration helper (tests/integ/sagemaker/workflow/
#   helpers.py) matches PipelineArn against "pipeline/Decorated-Step-Pipeline-..." case-sensitively,
#   and an execution's ARN is its pipeline's ARN + "/execution/<id>". Endpoint configs and model
#   package groups follow the others (not verified).
# - Case-insensitive names: botocore's documentation says so for endpoints (at create; InvokeEndpoint
#   must match the case), tuning jobs, experiments, trials and trial components; for training jobs the
#   SDK describes a function step's job by the lower-cased name it takes from the job's ARN
#   (workflow/pipeline.py get_function_step_result). In the other lower-cased families two names that
#   differ only in case would share an ARN, so they are taken as one. Pipelines keep smlocal's earlier
#   case-insensitive matching (AWS's rule is not documented). A pipeline execution has no row: it is
#   named only by its ARN (its pipeline's ARN + "/execution/<id>") and found by that ARN exactly.
NAMING: tuple[Naming, ...] = (
    Naming("TrainingJob", "training-job", arn_keeps_case=False, case_insensitive=True),
    Naming("ProcessingJob", "processing-job", arn_keeps_case=False, case_insensitive=True),
    Naming("TransformJob", "transform-job", arn_keeps_case=False, case_insensitive=True),
    Naming("HyperParameterTuningJob", "hyper-parameter-tuning-job", arn_keeps_case=False, case_insensitive=True),
    Naming("Model", "model", arn_keeps_case=False, case_insensitive=True),
    Naming("EndpointConfig", "endpoint-config", arn_keeps_case=False, case_insensitive=True),
    Naming("Endpoint", "endpoint", arn_keeps_case=False, case_insensitive=True),
    Naming("Pipeline", "pipeline", arn_keeps_case=True, case_insensitive=True),
    Naming("ModelPackageGroup", "model-package-group", arn_keeps_case=False, case_insensitive=True),
    Naming("ModelPackage", "model-package", arn_keeps_case=False, case_insensitive=True),
    Naming("Experiment", "experiment", arn_keeps_case=False, case_insensitive=True),
    Naming("Trial", "experiment-trial", arn_keeps_case=False, case_insensitive=True),
    Naming("TrialComponent", "experiment-trial-component", arn_keeps_case=False, case_insensitive=True),
)
_BY_KIND = {rule.kind: rule for rule in NAMING}
_BY_RESOURCE = {rule.resource: rule for rule in NAMING}
_DEFAULT = Naming("", "", arn_keeps_case=False, case_insensitive=False)  # SageMaker's usual ARN: lower case


def naming(kind: str) -> Naming:
    """The naming rule of the family whose record kind is ``kind``.

    Raises:
        KeyError: ``kind`` is not a SageMaker resource family.
    """
    return _BY_KIND[kind]


def case_insensitive_kinds() -> frozenset[str]:
    """The record kinds whose names match regardless of case."""
    return frozenset(rule.kind for rule in NAMING if rule.case_insensitive)


@dataclass(frozen=True)
class Account:
    region: str
    account_id: str

    def arn(self, resource: str, name: str) -> str:
        """The ARN of the ``resource``-type resource ``name``, with the name's case as AWS has it."""
        shown = _BY_RESOURCE.get(resource, _DEFAULT).arn_name(name)
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{resource}/{shown}"


def now() -> float:
    return time.time()


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


_MAX_TOKEN = 64  # the tokens this module writes are about 16 characters


def _offset(token: str | None) -> int:
    if not token:
        return 0
    if len(token) > _MAX_TOKEN:  # nothing this module wrote; and no deep JSON for the decoder to recurse into
        raise ValidationError("Invalid pagination token")
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValidationError("Invalid pagination token") from exc
    if type(offset) is not int or offset < 0:  # a token this module did not write
        raise ValidationError("Invalid pagination token")
    return offset


def list_page(
    items: list[dict[str, Any]],
    request: dict[str, Any],
    *,
    name_key: str,
    status_key: str | None = None,
    sort_keys: dict[str, str] | None = None,
    default_sort: str = "CreationTime",
    default_max: int = 10,
) -> tuple[list[dict[str, Any]], str | None]:
    """Filters, sorts and pages documents the way SageMaker List* calls do.

    Handles NameContains, StatusEquals, Creation/LastModifiedTime After/Before, SortBy, SortOrder,
    MaxResults and NextToken.
    """
    sort_keys = sort_keys or {"Name": name_key, "CreationTime": "CreationTime", "Status": status_key or name_key}
    result = items
    if request.get("NameContains"):
        needle = request["NameContains"].lower()
        result = [d for d in result if needle in d[name_key].lower()]
    if status_key and request.get("StatusEquals"):
        result = [d for d in result if d.get(status_key) == request["StatusEquals"]]
    for key, field, cmp in (
        ("CreationTimeAfter", "CreationTime", lambda a, b: a > b),
        ("CreationTimeBefore", "CreationTime", lambda a, b: a < b),
        ("LastModifiedTimeAfter", "LastModifiedTime", lambda a, b: a > b),
        ("LastModifiedTimeBefore", "LastModifiedTime", lambda a, b: a < b),
    ):
        if request.get(key) is not None:
            bound = float(request[key])
            result = [d for d in result if d.get(field) is not None and cmp(d[field], bound)]
    sort_by = request.get("SortBy") or default_sort
    field = sort_keys.get(sort_by, sort_keys.get(default_sort, "CreationTime"))
    descending = (request.get("SortOrder") or "Descending") == "Descending"
    result = sorted(result, key=lambda d: (d.get(field) is None, d.get(field)), reverse=descending)
    start = _offset(request.get("NextToken"))
    size = int(request.get("MaxResults") or default_max)
    page = result[start : start + size]
    token = _token(start + size) if start + size < len(result) else None
    return page, token


def pick(doc: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: doc[k] for k in keys if doc.get(k) is not None}


Clock = Callable[[], float]
