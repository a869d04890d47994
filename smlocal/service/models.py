"""Models: Create/Describe/List/Delete. A Model is only a record; endpoints and transform jobs
serve it (:mod:`smlocal.runtime.model_server`). Other families read it with :meth:`Models.get`
(the DescribeModel document) and :meth:`Models.serving` (the containers to run).

A container naming a ``ModelPackageName`` is resolved at CreateModel, as on AWS, to the package's
inference containers (Image, model data, Environment; the container's own Environment wins): the
package must exist and, when versioned, be Approved. DescribeModel shows the container as given;
the resolved containers are kept privately for the endpoints and transform jobs that serve it.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from smlocal.errors import ValidationError
from smlocal.service.common import Account, list_page, now, pick
from smlocal.service.store import Store

KIND = "Model"
_SERVED = "_ServedContainers"  # the containers resolved from model packages; never returned
_ONE_SOURCE = "Specify one of either Image and Model Data URL or ModelPackageName in container definition."
_ECHOED = ("PrimaryContainer", "Containers", "InferenceExecutionConfig", "ExecutionRoleArn", "VpcConfig",
           "EnableNetworkIsolation")
_SUMMARY_KEYS = ("ModelName", "ModelArn", "CreationTime")


class PackageContainers(Protocol):
    """What CreateModel needs of the model registry (:class:`smlocal.service.registry.ModelRegistry`)."""

    def inference_containers(self, value: str, specification: str | None = None) -> list[dict[str, Any]]:
        """The ContainerDefinitions that model package ``value`` deploys (raises ValidationError if none)."""
        ...


class Models:
    """The model family of operations."""

    def __init__(self, store: Store, account: Account, registry: PackageContainers):
        self._store = store
        self._account = account
        self._registry = registry

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
        return {k: v for k, v in self._record(name).items() if not k.startswith("_")}

    def serving(self, name: str) -> dict[str, Any]:
        """The model as endpoints and transform jobs run it: its DescribeModel document with
        ``Containers`` replaced by the containers to serve (model packages resolved)."""
        doc = self._record(name)
        served = {k: v for k, v in doc.items() if not k.startswith("_") and k != "PrimaryContainer"}
        served["Containers"] = copy.deepcopy(doc.get(_SERVED) or self.containers(doc))
        return served

    def _record(self, name: str) -> dict[str, Any]:
        """The stored record, private keys included."""
        doc = self._store.get(KIND, name)
        if doc is None:
            raise ValidationError(f'Could not find model "{self.arn(name)}".')
        return doc

    @staticmethod
    def containers(model: dict[str, Any]) -> list[dict[str, Any]]:
        """The containers as given: ``Containers``, else ``[PrimaryContainer]``."""
        return copy.deepcopy(model.get("Containers") or [model["PrimaryContainer"]])

    def _resolve(self, containers: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """The containers with each ModelPackageName replaced by the package's containers, or None
        when no container names a package."""
        if not any(c.get("ModelPackageName") for c in containers):
            return None
        served: list[dict[str, Any]] = []
        for container in containers:
            package = container.get("ModelPackageName")
            if not package:
                served.append(copy.deepcopy(container))
                continue
            resolved = self._registry.inference_containers(package, container.get("InferenceSpecificationName"))
            for one in resolved:
                one["Environment"] = {**(one.get("Environment") or {}), **(container.get("Environment") or {})}
                for key in ("Mode", "MultiModelConfig", "ImageConfig"):
                    if key in container:
                        one[key] = copy.deepcopy(container[key])
                if container.get("ContainerHostname") and len(resolved) == 1:
                    one["ContainerHostname"] = container["ContainerHostname"]
            served.extend(resolved)
        return served

    # ---- operations
    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ModelName"]
        arn = self.arn(name)
        _check(request)
        served = self._resolve(list(request.get("Containers") or [request["PrimaryContainer"]]))
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
        if served is not None:
            doc[_SERVED] = served
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
    for container in containers or [primary]:
        from_package = bool(container.get("ModelPackageName"))
        if from_package and (container.get("Image") or container.get("ModelDataUrl")):
            raise ValidationError(_ONE_SOURCE)
        if not from_package and not container.get("Image"):
            raise ValidationError(_ONE_SOURCE)
    hostnames = [c["ContainerHostname"] for c in containers or [] if c.get("ContainerHostname")]
    if len(set(hostnames)) != len(hostnames):
        raise ValidationError("ContainerHostname must be unique within a model's Containers.")
    mode = (request.get("InferenceExecutionConfig") or {}).get("Mode")
    if mode == "Direct" and containers and len(hostnames) != len(containers):
        raise ValidationError("ContainerHostname must be specified for every container when "
                              "InferenceExecutionConfig Mode is Direct.")
