"""Hyperparameter tuning over local training jobs, directly and as a pipeline Tuning step."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, SKLEARN_IMAGE, unique, upload_sourcedir, wait_status
from pipeline_support import create_pipeline, start, steps_of, wait_execution

# score peaks at xval = 3 (one-letter names would be passed as "-x": the toolkit gives them one dash) and is better for the "good" flavour
SCRIPT = """
import argparse, os
parser = argparse.ArgumentParser()
parser.add_argument("--xval", type=float, default=0.0)
parser.add_argument("--flavour", default="plain")
args = parser.parse_args()
score = -(args.xval - 3) ** 2 + (1.0 if args.flavour == "good" else 0.0)
print(f"score={score}")
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w").write(str(score))
"""


def _definition(bucket: str, code: str) -> dict:
    return {
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File",
                                   "MetricDefinitions": [{"Name": "score", "Regex": r"score=(-?[0-9.]+)"}]},
        "StaticHyperParameters": {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": f'"{code}"',
                                  "sagemaker_region": '"us-east-1"'},
        "RoleArn": ROLE, "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/tuning"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def _config(strategy: str, ranges: dict, jobs: int | None, parallel: int) -> dict:
    limits = {"MaxParallelTrainingJobs": parallel}
    if jobs:
        limits["MaxNumberOfTrainingJobs"] = jobs
    return {"Strategy": strategy, "ResourceLimits": limits, "ParameterRanges": ranges, "RandomSeed": 7,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"}}

@pytest.fixture
def code(s3, bucket):
    return upload_sourcedir(s3, bucket, {"train.py": SCRIPT})


def test_random_search_keeps_the_best_job(sm, bucket, code):
    name = unique("rand")
    ranges = {"ContinuousParameterRanges": [{"Name": "xval", "MinValue": "0", "MaxValue": "6"}],
              "CategoricalParameterRanges": [{"Name": "flavour", "Values": ["plain", "good"]}]}
    sm.create_hyper_parameter_tuning_job(HyperParameterTuningJobName=name, TrainingJobDefinition=_definition(bucket, code),
                                         HyperParameterTuningJobConfig=_config("Random", ranges, 4, 2))
    job = wait_status(lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
                      "HyperParameterTuningJobStatus", 300)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["TrainingJobStatusCounters"]["Completed"] == 4
    assert job["ObjectiveStatusCounters"] == {"Succeeded": 4, "Pending": 0, "Failed": 0}
    listed = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name,
                                                                  MaxResults=100)["TrainingJobSummaries"]
    assert len(listed) == 4
    assert all(re.fullmatch(rf"{name}-00[1-4]-[0-9a-f]{{8}}", j["TrainingJobName"]) for j in listed)
    values = {j["TrainingJobName"]: j["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for j in listed}
    best = job["BestTrainingJob"]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == max(values.values())
    x, flavour = float(best["TunedHyperParameters"]["xval"]), best["TunedHyperParameters"]["flavour"]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(
        -(x - 3) ** 2 + (1.0 if flavour == "good" else 0.0), abs=1e-4)
    child = sm.describe_training_job(TrainingJobName=best["TrainingJobName"])
    assert child["HyperParameters"]["_tuning_objective_metric"] == "score"
    summaries = sm.list_hyper_parameter_tuning_jobs(NameContains=name)["HyperParameterTuningJobSummaries"]
    assert [s["Strategy"] for s in summaries] == ["Random"]


def test_grid_search_tries_every_combination(sm, bucket, code):
    name = unique("grid")
    ranges = {"IntegerParameterRanges": [{"Name": "xval", "MinValue": "2", "MaxValue": "4"}],
              "CategoricalParameterRanges": [{"Name": "flavour", "Values": ["plain", "good"]}]}
    sm.create_hyper_parameter_tuning_job(HyperParameterTuningJobName=name, TrainingJobDefinition=_definition(bucket, code),
                                         HyperParameterTuningJobConfig=_config("Grid", ranges, None, 3))
    job = wait_status(lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
                      "HyperParameterTuningJobStatus", 300)
    assert job["TrainingJobStatusCounters"]["Completed"] == 6
    assert job["BestTrainingJob"]["TunedHyperParameters"] == {"xval": "3", "flavour": "good"}
    child = sm.describe_training_job(TrainingJobName=job["BestTrainingJob"]["TrainingJobName"])
    assert child["TuningJobArn"] == job["HyperParameterTuningJobArn"]  # as DescribeTrainingJob shows it on AWS
    with pytest.raises(ClientError) as exc:
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=unique("grid"), TrainingJobDefinition=_definition(bucket, code),
            HyperParameterTuningJobConfig=_config("Grid", {"ContinuousParameterRanges": [
                {"Name": "xval", "MinValue": "0", "MaxValue": "1"}]}, None, 1))
    assert exc.value.response["Error"]["Code"] == "ValidationException"


def test_tuning_step_in_a_pipeline(sm, bucket, code):
    ranges = {"IntegerParameterRanges": [{"Name": "xval", "MinValue": "1", "MaxValue": "5"}]}
    tune = {"Name": "Tune", "Type": "Tuning", "Arguments": {
        "HyperParameterTuningJobConfig": _config("Grid", ranges, None, 5), "TrainingJobDefinition": _definition(bucket, code)}}
    report = {"Name": "Best", "Type": "Fail", "Arguments": {"ErrorMessage": {"Std:Join": {"On": " ", "Values": [
        {"Get": "Steps.Tune.BestTrainingJob.TunedHyperParameters['xval']"},
        {"Get": "Steps.Tune.TrainingJobSummaries[0].TrainingJobName"}]}}}}
    arn = start(sm, create_pipeline(sm, [tune, report]))
    wait_execution(sm, arn, timeout=300)
    found = steps_of(sm, arn)
    assert found["Tune"]["StepStatus"] == "Succeeded"
    tuning_name = found["Tune"]["Metadata"]["TuningJob"]["Arn"].rsplit("/", 1)[-1]
    job = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_name)
    assert len(tuning_name) <= 32
    assert found["Best"]["FailureReason"] == f"3 {job['BestTrainingJob']['TrainingJobName']}"


def test_a_member_the_model_lacks_never_reaches_the_service(emulator, sm, bucket, code):
    """AWS ignores unknown members; a client's own ``TuningJobArn`` on CreateTrainingJob is not shown."""
    import json
    import urllib.request

    name = unique("unknown-member")
    request = {"TrainingJobName": name, **_definition(bucket, code), "TuningJobArn": "arn:aws:sagemaker:forged"}
    request.pop("StaticHyperParameters", None)
    body = json.dumps(request, default=str).encode()
    http = urllib.request.Request(emulator.endpoint + "/", data=body, method="POST", headers={
        "X-Amz-Target": "SageMaker.CreateTrainingJob", "Content-Type": "application/x-amz-json-1.1"})
    with urllib.request.urlopen(http) as answer:
        assert answer.status == 200
    assert "TuningJobArn" not in sm.describe_training_job(TrainingJobName=name)
