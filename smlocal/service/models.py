"""Models: Create/Describe/List/Delete. A Model is only a record; endpoints and transform jobs
serve it (:mod:`smlocal.runtime.model_server`). Other families read it with :meth:`Models.get`."""

from __future__ import annotations

import copy
from typing import Any

from smlocal.errors import ValidationError
from smlocal.service.common import Account, list_page, now, pick
from smlocal.service.store import Store

KIND = "Model"
_ECHOED = ("PrimaryContainer", "Containers", "InferenceExecutionConfig", "ExecutionRoleArn", "VpcConfig",
           "EnableNetworkIsolation")
_SUMMARY_KEYS = ("ModelName", "ModelArn", "CreationTime")


class Models:
    """The model family of operations."""

    def __init__(self, store: Store, account: Account):
        self._store = store
        self._account = account

    def operations(self) -> dict:
        return {
            "CreateModel": self.create,
            "DescribeModel": self.describe,
            "ListModels": self.list,
            "DeleteModel": self.delete,
        }

    def recover(self) -> int:
        return 0

    def close(self) -> None:
        pass

    # ---- for other families
    def arn(self, name: str) -> str:
        return self._account.arn("model", name)

    def get(self, name: str) -> dict[str, Any]:
        """The model's DescribeModel document; ValidationException ``Could not find model "<arn>".``"""
        doc = self._store.get(KIND, name)
        if doc is None:
            raise ValidationError(f'Could not find model "{self.arn(name)}".')
        return doc

    @staticmethod
    def containers(model: dict[str, Any]) -> list[dict[str, Any]]:
        """The containers to serve: ``Containers``, else ``[PrimaryContainer]``."""
        return copy.deepcopy(model.get("Containers") or [model["PrimaryContainer"]])

    # ---- operations
    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ModelName"]
        arn = self.arn(name)
        _check(request)
        doc: dict[str, Any] = {"ModelName": name, "ModelArn": arn}
        for key in _ECHOED:
            if key in request:
                doc[key] = copy.deepcopy(request[key])
        for container in [doc.get("PrimaryContainer")] + list(doc.get("Containers") or []):
            if container is not None:
                container.setdefault("Mode", "SingleModel")
                container.setdefault("Environment", {})
        doc.setdefault("EnableNetworkIsolation", False)
        doc["CreationTime"] = now()
        if not self._store.insert(KIND, name, doc):
            raise ValidationError(f'Cannot create already existing model "{arn}".')
        return {"ModelArn": arn}

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.get(request["ModelName"])

    def list(self, request: dict[str, Any]) -> dict[str, Any]:
        page, token = list_page(self._store.all(KIND), request, name_key="ModelName",
                                sort_keys={"Name": "ModelName", "CreationTime": "CreationTime"})
        result: dict[str, Any] = {"Models": [pick(d, _SUMMARY_KEYS) for d in page]}
        if token:
            result["NextToken"] = token
        return result

    def delete(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ModelName"]
        if not self._store.delete(KIND, name):
            raise ValidationError(f'Could not find model "{self.arn(name)}".')
        return {}


def _check(request: dict[str, Any]) -> None:
    """Checks CreateModel makes that the service model cannot express."""
    primary, containers = request.get("PrimaryContainer"), request.get("Containers")
    if primary and containers:
        raise ValidationError("Only one of PrimaryContainer or Containers may be specified.")
    if not primary and not containers:
        raise ValidationError("Either PrimaryContainer or Containers must be specified.")
    if request.get("InferenceExecutionConfig") and not containers:
        raise ValidationError("InferenceExecutionConfig can only be specified with Containers.")
    hostnames = [c["ContainerHostname"] for c in containers or [] if c.get("ContainerHostname")]
    if len(set(hostnames)) != len(hostnames):
        raise ValidationError("ContainerHostname must be unique within a model's Containers.")
    mode = (request.get("InferenceExecutionConfig") or {}).get("Mode")
    if mode == "Direct" and containers and len(hostnames) != len(containers):
        raise ValidationError("ContainerHostname must be specified for every container when "
                              "InferenceExecutionConfig Mode is Direct.")
