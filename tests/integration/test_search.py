"""``Search`` over every resource of botocore's ResourceType (real boto3 against the emulator).

The emulator is shared by the session, so every search here narrows itself to this test's own
resources (a unique name prefix) before the property under test.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, aws_error, script_job, unique, upload_sourcedir, wait_for, wait_status
from pipeline_support import definition, fail_step, wait_execution

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
SPEC = {"Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://bucket/model.tar.gz"}],
        "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}


def _named(key: str, prefix: str, *more: dict, operator: str = "And") -> dict:
    return {"Filters": [{"Name": key, "Operator": "Contains", "Value": prefix}, *more], "Operator": operator}


def _search(sm, resource: str, expression: dict, **extra) -> list[dict]:
    pages = sm.get_paginator("search").paginate(Resource=resource, SearchExpression=expression, **extra)
    return [record for page in pages for record in page["Results"]]


def test_training_jobs_by_name_hyperparameters_status_metrics_and_tags(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import json, os\n"
        "lr = float(json.load(open('/opt/ml/input/config/hyperparameters.json'))['lr'])\n"
        "print(f'loss={1 - lr}')\n"
        "open(os.path.join(os.environ['SM_MODEL_DIR'], 'm'), 'w').write('x')\n")})
    prefix = unique("search")
    names = []
    for index, lr in enumerate(("0.1", "0.3", "0.2")):
        request = script_job(f"{prefix}-{index}", bucket, code, hyperparameters={"lr": lr},
                             Tags=[{"Key": "team", "Value": "blue" if index else "red"}])
        request["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]
        sm.create_training_job(**request)
        names.append(request["TrainingJobName"])
    assert all(wait_for(sm, n)["TrainingJobStatus"] == "Completed" for n in names)

    mine = _named("TrainingJobName", prefix)
    everything = _search(sm, "TrainingJob", mine)
    assert sorted(r["TrainingJob"]["TrainingJobName"] for r in everything) == sorted(names)
    record = next(r["TrainingJob"] for r in everything if r["TrainingJob"]["TrainingJobName"] == names[0])
    described = sm.describe_training_job(TrainingJobName=names[0])
    assert record["TrainingJobArn"] == described["TrainingJobArn"]
    assert record["HyperParameters"] == described["HyperParameters"]
    assert record["FinalMetricDataList"] == described["FinalMetricDataList"]
    assert record["Tags"] == [{"Key": "team", "Value": "red"}]
    # a number compares as one (0.3 > 0.15, a text comparison would not order them), sorted, one per page
    ordered = _search(sm, "TrainingJob", _named("TrainingJobName", prefix, {
        "Name": "HyperParameters.lr", "Operator": "GreaterThan", "Value": "0.15"}),
        SortBy="HyperParameters.lr", SortOrder="Ascending", PaginationConfig={"PageSize": 1})
    assert [r["TrainingJob"]["TrainingJobName"] for r in ordered] == [names[2], names[1]]
    first = sm.search(Resource="TrainingJob", SearchExpression=mine, SortBy="TrainingJobName", MaxResults=2)
    assert [r["TrainingJob"]["TrainingJobName"] for r in first["Results"]] == [names[2], names[1]]
    assert first["TotalHits"] == {"Value": 3, "Relation": "EqualTo"} and first["NextToken"]
    rest = sm.search(Resource="TrainingJob", SearchExpression=mine, SortBy="TrainingJobName", MaxResults=2,
                     NextToken=first["NextToken"])
    assert [r["TrainingJob"]["TrainingJobName"] for r in rest["Results"]] == [names[0]] and "NextToken" not in rest
    # status, the final metric (Metrics.<name>) and a tag (Tags.<key>)
    assert len(_search(sm, "TrainingJob", _named("TrainingJobName", prefix, {
        "Name": "TrainingJobStatus", "Value": "Completed"}))) == 3
    assert _search(sm, "TrainingJob", _named("TrainingJobName", prefix, {
        "Name": "TrainingJobStatus", "Operator": "NotEquals", "Value": "Completed"})) == []
    best = _search(sm, "TrainingJob", _named("TrainingJobName", prefix, {
        "Name": "Metrics.loss", "Operator": "LessThan", "Value": "0.75"}))
    assert [r["TrainingJob"]["TrainingJobName"] for r in best] == [names[1]]
    blue = _search(sm, "TrainingJob", _named("TrainingJobName", prefix, {"Name": "Tags.team", "Value": "blue"}))
    assert sorted(r["TrainingJob"]["TrainingJobName"] for r in blue) == names[1:]


def test_model_packages_by_group_and_groups(sm):
    group, other = unique("search-group"), unique("search-group")
    for name in (group, other):
        sm.create_model_package_group(ModelPackageGroupName=name, Tags=[{"Key": "owner", "Value": name}])
    arns = [sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=SPEC,
                                    ModelApprovalStatus=status)["ModelPackageArn"]
            for status in ("Approved", "PendingManualApproval")]
    sm.create_model_package(ModelPackageGroupName=other, InferenceSpecification=SPEC)

    found = _search(sm, "ModelPackage", {"Filters": [{"Name": "ModelPackageGroupName", "Value": group}]},
                    SortBy="ModelPackageVersion", SortOrder="Ascending")
    assert [r["ModelPackage"]["ModelPackageArn"] for r in found] == arns
    assert [r["ModelPackage"]["ModelPackageVersion"] for r in found] == [1, 2]
    assert found[0]["ModelPackage"]["InferenceSpecification"]["Containers"][0]["Image"] == IMAGE
    approved = _search(sm, "ModelPackage", {"Filters": [{"Name": "ModelPackageGroupName", "Value": group},
                                                        {"Name": "ModelApprovalStatus", "Value": "Approved"}]})
    assert [r["ModelPackage"]["ModelPackageArn"] for r in approved] == arns[:1]
    groups = _search(sm, "ModelPackageGroup", {"Filters": [{"Name": "Tags.owner", "Value": other}]})
    assert [r["ModelPackageGroup"]["ModelPackageGroupName"] for r in groups] == [other]
    assert groups[0]["ModelPackageGroup"]["Tags"] == [{"Key": "owner", "Value": other}]


def test_pipelines_executions_and_versions(sm):
    name = unique("search-pipeline")
    arn = sm.create_pipeline(PipelineName=name, RoleArn=ROLE, PipelineDefinition=definition(
        [fail_step("Stop", "searched")], parameters=[{"Name": "Size", "Type": "Integer", "DefaultValue": 3}]),
        PipelineDescription="found by search")["PipelineArn"]
    execution = sm.start_pipeline_execution(PipelineName=name, PipelineParameters=[
        {"Name": "Size", "Value": "7"}])["PipelineExecutionArn"]
    assert wait_execution(sm, execution)["PipelineExecutionStatus"] == "Failed"

    pipelines = _search(sm, "Pipeline", {"Filters": [{"Name": "PipelineName", "Value": name}]})
    assert len(pipelines) == 1
    pipeline = pipelines[0]["Pipeline"]
    assert pipeline["PipelineArn"] == arn and pipeline["PipelineDescription"] == "found by search"
    assert "PipelineDefinition" not in pipeline  # not a member of the Pipeline search record
    executions = _search(sm, "PipelineExecution", {"Filters": [{"Name": "PipelineArn", "Value": arn}]})
    assert [r["PipelineExecution"]["PipelineExecutionArn"] for r in executions] == [execution]
    record = executions[0]["PipelineExecution"]
    assert record["PipelineExecutionStatus"] == "Failed"
    assert record["PipelineParameters"] == [{"Name": "Size", "Value": "7"}]
    failed = _search(sm, "PipelineExecution", {"Filters": [{"Name": "PipelineArn", "Value": arn},
                                                           {"Name": "PipelineExecutionStatus", "Value": "Succeeded"}]})
    assert failed == []
    versions = _search(sm, "PipelineVersion", {"Filters": [{"Name": "PipelineArn", "Value": arn}]})
    assert [(r["PipelineVersion"]["PipelineVersionId"]) for r in versions] == [1]


def test_experiments_trials_and_models(sm):
    experiment, trial, model = unique("search-exp"), unique("search-trial"), unique("search-model")
    sm.create_experiment(ExperimentName=experiment, Tags=[{"Key": "stage", "Value": "dev"}])
    sm.create_trial(TrialName=trial, ExperimentName=experiment)
    component = sm.create_trial_component(TrialComponentName=unique("search-tc"))["TrialComponentArn"]
    sm.associate_trial_component(TrialComponentName=component.rsplit("/", 1)[1], TrialName=trial)
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    sm.create_endpoint_config(EndpointConfigName=model, ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": model, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}])
    endpoint = sm.create_endpoint(EndpointName=model, EndpointConfigName=model,
                                  Tags=[{"Key": "stage", "Value": "dev"}])["EndpointArn"]

    found = _search(sm, "Experiment", {"Filters": [{"Name": "Tags.stage", "Value": "dev"},
                                                   {"Name": "ExperimentName", "Value": experiment}]})
    assert [r["Experiment"]["ExperimentName"] for r in found] == [experiment]
    trials = _search(sm, "ExperimentTrial", {"Filters": [{"Name": "ExperimentName", "Value": experiment}]})
    assert [r["Trial"]["TrialName"] for r in trials] == [trial]
    assert [s["TrialComponentArn"] for s in trials[0]["Trial"]["TrialComponentSummaries"]] == [component]
    models = _search(sm, "Model", {"Filters": [{"Name": "Model.ModelName", "Value": model}]})
    assert [r["Model"]["Model"]["ModelName"] for r in models] == [model]
    assert models[0]["Model"]["Model"]["PrimaryContainer"]["Image"] == IMAGE
    assert [e["EndpointArn"] for e in models[0]["Model"]["Endpoints"]] == [endpoint]
    endpoints = _search(sm, "Endpoint", {"Filters": [{"Name": "EndpointName", "Value": model},
                                                     {"Name": "Tags.stage", "Value": "dev"}]})
    assert [r["Endpoint"]["EndpointArn"] for r in endpoints] == [endpoint]
    assert endpoints[0]["Endpoint"]["EndpointConfigName"] == model
    wait_status(lambda: sm.describe_endpoint(EndpointName=model), "EndpointStatus")
    sm.delete_endpoint(EndpointName=model)


@pytest.mark.parametrize("resource", ["FeatureGroup", "FeatureMetadata", "Project", "ModelCard", "Image",
                                      "ImageVersion", "HubContent", "Job"])
def test_resources_smlocal_cannot_create_have_no_records(sm, resource):
    answer = sm.search(Resource=resource, SearchExpression={"Filters": [{"Name": "Tags.team", "Value": "a"}]})
    assert answer["Results"] == []
    assert sm.search(Resource=resource)["Results"] == []
    with pytest.raises(ClientError) as exc:  # the expression is validated all the same
        sm.search(Resource=resource, SearchExpression={})
    assert aws_error(exc) == ("ValidationException",
                              "A SearchExpression must specify at least one subexpression, filter, or nested filter.")


def test_ordering_a_text_property_is_refused(sm):
    """An ordering operator on a text property is AWS's ValidationException, not a 5xx."""
    name = unique("search-text")
    sm.create_model_package_group(ModelPackageGroupName=name)
    with pytest.raises(ClientError) as exc:
        sm.search(Resource="ModelPackageGroup", SearchExpression={"Filters": [
            {"Name": "ModelPackageGroupName", "Operator": "GreaterThan", "Value": name}]})
    assert aws_error(exc)[0] == "ValidationException"


def test_tuning_jobs_and_their_training_jobs(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": (
        "import os, sys\n"
        "print('score=' + sys.argv[sys.argv.index('--xval') + 1])\n"
        "open(os.path.join(os.environ['SM_MODEL_DIR'], 'm'), 'w').write('x')\n")})
    name = unique("search-hpo")
    request = script_job("unused", bucket, code)
    definition_ = {key: request[key] for key in ("AlgorithmSpecification", "RoleArn", "OutputDataConfig",
                                                 "ResourceConfig", "StoppingCondition")}
    definition_["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "score", "Regex": r"score=([0-9.]+)"}]
    definition_["StaticHyperParameters"] = {k: v for k, v in request["HyperParameters"].items()
                                            if k != "sagemaker_job_name"}
    arn = sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, TrainingJobDefinition=definition_, Tags=[{"Key": "sweep", "Value": name}],
        HyperParameterTuningJobConfig={
            "Strategy": "Grid", "ResourceLimits": {"MaxParallelTrainingJobs": 2},
            "ParameterRanges": {"IntegerParameterRanges": [{"Name": "xval", "MinValue": "1", "MaxValue": "2"}]},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"}})[
        "HyperParameterTuningJobArn"]
    job = wait_status(lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
                      "HyperParameterTuningJobStatus", 300)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")

    found = _search(sm, "HyperParameterTuningJob", {"Filters": [{"Name": "Tags.sweep", "Value": name}]})
    assert [r["HyperParameterTuningJob"]["HyperParameterTuningJobArn"] for r in found] == [arn]
    record = found[0]["HyperParameterTuningJob"]
    assert record["BestTrainingJob"]["TrainingJobName"] == job["BestTrainingJob"]["TrainingJobName"]
    assert record["TrainingJobStatusCounters"]["Completed"] == 2
    children = _search(sm, "TrainingJob", _named("TrainingJobName", f"{name}-00"),
                       SortBy="Metrics.score", SortOrder="Descending")
    assert [r["TrainingJob"]["HyperParameters"]["xval"] for r in children] == ["2", "1"]
