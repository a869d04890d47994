"""The model registry through real boto3: groups, versioned and unversioned packages, errors."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import aws_error, unique

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
SPEC = {"Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz"}],
        "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}


def test_versioned_packages_in_a_group(sm):
    group = unique("group")
    arn = sm.create_model_package_group(ModelPackageGroupName=group,
                                        ModelPackageGroupDescription="abalone models")["ModelPackageGroupArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:123456789012:model-package-group/{group.lower()}"
    described = sm.describe_model_package_group(ModelPackageGroupName=group)
    assert described["ModelPackageGroupStatus"] == "Completed"
    assert described["ModelPackageGroupDescription"] == "abalone models"
    with pytest.raises(ClientError) as exc:
        sm.create_model_package_group(ModelPackageGroupName=group)
    assert aws_error(exc)[0] == "ValidationException"

    metrics = {"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                              "S3Uri": "s3://bucket/evaluation.json"}}}
    first = sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=SPEC, ModelMetrics=metrics,
                                    CustomerMetadataProperties={"team": "a"})["ModelPackageArn"]
    second = sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=SPEC,
                                     ModelApprovalStatus="Approved")["ModelPackageArn"]
    assert first == f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{group.lower()}/1"
    assert second.endswith(f"/{group.lower()}/2")
    package = sm.describe_model_package(ModelPackageName=first)
    assert package["ModelPackageVersion"] == 1 and package["ModelPackageGroupName"] == group
    assert package["ModelPackageName"] == group
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageStatus"] == "Completed"
    assert package["ModelMetrics"] == metrics and package["InferenceSpecification"] == SPEC
    assert package["CustomerMetadataProperties"] == {"team": "a"}

    listed = sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    assert [p["ModelPackageVersion"] for p in listed] == [2, 1]  # newest first
    approved = sm.list_model_packages(ModelPackageGroupName=group, ModelApprovalStatus="Approved")
    assert [p["ModelPackageArn"] for p in approved["ModelPackageSummaryList"]] == [second]

    sm.update_model_package(ModelPackageArn=first, ModelApprovalStatus="Rejected", ApprovalDescription="too slow",
                            CustomerMetadataProperties={"stage": "dev"}, CustomerMetadataPropertiesToRemove=["team"])
    package = sm.describe_model_package(ModelPackageName=first)
    assert package["ModelApprovalStatus"] == "Rejected" and package["ApprovalDescription"] == "too slow"
    assert package["CustomerMetadataProperties"] == {"stage": "dev"}

    with pytest.raises(ClientError) as exc:
        sm.delete_model_package_group(ModelPackageGroupName=group)
    assert aws_error(exc)[0] == "ConflictException"
    sm.delete_model_package(ModelPackageName=first)
    sm.delete_model_package(ModelPackageName=second)
    sm.delete_model_package_group(ModelPackageGroupName=group)
    with pytest.raises(ClientError) as exc:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    assert aws_error(exc)[0] == "ValidationException"


def test_unversioned_packages_and_errors(sm):
    name = unique("package")
    arn = sm.create_model_package(ModelPackageName=name, InferenceSpecification=SPEC)["ModelPackageArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{name.lower()}"
    assert sm.describe_model_package(ModelPackageName=name)["ModelPackageArn"] == arn
    kinds = sm.list_model_packages(ModelPackageType="Unversioned", NameContains=name)["ModelPackageSummaryList"]
    assert [p["ModelPackageName"] for p in kinds] == [name]
    assert sm.list_model_packages(ModelPackageType="Versioned", NameContains=name)["ModelPackageSummaryList"] == []
    with pytest.raises(ClientError) as exc:
        sm.create_model_package(ModelPackageName=unique("p"), ModelPackageGroupName=unique("g"))
    assert aws_error(exc) == ("ValidationException", "Both ModelPackageName and ModelPackageGroupName are provided in "
                                                  "the input. Cannot determine which one to use.")
    with pytest.raises(ClientError) as exc:
        sm.create_model_package(ModelPackageGroupName=unique("nogroup"), InferenceSpecification=SPEC)
    assert aws_error(exc)[0] == "ValidationException" and "does not exist" in aws_error(exc)[1]
    with pytest.raises(ClientError) as exc:
        sm.create_model_package(ModelApprovalStatus="Approved", ModelPackageName=unique("p"))
    assert aws_error(exc)[0] == "ValidationException"
    with pytest.raises(ClientError) as exc:
        sm.describe_model_package(ModelPackageName=unique("absent"))
    assert aws_error(exc)[0] == "ValidationException"
