"""Pure helpers of the pipeline executor: generated names, cache keys, request typing."""

from __future__ import annotations

import re

import botocore.session

from smlocal.pipelines.executor import fingerprint
from smlocal.pipelines.steps import generated_name, random_token
from smlocal.service.pipeline_records import coerce_to_shape

MODEL = botocore.session.get_session().get_service_model("sagemaker")


def test_generated_names_fit_sagemaker_names():
    name = generated_name("abcdefghijkl", "AbaloneTrain")
    assert re.fullmatch(r"pipelines-abcdefghijkl-AbaloneTrain-[A-Za-z0-9]{10}", name)
    long = generated_name("abcdefghijkl", "S" * 80 + "_with_underscores")
    assert len(long) == 63 and re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", long)
    assert re.fullmatch(r"pipelines-abcdefghijkl-a-b-c-[A-Za-z0-9]{10}", generated_name("abcdefghijkl", "a_b.c"))
    assert len({random_token() for _ in range(50)}) == 50


def test_fingerprint_uses_only_the_cache_key_attributes():
    base = {"AlgorithmSpecification": {"TrainingImage": "i"}, "HyperParameters": {"a": "1"},
            "OutputDataConfig": {"S3OutputPath": "s3://b/one"}}
    moved = {**base, "OutputDataConfig": {"S3OutputPath": "s3://b/two"}}
    changed = {**base, "HyperParameters": {"a": "2"}}
    assert fingerprint("Training", base) == fingerprint("Training", moved)
    assert fingerprint("Training", base) != fingerprint("Training", changed)
    assert fingerprint("Training", base) != fingerprint("Processing", base)


def test_evaluated_values_are_typed_like_the_api():
    shape = MODEL.operation_model("CreateProcessingJob").input_shape
    request = {"ProcessingResources": {"ClusterConfig": {"InstanceCount": "2", "InstanceType": "ml.m5.xlarge",
                                                         "VolumeSizeInGB": 30.0}},
               "Environment": {"THRESHOLD": 6.0, "FLAG": True, "COUNT": 3},
               "AppSpecification": {"ImageUri": "x", "ContainerArguments": ["--n", 5]}}
    typed = coerce_to_shape(request, shape)
    assert typed["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2
    assert typed["ProcessingResources"]["ClusterConfig"]["VolumeSizeInGB"] == 30
    assert typed["Environment"] == {"THRESHOLD": "6.0", "FLAG": "true", "COUNT": "3"}
    assert typed["AppSpecification"]["ContainerArguments"] == ["--n", "5"]
    assert coerce_to_shape({"InstanceCount": "two"}, shape.members["ProcessingResources"].members[
        "ClusterConfig"]) == {"InstanceCount": "two"}  # left for validation to reject
