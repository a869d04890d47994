"""A training job's trial component summarises every value of each metric its log carried, as AWS's does.

AWS fills a training job's ``<job>-aws-training-job`` component with one TrialComponentMetricSummary per
metric (botocore shape: Max, Min, Last, Count — "the number of samples used to generate the metric" —,
Avg, StdDev, TimeStamp, SourceArn), computed over the metric's whole series, not its final value alone.
"""

from __future__ import annotations

import statistics

import pytest

from conftest import script_job, unique, upload_sourcedir, wait_for

LOSSES = [3.0, 1.0, 2.5, 1.5]  # the last is neither the minimum nor the maximum


def test_training_component_metrics_are_statistics_over_the_log(sm, s3, bucket):
    lines = "".join(f"print('epoch {i} loss={v}', flush=True)\n" for i, v in enumerate(LOSSES))
    code = upload_sourcedir(s3, bucket, {"train.py": lines + "print('acc=0.5')\n"})
    name = unique("metrics")
    request = script_job(name, bucket, code, hyperparameters={"epochs": "4"})
    request["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"},
                                                              {"Name": "acc", "Regex": r"acc=([0-9.]+)"}]
    sm.create_training_job(**request)
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]} == {"loss": 1.5, "acc": 0.5}

    component = sm.describe_trial_component(TrialComponentName=f"{name}-aws-training-job")
    metrics = {m["MetricName"]: m for m in component["Metrics"]}
    loss = metrics["loss"]
    assert loss["Count"] == len(LOSSES)
    assert (loss["Min"], loss["Max"], loss["Last"]) == (1.0, 3.0, 1.5)
    assert loss["Avg"] == pytest.approx(statistics.mean(LOSSES))
    assert loss["StdDev"] == pytest.approx(statistics.stdev(LOSSES))
    assert loss["SourceArn"] == job["TrainingJobArn"]
    assert job["TrainingStartTime"] <= loss["TimeStamp"] <= job["TrainingEndTime"]
    acc = metrics["acc"]
    assert (acc["Count"], acc["Min"], acc["Max"], acc["Avg"], acc["StdDev"]) == (1, 0.5, 0.5, 0.5, 0.0)
    assert component["Parameters"]["epochs"] == {"NumberValue": 4.0}
