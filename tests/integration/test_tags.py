"""AddTags / ListTags / DeleteTags through boto3, and the Tags of Create calls."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, unique


def _model(sm, tags=None) -> str:
    name = unique("tagged")
    extra = {"Tags": tags} if tags else {}
    return sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        "ModelDataUrl": "s3://bucket/model.tar.gz"}, **extra)["ModelArn"]


def test_create_tags_are_listed_and_add_replaces_by_key(sm):
    arn = _model(sm, tags=[{"Key": "team", "Value": "ml"}, {"Key": "stage", "Value": "dev"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}, {"Key": "stage", "Value": "dev"}]
    added = sm.add_tags(ResourceArn=arn, Tags=[{"Key": "stage", "Value": "prod"}, {"Key": "owner", "Value": "a"}])
    assert added["Tags"] == [{"Key": "stage", "Value": "prod"}, {"Key": "owner", "Value": "a"}]
    assert {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]} == \
        {"team": "ml", "stage": "prod", "owner": "a"}
    sm.delete_tags(ResourceArn=arn, TagKeys=["team", "not-there"])
    assert {t["Key"] for t in sm.list_tags(ResourceArn=arn)["Tags"]} == {"stage", "owner"}


def test_pipeline_tags_from_create_and_the_sdk_upsert(sm):
    name = unique("tagpl")
    definition = {"Version": "2020-12-01", "Steps": [
        {"Name": "Stop", "Type": "Fail", "Arguments": {"ErrorMessage": "x"}}]}
    arn = sm.create_pipeline(PipelineName=name, RoleArn=ROLE, PipelineDefinition=json.dumps(definition),
                             Tags=[{"Key": f"k{i}", "Value": str(i)} for i in range(5)])["PipelineArn"]
    assert [t["Key"] for t in sm.list_tags(ResourceArn=arn)["Tags"]] == [f"k{i}" for i in range(5)]
    # what SDK v2's Pipeline.upsert(tags=...) does for an existing pipeline: update, then AddTags
    sm.update_pipeline(PipelineName=name, RoleArn=ROLE, PipelineDefinition=json.dumps(definition))
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "k0", "Value": "new"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"][0] == {"Key": "k0", "Value": "new"}


def test_unknown_resource_reserved_keys_and_the_limit(sm):
    with pytest.raises(ClientError) as unknown:
        sm.list_tags(ResourceArn="arn:aws:sagemaker:us-east-1:123456789012:model/no-such-model")
    assert unknown.value.response["Error"]["Code"] == "ValidationException"
    arn = _model(sm)
    assert sm.list_tags(ResourceArn=arn)["Tags"] == []
    with pytest.raises(ClientError) as reserved:
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": "aws:owner", "Value": "x"}])
    assert "reserved" in reserved.value.response["Error"]["Message"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": ""} for i in range(50)])
    with pytest.raises(ClientError) as limit:
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": "one-more", "Value": ""}])
    assert limit.value.response["Error"]["Code"] == "ValidationException"
    assert len(sm.list_tags(ResourceArn=arn, MaxResults=100)["Tags"]) == 50


def test_recreated_resource_does_not_inherit_old_tags(sm):
    name = unique("Again")  # the ARN carries it in lower case
    container = {"Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"}
    arn = sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container,
                          Tags=[{"Key": "old", "Value": "1"}])["ModelArn"]
    sm.delete_model(ModelName=name)
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    assert sm.list_tags(ResourceArn=arn)["Tags"] == []
