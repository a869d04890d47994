"""Tuning built-in algorithms as AWS runs it: objective metrics known without MetricDefinitions, the
tuning job's ``<name>-aws-tuning-job`` experiment with one trial per training job, and every training
job's ``<job>-aws-training-job`` trial component."""

from __future__ import annotations


import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, SKLEARN_IMAGE, aws_error, put_s3, unique, wait_for, wait_status

pytestmark = pytest.mark.slow

KNN_IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/knn:1"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
NO_METRIC = ("A metric is required for this hyperparameter tuning job objective. Provide a metric in the metric "
             "definitions.")


def _csv(target, data) -> str:
    return "".join(",".join(str(v) for v in [t, *row]) + "\n" for t, row in zip(target, data))


@pytest.fixture
def iris_channels(s3, bucket):
    """Iris as headerless CSV, label first: (train URI, test URI)."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    train = [i for i in range(150) if i % 5]
    test = [i for i in range(150) if not i % 5]
    return (put_s3(s3, bucket, "iris/train/train.csv", _csv(iris.target[train], iris.data[train].tolist())),
            put_s3(s3, bucket, "iris/test/test.csv", _csv(iris.target[test], iris.data[test].tolist())))


def _channel(name: str, uri: str) -> dict:
    return {"ChannelName": name, "ContentType": "text/csv", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}}

def _knn_definition(bucket: str, train: str, test: str) -> dict:
    return {
        "AlgorithmSpecification": {"TrainingImage": KNN_IMAGE, "TrainingInputMode": "File"},
        "StaticHyperParameters": {"feature_dim": "4", "predictor_type": "classifier", "sample_size": "100"},
        "RoleArn": ROLE, "InputDataConfig": [_channel("train", train), _channel("test", test)],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/knn-tuning"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def test_knn_tuning_with_the_sdk_needs_no_metric_definitions(client_env, iris_channels, bucket, sm):
    import sagemaker
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.tuner import HyperparameterTuner, IntegerParameter

    image = sagemaker.image_uris.retrieve("knn", "us-east-1")
    estimator = Estimator(image_uri=image, role=ROLE, instance_count=1, instance_type="ml.m5.large",
                          output_path=f"s3://{bucket}/knn-sdk", sagemaker_session=sagemaker.Session())
    estimator.set_hyperparameters(feature_dim=4, predictor_type="classifier", sample_size=100)
    tuner = HyperparameterTuner(estimator, "test:accuracy", {"k": IntegerParameter(1, 9)}, objective_type="Maximize",
                                max_jobs=2, max_parallel_jobs=2, strategy="Random")
    train, test = iris_channels
    tuner.fit({"train": TrainingInput(train, content_type="text/csv"),
               "test": TrainingInput(test, content_type="text/csv")}, wait=False)
    name = tuner.latest_tuning_job.name
    job = wait_status(lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
                      "HyperParameterTuningJobStatus", 300)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ObjectiveStatusCounters"] == {"Succeeded": 2, "Pending": 0, "Failed": 0}
    best = sm.describe_training_job(TrainingJobName=tuner.best_training_job())
    reported = {m["MetricName"]: m["Value"] for m in best["FinalMetricDataList"]}
    assert 0.8 <= reported["test:accuracy"] <= 1.0
    assert job["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == reported["test:accuracy"]
    assert "MetricDefinitions" not in best["AlgorithmSpecification"]
    frame = tuner.analytics().dataframe()
    assert len(frame) == 2 and frame["FinalObjectiveValue"].max() == reported["test:accuracy"]


def test_builtin_xgboost_tuning_on_validation_rmse_with_its_experiment(sm, s3, bucket):
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    rows = list(range(len(data.target)))
    train = put_s3(s3, bucket, "diabetes/train.csv", _csv(data.target[[i for i in rows if i % 4]],
                                                           data.data[[i for i in rows if i % 4]].tolist()))
    held = [i for i in rows if not i % 4]
    validation = put_s3(s3, bucket, "diabetes/validation.csv", _csv(data.target[held], data.data[held].tolist()))
    name = unique("xgbt")
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig={
            "Strategy": "Grid", "ResourceLimits": {"MaxParallelTrainingJobs": 2},
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "validation:rmse"},
            "ParameterRanges": {"IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "1", "MaxValue": "2"}]}},
        TrainingJobDefinition={
            "AlgorithmSpecification": {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
            "StaticHyperParameters": {"num_round": "5", "objective": "reg:squarederror"},
            "RoleArn": ROLE, "InputDataConfig": [_channel("train", train), _channel("validation", validation)],
            "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/xgb-tuning"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600}})
    job = wait_status(lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
                      "HyperParameterTuningJobStatus", 300)
    assert job["HyperParameterTuningJobStatus"] == "Completed", job.get("FailureReason")
    children = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
        "TrainingJobSummaries"]
    values = {c["TrainingJobName"]: c["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] for c in children}
    assert len(values) == 2
    assert job["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == min(values.values())
    child = sm.describe_training_job(TrainingJobName=children[0]["TrainingJobName"])
    assert {m["MetricName"] for m in child["FinalMetricDataList"]} == {"train:rmse", "validation:rmse"}

    # the tuning job's experiment: one trial per training job, each holding that job's trial component
    experiment = f"{name}-aws-tuning-job"
    described = sm.describe_experiment(ExperimentName=experiment)
    assert described["Source"] == {"SourceArn": job["HyperParameterTuningJobArn"],
                                   "SourceType": "SageMakerHyperParameterTuningJob"}
    trials = sm.list_trials(ExperimentName=experiment)["TrialSummaries"]
    assert sorted(t["TrialName"] for t in trials) == sorted(f"{c}-aws-training-job" for c in values)
    for summary in children:
        trial = f"{summary['TrainingJobName']}-aws-training-job"
        components = sm.list_trial_components(TrialName=trial)["TrialComponentSummaries"]
        assert [c["TrialComponentName"] for c in components] == [trial]
        assert components[0]["TrialComponentSource"] == {"SourceArn": summary["TrainingJobArn"],
                                                         "SourceType": "SageMakerTrainingJob"}
        component = sm.describe_trial_component(TrialComponentName=trial)
        assert component["Status"]["PrimaryStatus"] == "Completed"
        metrics = {m["MetricName"]: m["Last"] for m in component["Metrics"]}
        assert metrics["validation:rmse"] == values[summary["TrainingJobName"]]
        depth = float(summary["TunedHyperParameters"]["max_depth"])
        assert component["Parameters"]["max_depth"] == {"NumberValue": depth}
        assert component["OutputArtifacts"]["SageMaker.ModelArtifact"]["Value"].endswith("/output/model.tar.gz")
    # the Airflow provider's clean-up of a tuning experiment works as on AWS
    for trial in [t["TrialName"] for t in trials]:
        for component in sm.list_trial_components(TrialName=trial)["TrialComponentSummaries"]:
            sm.disassociate_trial_component(TrialComponentName=component["TrialComponentName"], TrialName=trial)
            sm.delete_trial_component(TrialComponentName=component["TrialComponentName"])
        sm.delete_trial(TrialName=trial)
    sm.delete_experiment(ExperimentName=experiment)


def test_an_objective_the_algorithm_does_not_emit_is_refused(sm, bucket, iris_channels):
    train, test = iris_channels
    config = {"Strategy": "Random", "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 2},
              "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "validation:rmse"},
              "ParameterRanges": {"IntegerParameterRanges": [{"Name": "k", "MinValue": "1", "MaxValue": "5"}]}}
    with pytest.raises(ClientError) as exc:  # k-NN reports test:accuracy / test:mse only
        sm.create_hyper_parameter_tuning_job(HyperParameterTuningJobName=unique("knnbad"),
                                             HyperParameterTuningJobConfig=config,
                                             TrainingJobDefinition=_knn_definition(bucket, train, test))
    assert aws_error(exc) == ("ValidationException", NO_METRIC)
    script = _knn_definition(bucket, train, test)
    script["AlgorithmSpecification"] = {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File",
                                        "MetricDefinitions": [{"Name": "loss", "Regex": "loss=(\\S+)"}]}
    with pytest.raises(ClientError) as exc:  # a custom metric must be defined
        sm.create_hyper_parameter_tuning_job(HyperParameterTuningJobName=unique("skbad"),
                                             HyperParameterTuningJobConfig=config, TrainingJobDefinition=script)
    assert aws_error(exc) == ("ValidationException", NO_METRIC)


def test_a_builtin_training_job_reports_its_metrics_and_gets_its_trial_component(sm, bucket, iris_channels):
    train, test = iris_channels
    name = unique("knnjob")
    experiment, trial = unique("exp"), unique("trial")
    sm.create_experiment(ExperimentName=experiment)
    sm.create_trial(TrialName=trial, ExperimentName=experiment)
    definition = _knn_definition(bucket, train, test)
    sm.create_training_job(
        TrainingJobName=name, AlgorithmSpecification=definition["AlgorithmSpecification"],
        HyperParameters={**definition["StaticHyperParameters"], "k": "3"}, RoleArn=ROLE,
        InputDataConfig=definition["InputDataConfig"], OutputDataConfig=definition["OutputDataConfig"],
        ResourceConfig=definition["ResourceConfig"], StoppingCondition=definition["StoppingCondition"],
        ExperimentConfig={"ExperimentName": experiment, "TrialName": trial})
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    reported = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert set(reported) == {"test:accuracy"} and reported["test:accuracy"] >= 0.8
    component = sm.describe_trial_component(TrialComponentName=f"{name}-aws-training-job")
    assert component["Source"] == {"SourceArn": job["TrainingJobArn"], "SourceType": "SageMakerTrainingJob"}
    assert component["Status"]["PrimaryStatus"] == "Completed"
    assert [m["MetricName"] for m in component["Metrics"]] == ["test:accuracy"]
    assert component["InputArtifacts"]["train"] == {"Value": train, "MediaType": "text/csv"}
    listed = sm.list_trial_components(TrialName=trial)["TrialComponentSummaries"]
    assert [c["TrialComponentName"] for c in listed] == [f"{name}-aws-training-job"]
