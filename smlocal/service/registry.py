"""The model registry: model package groups and (versioned or unversioned) model packages.

A package created with ``ModelPackageGroupName`` is *versioned*: it gets the next
``ModelPackageVersion`` of its group (from 1) and the ARN ``…:model-package/<group>/<version>``; its
``ModelPackageName`` is the group's name. A package created with ``ModelPackageName`` is
*unversioned* (``…:model-package/<name>``).
"""

from __future__ import annotations

import copy
from typing import Any

from smlocal.errors import ConflictError, ValidationError
from smlocal.service.common import Account, list_page, naming, now, pick
from smlocal.service.store import Store

GROUP = "ModelPackageGroup"
PACKAGE = "ModelPackage"  # keyed by ARN

_ECHOED = (
    "ModelPackageDescription", "InferenceSpecification", "ValidationSpecification",
    "SourceAlgorithmSpecification", "CertifyForMarketplace", "MetadataProperties", "ModelMetrics",
    "Domain", "Task", "SamplePayloadUrl", "CustomerMetadataProperties", "DriftCheckBaselines",
    "AdditionalInferenceSpecifications", "SkipModelValidation", "SourceUri", "SecurityConfig",
    "ModelCard", "ModelLifeCycle", "ModelPackageRegistrationType",
)  # fmt: skip
_PACKAGE_SUMMARY = (
    "ModelPackageName", "ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn",
    "ModelPackageDescription", "CreationTime", "ModelPackageStatus", "ModelApprovalStatus",
    "ModelLifeCycle", "ModelPackageRegistrationType",
)  # fmt: skip
_GROUP_SUMMARY = ("ModelPackageGroupName", "ModelPackageGroupArn", "ModelPackageGroupDescription",
                  "CreationTime", "ModelPackageGroupStatus")
# the members of a ModelPackageContainerDefinition that a model's ContainerDefinition takes over
_DEPLOYED = ("ContainerHostname", "Image", "ModelDataUrl", "ModelDataSource", "Environment")


class ModelRegistry:
    """Model package groups and model packages."""

    def __init__(self, store: Store, account: Account):
        self._store = store
        self._account = account

    def operations(self) -> dict:
        return {
            "CreateModelPackageGroup": self.create_group,
            "DescribeModelPackageGroup": self.describe_group,
            "ListModelPackageGroups": self.list_groups,
            "DeleteModelPackageGroup": self.delete_group,
            "CreateModelPackage": self.create_package,
            "DescribeModelPackage": self.describe_package,
            "ListModelPackages": self.list_packages,
            "UpdateModelPackage": self.update_package,
            "DeleteModelPackage": self.delete_package,
        }

    def recover(self) -> int:
        return 0

    def close(self) -> None:
        pass

    # ---- groups
    def create_group(self, request: dict[str, Any]) -> dict[str, Any]:
        name = request["ModelPackageGroupName"]
        arn = self._account.arn("model-package-group", name)
        doc = {
            "ModelPackageGroupName": name,
            "ModelPackageGroupArn": arn,
            "ModelPackageGroupDescription": request.get("ModelPackageGroupDescription"),
            "CreationTime": now(),
            "CreatedBy": {},
            "ModelPackageGroupStatus": "Completed",
            "_NextVersion": 1,
        }
        if not self._store.insert(GROUP, name, {k: v for k, v in doc.items() if v is not None}):
            raise ValidationError(f"Model Package Group already exists: {arn}")
        return {"ModelPackageGroupArn": arn}

    def _group(self, value: str) -> dict:
        """The group named ``value`` (its name in any case, or its ARN)."""
        name = naming(GROUP).name_of(value)
        doc = self._store.get(GROUP, name)
        if doc is None:
            raise ValidationError(f"ModelPackageGroup {name} does not exist.")
        return doc

    def describe_group(self, request: dict[str, Any]) -> dict[str, Any]:
        return _public(self._group(request["ModelPackageGroupName"]))

    def list_groups(self, request: dict[str, Any]) -> dict[str, Any]:
        page, token = list_page(self._store.all(GROUP), request, name_key="ModelPackageGroupName")
        result: dict[str, Any] = {"ModelPackageGroupSummaryList": [pick(d, _GROUP_SUMMARY) for d in page]}
        if token:
            result["NextToken"] = token
        return result

    def delete_group(self, request: dict[str, Any]) -> dict[str, Any]:
        group = self._group(request["ModelPackageGroupName"])
        name = group["ModelPackageGroupName"]
        if any(p.get("ModelPackageGroupName") == name for p in self._store.all(PACKAGE)):
            raise ConflictError(
                f"Model Package Group {name} contains model packages; delete them before deleting the group."
            )
        self._store.delete(GROUP, name)
        return {}

    # ---- packages
    def create_package(self, request: dict[str, Any]) -> dict[str, Any]:
        group_value, name = request.get("ModelPackageGroupName"), request.get("ModelPackageName")
        if group_value and name:
            raise ValidationError("Both ModelPackageName and ModelPackageGroupName are provided in the input. "
                                  "Cannot determine which one to use.")
        if not group_value and not name:
            raise ValidationError("Missing ARN.")
        stamp = now()
        doc = {k: copy.deepcopy(request[k]) for k in _ECHOED if k in request}
        doc.update(
            CreationTime=stamp,
            LastModifiedTime=stamp,
            ModelPackageStatus="Completed",
            ModelPackageStatusDetails={"ValidationStatuses": [], "ImageScanStatuses": []},
            CreatedBy={},
            LastModifiedBy={},
        )
        doc.setdefault("CertifyForMarketplace", False)
        if group_value:
            group = self._group(group_value)
            group_name = group["ModelPackageGroupName"]
            holder: dict[str, int] = {}

            def bump(d: dict) -> None:
                holder["version"] = d["_NextVersion"]
                d["_NextVersion"] += 1

            self._store.update(GROUP, group_name, bump)
            version = holder["version"]
            arn = self._account.arn("model-package", f"{group_name}/{version}")
            doc.update(ModelPackageName=group_name, ModelPackageGroupName=group_name, ModelPackageVersion=version,
                       ModelPackageArn=arn, ModelApprovalStatus=request.get("ModelApprovalStatus",
                                                                            "PendingManualApproval"))
        else:
            arn = self._account.arn("model-package", name)
            doc.update(ModelPackageName=name, ModelPackageArn=arn)
            if request.get("ModelApprovalStatus"):
                raise ValidationError("ModelApprovalStatus can only be set for versioned model packages "
                                      "(created in a model package group).")
        if not self._store.insert(PACKAGE, arn, doc):
            raise ValidationError(f"Model Package already exists: {arn}")
        return {"ModelPackageArn": arn}

    def _package(self, value: str) -> dict:
        """The package ``value`` names: its ARN, its name (unversioned) or ``<group>/<version>``, in any case.

        Raises:
            ValidationError: no such package (named by its ARN: the one given, or the one the name would have).
        """
        is_arn = naming(PACKAGE).name_of(value) != value
        arn = value if is_arn else self._account.arn("model-package", value)
        doc = self._store.get(PACKAGE, arn)
        if doc is None:
            raise ValidationError(f"ModelPackage {arn} does not exist.")
        return doc

    def inference_containers(self, value: str, specification: str | None = None) -> list[dict[str, Any]]:
        """The containers of package ``value`` that CreateModel's ``ModelPackageName`` deploys.

        A versioned package must be Approved (the SDK's ``ModelPackage.deploy`` approves one before
        CreateModel for that reason); an unversioned (marketplace-style) package has no approval.

        Args:
            value: The package's ARN, its name (unversioned) or ``<group>/<version>``.
            specification: ``InferenceSpecificationName``: the AdditionalInferenceSpecifications
                entry to use instead of the InferenceSpecification.

        Returns:
            ContainerDefinition-shaped copies (Image, ModelDataUrl/ModelDataSource, Environment,
            ContainerHostname) of the specification's containers, in order.

        Raises:
            ValidationError: the package does not exist, is not approved or has no such specification.
        """
        doc = self._package(value)
        arn = doc["ModelPackageArn"]
        status = doc.get("ModelApprovalStatus")
        if doc.get("ModelPackageVersion") is not None and status != "Approved":
            raise ValidationError(f"Model Package {arn} has ModelApprovalStatus {status}: only an Approved "
                                  "model package version can be used to create a model.")
        spec = _specification(doc, specification)
        return [{k: copy.deepcopy(c[k]) for k in _DEPLOYED if k in c} for c in spec.get("Containers") or []]

    def describe_package(self, request: dict[str, Any]) -> dict[str, Any]:
        return _public(self._package(request["ModelPackageName"]))

    def list_packages(self, request: dict[str, Any]) -> dict[str, Any]:
        items = self._store.all(PACKAGE)
        group = request.get("ModelPackageGroupName")
        kind = request.get("ModelPackageType") or "Both"
        if group:
            stored = self._store.get(GROUP, naming(GROUP).name_of(group))  # an unknown group lists nothing
            name = stored and stored["ModelPackageGroupName"]
            items = [d for d in items if name and d.get("ModelPackageGroupName") == name]
        if kind == "Versioned":
            items = [d for d in items if d.get("ModelPackageVersion") is not None]
        elif kind == "Unversioned":
            items = [d for d in items if d.get("ModelPackageVersion") is None]
        if request.get("ModelApprovalStatus"):
            items = [d for d in items if d.get("ModelApprovalStatus") == request["ModelApprovalStatus"]]
        page, token = list_page(items, request, name_key="ModelPackageName")
        result: dict[str, Any] = {"ModelPackageSummaryList": [pick(d, _PACKAGE_SUMMARY) for d in page]}
        if token:
            result["NextToken"] = token
        return result

    def update_package(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._package(request["ModelPackageArn"])
        if request.get("ModelApprovalStatus") and doc.get("ModelPackageVersion") is None:
            raise ValidationError("ModelApprovalStatus can only be updated for versioned model packages.")

        def change(d: dict) -> None:
            for key in ("ModelApprovalStatus", "ApprovalDescription", "ModelPackageRegistrationType",
                        "InferenceSpecification", "SourceUri", "ModelCard", "ModelLifeCycle"):
                if key in request:
                    d[key] = copy.deepcopy(request[key])
            if "CustomerMetadataProperties" in request:
                d.setdefault("CustomerMetadataProperties", {}).update(request["CustomerMetadataProperties"])
            for key in request.get("CustomerMetadataPropertiesToRemove") or []:
                (d.get("CustomerMetadataProperties") or {}).pop(key, None)
            if request.get("AdditionalInferenceSpecificationsToAdd"):
                d.setdefault("AdditionalInferenceSpecifications", []).extend(
                    copy.deepcopy(request["AdditionalInferenceSpecificationsToAdd"]))
            d["LastModifiedTime"] = now()

        self._store.update(PACKAGE, doc["ModelPackageArn"], change)
        return {"ModelPackageArn": doc["ModelPackageArn"]}

    def delete_package(self, request: dict[str, Any]) -> dict[str, Any]:
        doc = self._package(request["ModelPackageName"])
        self._store.delete(PACKAGE, doc["ModelPackageArn"])
        return {}


def _specification(doc: dict, name: str | None) -> dict:
    """The package's InferenceSpecification, or its additional one called ``name``."""
    arn = doc["ModelPackageArn"]
    if name is None:
        spec = doc.get("InferenceSpecification")
        if not spec:
            raise ValidationError(f"Model Package {arn} has no InferenceSpecification to create a model from.")
        return spec
    for spec in doc.get("AdditionalInferenceSpecifications") or []:
        if spec.get("Name") == name:
            return spec
    raise ValidationError(f"InferenceSpecificationName {name} is not found in Model Package {arn}.")


def _public(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not k.startswith("_") and v is not None}
