"""AddTags, ListTags, DeleteTags for every SageMaker resource smlocal keeps, and the ``Tags`` of Create calls.

Tags live beside the records, keyed by the resource's ARN exactly as AWS spells it (lower-cased
names in most families, a pipeline's name in its own case: :data:`smlocal.service.common.NAMING`),
so they outlive a restart with the rest of the state. AWS's rules: at most 50 tags per resource,
keys starting with ``aws:`` are reserved, adding an existing key replaces its value, and the ARN
must be the resource's own: another spelling of it (e.g. a lower-cased job ARN with the name's
case put back) is a resource that does not exist.
"""

from __future__ import annotations

from typing import Any, Iterable

from smlocal.errors import ValidationError
from smlocal.service.common import NAMING, _offset, _token
from smlocal.service.store import Store

KIND = "Tags"
MAX_TAGS = 50
# record kinds whose documents carry their resource's ARN as "<kind>Arn" at the top level: every
# named family, and pipeline executions (named only by their ARN, so not in NAMING)
TAGGABLE_KINDS = (*(rule.kind for rule in NAMING), "PipelineExecution")


class Tags:
    """The tagging operations; ``record_created`` is the hook for ``Tags`` given to Create* calls."""

    def __init__(self, store: Store, kinds: Iterable[str] = TAGGABLE_KINDS):
        self._store = store
        self._kinds = tuple(kinds)

    def operations(self) -> dict:
        return {"AddTags": self.add, "ListTags": self.list, "DeleteTags": self.delete}

    def recover(self) -> int:
        return 0

    def close(self) -> None:
        pass

    def record_created(self, operation: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        """After a successful Create*: its request's ``Tags`` (or none) belong to the ARN it answered,
        replacing any a deleted resource of the same name left behind."""
        if not operation.startswith("Create"):
            return
        arns = [v for k, v in response.items() if k.endswith("Arn") and isinstance(v, str)]
        if arns:
            self._store.put(KIND, arns[0], {"Tags": _merge([], request.get("Tags") or [])})

    # ---- operations
    def add(self, request: dict[str, Any]) -> dict[str, Any]:
        arn = self._resource(request["ResourceArn"])
        _check_keys(t["Key"] for t in request["Tags"])
        current = (self._store.get(KIND, arn) or {}).get("Tags", [])
        merged = _merge(current, request["Tags"])
        if len(merged) > MAX_TAGS:
            raise ValidationError(f"The number of tags on resource {request['ResourceArn']} would exceed the "
                                  f"maximum of {MAX_TAGS}.")
        self._store.put(KIND, arn, {"Tags": merged})
        return {"Tags": request["Tags"]}

    def list(self, request: dict[str, Any]) -> dict[str, Any]:
        arn = self._resource(request["ResourceArn"])
        tags = (self._store.get(KIND, arn) or {}).get("Tags", [])
        start = _offset(request.get("NextToken"))
        size = request.get("MaxResults") or 50
        result: dict[str, Any] = {"Tags": tags[start:start + size]}
        if start + size < len(tags):
            result["NextToken"] = _token(start + size)
        return result

    def delete(self, request: dict[str, Any]) -> dict[str, Any]:
        arn = self._resource(request["ResourceArn"])
        _check_keys(request["TagKeys"])
        gone = set(request["TagKeys"])
        current = (self._store.get(KIND, arn) or {}).get("Tags", [])
        self._store.put(KIND, arn, {"Tags": [t for t in current if t["Key"] not in gone]})
        return {}

    def _resource(self, arn: str) -> str:
        """``arn`` when it is an existing resource's ARN (exactly, case included), else the
        ValidationException AWS answers."""
        for kind in self._kinds:
            for doc in self._store.all(kind):
                if doc.get(f"{kind}Arn") == arn:
                    return arn
        raise ValidationError(f"Resource {arn} does not exist.")


def _merge(current: list[dict], added: list[dict]) -> list[dict]:
    merged = {t["Key"]: t.get("Value", "") for t in current}
    for tag in added:
        merged[tag["Key"]] = tag.get("Value", "")
    return [{"Key": k, "Value": v} for k, v in merged.items()]


def _check_keys(keys: Iterable[str]) -> None:
    for key in keys:
        if key.lower().startswith("aws:"):
            raise ValidationError(f"Tag keys beginning with 'aws:' are reserved for AWS use: {key}")
