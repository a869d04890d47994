"""Names and ARNs as AWS has them: the naming table, ARN case, NameOrArn values, case-insensitive records."""

from __future__ import annotations

from smlocal.service.common import NAMING, Account, case_insensitive_kinds, naming
from smlocal.service.store import Store
from smlocal.service.tags import TAGGABLE_KINDS

ACCOUNT = Account("us-east-1", "123456789012")
PREFIX = "arn:aws:sagemaker:us-east-1:123456789012"


def test_arn_case_per_family():
    lowered = ("training-job", "processing-job", "transform-job", "hyper-parameter-tuning-job", "model",
               "endpoint-config", "endpoint", "model-package-group", "model-package", "experiment",
               "experiment-trial", "experiment-trial-component")
    for resource in lowered:
        assert ACCOUNT.arn(resource, "Mixed-Case-Name") == f"{PREFIX}:{resource}/mixed-case-name", resource
    assert ACCOUNT.arn("model-package", "Abalone-Group/3") == f"{PREFIX}:model-package/abalone-group/3"
    assert ACCOUNT.arn("pipeline", "Case-Test-Pipeline") == f"{PREFIX}:pipeline/Case-Test-Pipeline"
    assert [rule.kind for rule in NAMING if rule.arn_keeps_case] == ["Pipeline"]


def test_every_family_has_one_rule():
    kinds = [rule.kind for rule in NAMING]
    resources = [rule.resource for rule in NAMING]
    assert len(set(kinds)) == len(kinds) and len(set(resources)) == len(resources)
    assert {"TrainingJob", "ProcessingJob", "TransformJob", "HyperParameterTuningJob", "Model", "EndpointConfig",
            "Endpoint", "Pipeline", "ModelPackageGroup", "ModelPackage", "Experiment", "Trial",
            "TrialComponent"} <= set(kinds)
    # a pipeline execution is named only by its ARN (no naming rule) and is taggable all the same
    assert set(TAGGABLE_KINDS) == {*kinds, "PipelineExecution"}


def test_case_insensitive_kinds_are_the_lower_cased_families_and_pipelines():
    kinds = case_insensitive_kinds()
    assert "TrainingJob" in kinds and "Endpoint" in kinds and "Pipeline" in kinds and "TrialComponent" in kinds
    assert "PipelineExecution" not in kinds  # found by its exact ARN
    assert "Tags" not in kinds


def test_name_of_takes_the_name_from_an_arn_of_the_family_only():
    pipeline = naming("Pipeline")
    assert pipeline.name_of("Case-Test-Pipeline") == "Case-Test-Pipeline"
    assert pipeline.name_of(f"{PREFIX}:pipeline/Case-Test-Pipeline") == "Case-Test-Pipeline"
    assert pipeline.name_of("arn:aws-cn:sagemaker:cn-north-1:123456789012:pipeline/P") == "P"
    other = f"{PREFIX}:model/case-test-pipeline"
    assert pipeline.name_of(other) == other  # not a pipeline's ARN: looked up as given, so not found
    component = naming("TrialComponent")
    assert component.name_of(f"{PREFIX}:experiment-trial-component/job-aws-training-job") == "job-aws-training-job"
    assert naming("ModelPackage").name_of(f"{PREFIX}:model-package/group/2") == "group/2"


def test_the_store_finds_case_insensitive_records_under_any_case(tmp_path):
    store = Store(tmp_path / "s.db")
    assert store.insert("TrainingJob", "Mixed-Case-Job", {"TrainingJobName": "Mixed-Case-Job"})
    assert not store.insert("TrainingJob", "mixed-case-job", {"TrainingJobName": "mixed-case-job"})  # a duplicate
    assert store.get("TrainingJob", "MIXED-CASE-JOB") == {"TrainingJobName": "Mixed-Case-Job"}
    store.update("TrainingJob", "mixed-case-job", lambda d: d.update(Status="Done"))
    store.put("TrainingJob", "mixed-CASE-job", {"TrainingJobName": "Mixed-Case-Job", "Status": "Again"})
    assert list(store.names("TrainingJob")) == ["Mixed-Case-Job"]  # still keyed as it was created
    assert Store(tmp_path / "s.db").get("TrainingJob", "mixed-case-job")["Status"] == "Again"  # after a restart
    assert store.delete("TrainingJob", "MIXED-case-JOB") and not store.exists("TrainingJob", "Mixed-Case-Job")
    assert store.insert("TrainingJob", "mixed-case-job", {"TrainingJobName": "mixed-case-job"})  # free again
    arn = f"{PREFIX}:pipeline/Case-Test-Pipeline"  # case-sensitive kinds stay exact
    store.put("Tags", arn, {"Tags": []})
    assert store.get("Tags", arn.lower()) is None and store.exists("Tags", arn)
    assert store.insert("PipelineExecution", f"{arn}/execution/abc", {})
    assert store.get("PipelineExecution", f"{arn.lower()}/execution/abc") is None
