"""Names and ARNs as AWS has them, through real boto3 against the running emulator.

AWS keeps a pipeline's name case in its ARN and lower-cases the name in the other families' ARNs;
in those families a name matches in any case, so a job is found by the name its ARN carries (as SDK
v2 does for function steps). Tags need the ARN as AWS spells it; name-only members refuse an ARN.
"""

from __future__ import annotations

import textwrap
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, SKLEARN_IMAGE, aws_error, put_s3, script_job, upload_sourcedir, wait_for, wait_status
from pipeline_support import definition, steps_of, training_code, training_step, wait_execution

PREFIX = "arn:aws:sagemaker:us-east-1:123456789012"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
PATTERN = "failed to satisfy constraint: Member must satisfy regular expression pattern"


def _mixed(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}X"


def _processing(bucket: str, s3, name: str | None = None) -> dict:
    """A CreateProcessingJob request (without its name when ``name`` is None, as a pipeline step's)."""
    code = put_s3(s3, bucket, f"code/{uuid.uuid4().hex[:8]}/job.py", textwrap.dedent("print('prepared')"))
    request = {
        "ProcessingInputs": [{"InputName": "code", "S3Input": {
            "S3Uri": code, "LocalPath": "/opt/ml/processing/input/code", "S3DataType": "S3Prefix",
            "S3InputMode": "File"}}],
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE,
                             "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/job.py"]},
        "RoleArn": ROLE,
    }
    if name:
        request["ProcessingJobName"] = name
    return request

def test_mixed_case_pipeline_keeps_its_case_and_its_jobs_are_described_from_their_arns(sm, s3, bucket):
    name = _mixed("Case-Test-Pipeline")
    steps = [{"Name": "CasePrep", "Type": "Processing", "Arguments": _processing(bucket, s3)},
             training_step("CaseTrain", bucket, training_code(s3, bucket), DependsOn=["CasePrep"])]
    arn = sm.create_pipeline(PipelineName=name, RoleArn=ROLE, PipelineDefinition=definition(steps))["PipelineArn"]
    assert arn == f"{PREFIX}:pipeline/{name}"
    assert sm.describe_pipeline(PipelineName=name)["PipelineArn"] == arn
    assert sm.describe_pipeline(PipelineName=arn)["PipelineName"] == name  # PipelineNameOrArn
    listed = sm.list_pipelines(PipelineNamePrefix=name)["PipelineSummaries"]
    assert [(p["PipelineName"], p["PipelineArn"]) for p in listed] == [(name, arn)]

    execution = sm.start_pipeline_execution(PipelineName=arn)["PipelineExecutionArn"]
    assert execution.startswith(f"{arn}/execution/")
    assert sm.describe_pipeline_execution(PipelineExecutionArn=execution)["PipelineArn"] == arn
    summaries = sm.list_pipeline_executions(PipelineName=arn)["PipelineExecutionSummaries"]
    assert [s["PipelineExecutionArn"] for s in summaries] == [execution]

    # UpdatePipeline / DeletePipeline take a name only: an ARN fails the member's pattern, as on AWS
    for call in (lambda: sm.delete_pipeline(PipelineName=arn),
                 lambda: sm.update_pipeline(PipelineName=arn, PipelineDescription="x")):
        with pytest.raises(ClientError) as exc:
            call()
        code, message = aws_error(exc)
        assert code == "ValidationException" and PATTERN in message and "pipelineName" in message

    # tags answer to the ARN as AWS spells it; the lower-cased spelling is no resource
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "ml"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]
    with pytest.raises(ClientError) as exc:
        sm.list_tags(ResourceArn=arn.lower())
    assert aws_error(exc) == ("ValidationException", f"Resource {arn.lower()} does not exist.")

    done = wait_execution(sm, execution)
    assert done["PipelineExecutionStatus"] == "Succeeded", done.get("FailureReason")
    found = steps_of(sm, execution)
    train_arn = found["CaseTrain"]["Metadata"]["TrainingJob"]["Arn"]
    prep_arn = found["CasePrep"]["Metadata"]["ProcessingJob"]["Arn"]
    assert train_arn == train_arn.lower() and prep_arn == prep_arn.lower()
    # the SDK's way (workflow/pipeline.py get_function_step_result): the name from the ARN
    job = sm.describe_training_job(TrainingJobName=train_arn.split("/")[-1])
    assert job["TrainingJobArn"] == train_arn and "-CaseTrain-" in job["TrainingJobName"]
    prep = sm.describe_processing_job(ProcessingJobName=prep_arn.split("/")[-1])
    assert prep["ProcessingJobArn"] == prep_arn and "-CasePrep-" in prep["ProcessingJobName"]
    sm.delete_pipeline(PipelineName=name.upper())  # a pipeline's name matches in any case, as before
    with pytest.raises(ClientError) as exc:
        sm.describe_pipeline(PipelineName=arn)
    assert aws_error(exc) == ("ResourceNotFound", f"Pipeline '{arn}' does not exist.")


def test_jobs_created_with_mixed_case_names_are_found_in_any_case(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": "print('trained')"})
    name = _mixed("Mixed-Case-Train")
    arn = sm.create_training_job(**script_job(name, bucket, code))["TrainingJobArn"]
    assert arn == f"{PREFIX}:training-job/{name.lower()}"
    job = wait_for(sm, arn.split("/")[-1])
    assert job["TrainingJobName"] == name and job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    with pytest.raises(ClientError) as exc:  # one ARN, one job: the other case is a duplicate
        sm.create_training_job(**script_job(name.lower(), bucket, code))
    assert aws_error(exc) == ("ResourceInUse", "Training job names must be unique within an AWS account and "
                              f"region, and a training job with this name already exists ({arn})")
    with pytest.raises(ClientError) as exc:  # found by the other case, refused for its status
        sm.stop_training_job(TrainingJobName=name.upper())
    assert aws_error(exc) == ("ValidationException",
                              "The request was rejected because the training job is in status Completed.")
    with pytest.raises(ClientError) as exc:  # TrainingJobName is a name only
        sm.describe_training_job(TrainingJobName=arn)
    assert aws_error(exc)[0] == "ValidationException" and PATTERN in aws_error(exc)[1]

    processing = _mixed("Mixed-Case-Prep")
    prep_arn = sm.create_processing_job(**_processing(bucket, s3, processing))["ProcessingJobArn"]
    assert prep_arn == f"{PREFIX}:processing-job/{processing.lower()}"
    done = wait_status(lambda: sm.describe_processing_job(ProcessingJobName=prep_arn.split("/")[-1]), "ProcessingJobStatus")
    assert done["ProcessingJobName"] == processing and done["ProcessingJobStatus"] == "Completed"
    with pytest.raises(ClientError) as exc:
        sm.create_processing_job(**_processing(bucket, s3, processing.upper()))
    assert aws_error(exc)[0] == "ResourceInUse"

    # tags: the job's ARN (lower case) works; the name's case put back in it is another resource
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}])
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "k", "Value": "v"}]
    cased = f"{PREFIX}:training-job/{name}"
    with pytest.raises(ClientError) as exc:
        sm.list_tags(ResourceArn=cased)
    assert aws_error(exc) == ("ValidationException", f"Resource {cased} does not exist.")


def test_every_family_arn_case_and_lookup_by_the_name_in_its_arn(sm, s3, bucket):
    tag = uuid.uuid4().hex[:6]
    model = f"Case-Model-{tag}X"
    model_arn = sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": XGBOOST, "ModelDataUrl": f"s3://{bucket}/none/model.tar.gz"})["ModelArn"]
    assert model_arn == f"{PREFIX}:model/{model.lower()}"
    assert sm.describe_model(ModelName=model_arn.split("/")[-1])["ModelName"] == model
    with pytest.raises(ClientError) as exc:
        sm.create_model(ModelName=model.upper(), ExecutionRoleArn=ROLE,
                        PrimaryContainer={"Image": XGBOOST, "ModelDataUrl": f"s3://{bucket}/m.tar.gz"})
    assert aws_error(exc) == ("ValidationException", f'Cannot create already existing model "{model_arn}".')

    config = f"Case-Config-{tag}X"
    config_arn = sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model.lower(), "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1}])["EndpointConfigArn"]
    assert config_arn == f"{PREFIX}:endpoint-config/{config.lower()}"
    assert sm.describe_endpoint_config(EndpointConfigName=config.lower())["EndpointConfigName"] == config

    transform = f"Case-Transform-{tag}X"
    put_s3(s3, bucket, "batch/in.csv", "1,2\n")
    transform_arn = sm.create_transform_job(
        TransformJobName=transform, ModelName=model.upper(),
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/batch"}}},
        TransformOutput={"S3OutputPath": f"s3://{bucket}/batch-out"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})["TransformJobArn"]
    assert transform_arn == f"{PREFIX}:transform-job/{transform.lower()}"
    ended = wait_status(lambda: sm.describe_transform_job(TransformJobName=transform_arn.split("/")[-1]),
                  "TransformJobStatus")
    assert ended["TransformJobName"] == transform and ended["TransformJobStatus"] in ("Completed", "Failed")

    group = f"Case-Group-{tag}X"
    group_arn = sm.create_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupArn"]
    assert group_arn == f"{PREFIX}:model-package-group/{group.lower()}"
    assert sm.describe_model_package_group(ModelPackageGroupName=group_arn)["ModelPackageGroupName"] == group
    package_arn = sm.create_model_package(ModelPackageGroupName=group.lower(), InferenceSpecification={
        "Containers": [{"Image": XGBOOST}], "SupportedContentTypes": ["text/csv"],
        "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]
    assert package_arn == f"{PREFIX}:model-package/{group.lower()}/1"
    assert sm.describe_model_package(ModelPackageName=package_arn)["ModelPackageGroupName"] == group

    experiment, trial, component = f"Case-Exp-{tag}X", f"Case-Trial-{tag}X", f"Case-Component-{tag}X"
    assert sm.create_experiment(ExperimentName=experiment)["ExperimentArn"] == \
        f"{PREFIX}:experiment/{experiment.lower()}"
    assert sm.create_trial(TrialName=trial, ExperimentName=experiment.lower())["TrialArn"] == \
        f"{PREFIX}:experiment-trial/{trial.lower()}"
    component_arn = sm.create_trial_component(TrialComponentName=component)["TrialComponentArn"]
    assert component_arn == f"{PREFIX}:experiment-trial-component/{component.lower()}"
    sm.associate_trial_component(TrialComponentName=component.lower(), TrialName=trial.upper())
    assert sm.describe_trial_component(TrialComponentName=component_arn)["TrialComponentName"] == component
    listed = sm.list_trials(ExperimentName=experiment.upper())["TrialSummaries"]
    assert [t["TrialName"] for t in listed] == [trial]
    assert [c["TrialComponentName"] for c in sm.list_trial_components(
        TrialName=trial.lower())["TrialComponentSummaries"]] == [component]
    with pytest.raises(ClientError) as exc:
        sm.create_experiment(ExperimentName=experiment.lower())
    assert aws_error(exc) == ("ValidationException", f"Experiment with name ({experiment.lower()}) already exists.")

    tuning = f"Case-Tune-{tag}X"
    code = upload_sourcedir(s3, bucket, {"train.py": "print('score=1.0')"})
    training = script_job("unused", bucket, code)
    tuning_arn = sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning,
        HyperParameterTuningJobConfig={
            "Strategy": "Random", "ResourceLimits": {"MaxNumberOfTrainingJobs": 5, "MaxParallelTrainingJobs": 1},
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
            "ParameterRanges": {"IntegerParameterRanges": [{"Name": "x", "MinValue": "1", "MaxValue": "9"}]}},
        TrainingJobDefinition={
            "AlgorithmSpecification": {**training["AlgorithmSpecification"],
                                       "MetricDefinitions": [{"Name": "score", "Regex": r"score=([0-9.]+)"}]},
            "StaticHyperParameters": {k: v for k, v in training["HyperParameters"].items()
                                      if k != "sagemaker_job_name"},
            "RoleArn": ROLE, "OutputDataConfig": training["OutputDataConfig"],
            "ResourceConfig": training["ResourceConfig"], "StoppingCondition": training["StoppingCondition"]},
    )["HyperParameterTuningJobArn"]
    assert tuning_arn == f"{PREFIX}:hyper-parameter-tuning-job/{tuning.lower()}"
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning.lower())
    stopped = wait_status(lambda: sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning.upper()),
                    "HyperParameterTuningJobStatus", timeout=60)
    assert stopped["HyperParameterTuningJobName"] == tuning
    assert stopped["HyperParameterTuningJobStatus"] == "Stopped"

    sm.delete_endpoint_config(EndpointConfigName=config.upper())
    sm.delete_model(ModelName=model_arn.split("/")[-1])
    with pytest.raises(ClientError) as exc:
        sm.describe_model(ModelName=model)
    assert aws_error(exc) == ("ValidationException", f'Could not find model "{model_arn}".')
