"""Planning a promotion: what is rewritten, what is copied, what blocks the move."""

from __future__ import annotations

import json

from smlocal.pipelines.promotion import Copy, Target, default_bucket, plan_promotion

LOCAL = "sagemaker-us-east-1-123456789012"
TARGET = Target(account="999988887777", region="us-east-1", role_arn="arn:aws:iam::999988887777:role/Prod",
                bucket="prod-bucket")
XGB = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"


def _plan(definition, target=TARGET, buckets=(LOCAL,)):
    return plan_promotion(definition, source_account="123456789012", local_buckets=set(buckets), target=target)


def _processing(outputs_uri="s3://%s/out/train" % LOCAL):
    return {"Name": "Prep", "Type": "Processing", "Arguments": {
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        "AppSpecification": {"ImageUri": XGB},
        "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1,
                                                  "VolumeSizeInGB": 30}},
        "ProcessingInputs": [{"InputName": "code", "S3Input": {"S3Uri": f"s3://{LOCAL}/code/prep.py"}}],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "train", "S3Output": {"S3Uri": outputs_uri}}]},
    }}


def test_buckets_roles_and_account_arns_are_rewritten():
    definition = {"Version": "2020-12-01",
                  "Parameters": [{"Name": "InputData", "Type": "String",
                                  "DefaultValue": f"s3://{LOCAL}/abalone/abalone.csv"}],
                  "Steps": [_processing(), {"Name": "Register", "Type": "RegisterModel", "Arguments": {
                      "ModelPackageGroupName": "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/g"}}]}
    plan = _plan(definition)
    text = json.dumps(plan.definition)
    assert LOCAL not in text and "123456789012" not in text
    args = plan.definition["Steps"][0]["Arguments"]
    assert args["RoleArn"] == TARGET.role_arn
    assert args["ProcessingInputs"][0]["S3Input"]["S3Uri"] == "s3://prod-bucket/code/prep.py"
    assert args["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == "s3://prod-bucket/out/train"
    assert plan.definition["Steps"][1]["Arguments"]["ModelPackageGroupName"] == \
        "arn:aws:sagemaker:us-east-1:999988887777:model-package-group/g"
    assert plan.definition["Parameters"][0]["DefaultValue"] == "s3://prod-bucket/abalone/abalone.csv"
    assert args["AppSpecification"]["ImageUri"] == XGB  # AWS's own image account is not ours to rewrite
    assert not plan.problems


def test_inputs_are_copied_outputs_are_not():
    plan = _plan({"Version": "2020-12-01", "Parameters": [
        {"Name": "InputData", "Type": "String", "DefaultValue": f"s3://{LOCAL}/abalone/abalone.csv"}],
        "Steps": [_processing()]})
    assert plan.copies == [
        Copy(f"s3://{LOCAL}/abalone/abalone.csv", "s3://prod-bucket/abalone/abalone.csv", "Parameters/DefaultValue"),
        Copy(f"s3://{LOCAL}/code/prep.py", "s3://prod-bucket/code/prep.py",
             "Steps/Arguments/ProcessingInputs/S3Input/S3Uri"),
    ]


def test_a_uri_the_pipeline_writes_is_not_copied_even_where_it_is_read():
    step = _processing(outputs_uri=f"s3://{LOCAL}/eval/output")
    register = {"Name": "Register", "Type": "RegisterModel", "Arguments": {"ModelMetrics": {"ModelQuality": {
        "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{LOCAL}/eval/output/evaluation.json"}}}}}
    plan = _plan({"Version": "2020-12-01", "Steps": [step, register]})
    assert [c.source for c in plan.copies] == [f"s3://{LOCAL}/code/prep.py"]
    assert plan.definition["Steps"][1]["Arguments"]["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == \
        "s3://prod-bucket/eval/output/evaluation.json"


def test_quoted_hyperparameter_uris_and_join_parts():
    training = {"Name": "Train", "Type": "Training", "Arguments": {
        "HyperParameters": {"sagemaker_submit_directory": f'"s3://{LOCAL}/code/sourcedir.tar.gz"'},
        "OutputDataConfig": {"S3OutputPath": {"Std:Join": {"On": "/", "Values": [f"s3://{LOCAL}", "models"]}}}}}
    transform = {"Name": "T", "Type": "Transform", "Arguments": {"TransformOutput": {
        "S3OutputPath": {"Std:Join": {"On": "/", "Values": ["s3:/", LOCAL, "out"]}}}}}
    plan = _plan({"Version": "2020-12-01", "Steps": [training, transform]})
    args = plan.definition["Steps"][0]["Arguments"]
    assert args["HyperParameters"]["sagemaker_submit_directory"] == '"s3://prod-bucket/code/sourcedir.tar.gz"'
    assert args["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"] == ["s3://prod-bucket", "models"]
    assert plan.definition["Steps"][1]["Arguments"]["TransformOutput"]["S3OutputPath"]["Std:Join"]["Values"] == \
        ["s3:/", "prod-bucket", "out"]
    assert [c.source for c in plan.copies] == [f"s3://{LOCAL}/code/sourcedir.tar.gz"]


def test_foreign_buckets_are_kept_with_a_note():
    step = _processing()
    step["Arguments"]["ProcessingInputs"].append(
        {"InputName": "public", "S3Input": {"S3Uri": "s3://sagemaker-sample-files/datasets/abalone.csv"}})
    plan = _plan({"Version": "2020-12-01", "Steps": [step]})
    inputs = plan.definition["Steps"][0]["Arguments"]["ProcessingInputs"]
    assert inputs[1]["S3Input"]["S3Uri"] == "s3://sagemaker-sample-files/datasets/abalone.csv"
    assert all("sagemaker-sample-files" not in c.source for c in plan.copies)
    assert any("s3://sagemaker-sample-files is not a local bucket" in note for note in plan.notes)


def test_images_of_another_region_and_local_instances_block_the_move():
    step = _processing()
    step["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceType"] = "local"
    target = Target(account="999988887777", region="eu-west-1", role_arn=TARGET.role_arn, bucket="b")
    plan = _plan({"Version": "2020-12-01", "Steps": [step]}, target=target)
    assert len(plan.problems) == 2
    local, image = sorted(plan.problems, key=lambda p: "ImageUri" in p)
    assert local.endswith("InstanceType: instance type 'local' exists only in SDK local mode")
    assert "is in region us-east-1, but the target is eu-west-1" in image and "region='eu-west-1'" in image


def test_regionless_arns_keep_an_empty_region_and_other_accounts_stay():
    definition = {"Version": "2020-12-01", "Steps": [{"Name": "C", "Type": "Callback", "Arguments": {
        "SqsQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/q",
        "Role": "arn:aws:iam::111122223333:role/Other",
        "Topic": "arn:aws:sns:us-east-1:111122223333:t"}}]}
    args = _plan(definition).definition["Steps"][0]["Arguments"]
    assert args["Role"] == "arn:aws:iam::111122223333:role/Other"
    assert args["Topic"] == "arn:aws:sns:us-east-1:111122223333:t"


def test_default_bucket_is_the_sdk_name():
    assert default_bucket("eu-west-1", "999988887777") == "sagemaker-eu-west-1-999988887777"
