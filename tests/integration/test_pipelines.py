"""SageMaker Pipelines through real boto3: definitions, expressions, branches, jobs, errors."""

from __future__ import annotations

import json
import re

import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, aws_error, unique
from pipeline_support import (
    condition_step, create_pipeline, definition, fail_step, job_name, start, steps_of, training_code, training_step,
    wait_execution,
)  # fmt: skip


THRESHOLD = [{"Name": "Threshold", "Type": "Float", "DefaultValue": 6.0}]


def _branching_steps() -> list:
    check = {"Type": "LessThanOrEqualTo", "LeftValue": 5, "RightValue": {"Get": "Parameters.Threshold"}}
    message = {"Std:Join": {"On": " ", "Values": ["Execution failed due to MSE >", {"Get": "Parameters.Threshold"}]}}
    return [condition_step("Check", [check], if_steps=[condition_step("Passed", [])], else_steps=[fail_step("Stop", message)])]


def test_condition_branches_and_fail_step(sm):
    pipeline = create_pipeline(sm, _branching_steps(), THRESHOLD)
    ok = wait_execution(sm, start(sm, pipeline))
    assert ok["PipelineExecutionStatus"] == "Succeeded"
    assert "FailureReason" not in ok
    steps = steps_of(sm, ok["PipelineExecutionArn"])
    assert set(steps) == {"Check", "Passed"}  # the else branch is neither run nor listed
    assert steps["Check"]["Metadata"] == {"Condition": {"Outcome": "True"}}

    failed = wait_execution(sm, start(sm, pipeline, Threshold=3.0))
    assert failed["PipelineExecutionStatus"] == "Failed"
    assert failed["FailureReason"] == "Step failure: One or multiple steps failed."
    steps = steps_of(sm, failed["PipelineExecutionArn"])
    assert set(steps) == {"Check", "Stop"}
    assert steps["Stop"]["StepStatus"] == "Failed"
    assert steps["Stop"]["FailureReason"] == "Execution failed due to MSE > 3.0"
    assert steps["Stop"]["Metadata"] == {"Fail": {"ErrorMessage": "Execution failed due to MSE > 3.0"}}
    summaries = sm.list_pipeline_executions(PipelineName=pipeline)["PipelineExecutionSummaries"]
    assert [s["PipelineExecutionStatus"] for s in summaries] == ["Failed", "Succeeded"]  # newest first
    assert summaries[0]["PipelineExecutionFailureReason"] == "Step failure: One or multiple steps failed."


def test_pipeline_crud_and_describe(sm):
    name = create_pipeline(sm, _branching_steps(), THRESHOLD, PipelineDescription="first")
    described = sm.describe_pipeline(PipelineName=name)
    assert described["PipelineArn"] == f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/{name.lower()}"
    assert described["PipelineStatus"] == "Active" and described["RoleArn"] == ROLE
    assert json.loads(described["PipelineDefinition"])["Parameters"] == THRESHOLD
    with pytest.raises(ClientError) as exc:
        sm.create_pipeline(PipelineName=name, RoleArn=ROLE, PipelineDefinition=described["PipelineDefinition"])
    code, message = aws_error(exc)
    assert code == "ValidationException" and "already exists" in message  # what the SDK's upsert looks for
    updated = sm.update_pipeline(PipelineName=name, PipelineDefinition=definition([condition_step("Only", [])]))
    assert updated["PipelineVersionId"] == 2
    assert json.loads(sm.describe_pipeline(PipelineName=name)["PipelineDefinition"])["Steps"][0]["Name"] == "Only"
    first = sm.describe_pipeline(PipelineName=name, PipelineVersionId=1)["PipelineDefinition"]
    assert json.loads(first)["Steps"][0]["Name"] == "Check"
    assert name in [p["PipelineName"] for p in sm.list_pipelines(PipelineNamePrefix=name)["PipelineSummaries"]]
    arn = start(sm, name)
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    for_execution = sm.describe_pipeline_definition_for_execution(PipelineExecutionArn=arn)
    assert json.loads(for_execution["PipelineDefinition"])["Steps"][0]["Name"] == "Only"
    sm.delete_pipeline(PipelineName=name)
    with pytest.raises(ClientError) as exc:
        sm.describe_pipeline(PipelineName=name)
    assert aws_error(exc)[0] == "ResourceNotFound"


def test_definition_from_s3_location(sm, s3, bucket):
    s3.put_object(Bucket=bucket, Key="defs/pipeline.json", Body=definition(_branching_steps(), THRESHOLD).encode())
    name = unique("s3def")
    sm.create_pipeline(PipelineName=name, RoleArn=ROLE,
                       PipelineDefinitionS3Location={"Bucket": bucket, "ObjectKey": "defs/pipeline.json"})
    assert wait_execution(sm, start(sm, name))["PipelineExecutionStatus"] == "Succeeded"


@pytest.mark.parametrize("steps, parameters, fragment", [
    ([condition_step("A", [{"Type": "Equals", "LeftValue": {"Get": "Steps.Nope.Outcome"}, "RightValue": "x"}])],
     [], "step 'Nope', which does not exist"),
    ([condition_step("A", [], DependsOn=["B"]), condition_step("B", [], DependsOn=["A"])], [], "Cycle detected"),
    ([fail_step("F", {"Get": "Parameters.Missing"})], [], "parameter 'Missing', which is not defined"),
    ([fail_step("F", "x")], [{"Name": "N", "Type": "Integer", "DefaultValue": "one"}], "is not of type Integer"),
    ([{"Name": "X", "Type": "Teleport", "Arguments": {}}], [], "unknown Type 'Teleport'"),
])  # fmt: skip
def test_bad_definitions_are_rejected_at_create(sm, steps, parameters, fragment):
    with pytest.raises(ClientError) as exc:
        create_pipeline(sm, steps, parameters)
    code, message = aws_error(exc)
    assert code == "ValidationException"
    assert fragment in message


def test_parameters_are_type_checked_at_start(sm):
    pipeline = create_pipeline(sm, _branching_steps(), THRESHOLD + [{"Name": "Count", "Type": "Integer"}])
    with pytest.raises(ClientError) as exc:
        start(sm, pipeline, Threshold="abc", Count=1)
    assert aws_error(exc) == ("ValidationException", "Value 'abc' for parameter 'Threshold' is not a valid Float.")
    with pytest.raises(ClientError) as exc:
        start(sm, pipeline)
    assert aws_error(exc) == ("ValidationException", "Parameter 'Count' is undefined.")
    with pytest.raises(ClientError) as exc:
        start(sm, pipeline, Count=1, Nope="x")
    assert aws_error(exc) == ("ValidationException", "Unknown parameter 'Nope'")
    with pytest.raises(ClientError) as exc:
        sm.start_pipeline_execution(PipelineName=unique("missing"))
    assert aws_error(exc)[0] == "ResourceNotFound"
    arn = start(sm, pipeline, Count=7)
    wait_execution(sm, arn)
    listed = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert listed == [{"Name": "Threshold", "Value": "6.0"}, {"Name": "Count", "Value": "7"}]


def test_expression_forms(sm, s3, bucket):
    s3.put_object(Bucket=bucket, Key="doc.json", Body=b'{"a": {"b": [10, {"c": "deep"}]}}')
    parameters = [{"Name": "Word", "Type": "String", "DefaultValue": "hello"},
                  {"Name": "Count", "Type": "Integer", "DefaultValue": 3},
                  {"Name": "Ratio", "Type": "Float", "DefaultValue": 0.5},
                  {"Name": "Flag", "Type": "Boolean", "DefaultValue": True},
                  {"Name": "Uri", "Type": "String", "DefaultValue": f"s3://{bucket}/doc.json"}]
    json_get = {"Std:JsonGet": {"S3Uri": {"Get": "Parameters.Uri"}, "Path": "a.b[1].c"}}
    message = {"Std:Join": {"On": "|", "Values": [
        {"Get": "Parameters.Word"}, {"Get": "Parameters.Count"}, {"Get": "Parameters.Ratio"},
        {"Get": "Parameters.Flag"}, json_get, {"Get": "Execution.PipelineExecutionId"},
        {"Get": "Execution.PipelineName"}, {"Get": "Steps.Gate.Outcome"},
        {"Get": "PipelineExperimentConfig.TrialName"}]}}
    conditions = [
        {"Type": "In", "QueryValue": {"Get": "Parameters.Word"}, "Values": ["hi", "hello"]},
        {"Type": "Not", "Condition": {"Type": "GreaterThan", "LeftValue": {"Get": "Parameters.Count"},
                                      "RightValue": 5}},
        {"Type": "Or", "Conditions": [{"Type": "Equals", "LeftValue": {"Get": "Parameters.Flag"}, "RightValue": False},
                                      {"Type": "GreaterThanOrEqualTo", "LeftValue": {"Get": "Parameters.Ratio"},
                                       "RightValue": 0.5}]},
        {"Type": "LessThan", "LeftValue": {"Std:JsonGet": {"S3Uri": {"Get": "Parameters.Uri"}, "Path": "a.b[0]"}},
         "RightValue": 11},
    ]
    pipeline = create_pipeline(sm, [condition_step("Gate", conditions, if_steps=[fail_step("Report", message)])], parameters,
                               experiment=True)
    arn = start(sm, pipeline)
    execution_id = arn.rsplit("/", 1)[-1]
    wait_execution(sm, arn)
    steps = steps_of(sm, arn)
    assert steps["Gate"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    assert steps["Report"]["FailureReason"] == f"hello|3|0.5|true|deep|{execution_id}|{pipeline}|true|{execution_id}"


def test_missing_property_fails_the_step_with_a_clear_reason(sm, s3, bucket):
    # two executions: once a step fails no new step starts, so in one execution the order would decide
    # a property of the step type's tree (so CreatePipeline accepts it) that this job has not got
    steps = [training_step("First", bucket, training_code(s3, bucket)),
             fail_step("Second", {"Get": "Steps.First.TuningJobArn"})]
    arn = start(sm, create_pipeline(sm, steps))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"
    assert steps_of(sm, arn)["Second"]["FailureReason"] == (
        "Unable to resolve 'Steps.First.TuningJobArn': 'TuningJobArn' does not exist.")
    arn = start(sm, create_pipeline(sm, [
        fail_step("Third", {"Std:JsonGet": {"S3Uri": f"s3://{bucket}/absent.json", "Path": "a"}})]))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"
    assert steps_of(sm, arn)["Third"]["FailureReason"].startswith(f"Unable to read s3://{bucket}/absent.json")


def test_thirty_nested_condition_steps(sm):
    inner = fail_step("Bottom", "reached the bottom")
    for level in range(30, 0, -1):
        inner = condition_step(f"Level{level}", [{"Type": "Equals", "LeftValue": level, "RightValue": level}],
                           if_steps=[inner], else_steps=[fail_step(f"Wrong{level}", "wrong branch")])
    arn = start(sm, create_pipeline(sm, [inner]))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"
    found = steps_of(sm, arn)
    assert set(found) == {f"Level{i}" for i in range(1, 31)} | {"Bottom"}
    assert found["Bottom"]["FailureReason"] == "reached the bottom"
    ordered = sorted(found.values(), key=lambda s: s["StartTime"])
    assert [s["StepName"] for s in ordered][:3] == ["Level1", "Level2", "Level3"]


def test_training_steps_pass_properties_and_are_recorded(sm, s3, bucket):
    code = training_code(s3, bucket)
    second = training_step("Second", bucket, code, env={"FROM_FIRST": {"Get": "Steps.First.ModelArtifacts.S3ModelArtifacts"},
                                                        "SCORE": "0.5"})
    check = condition_step("Good", [{"Type": "GreaterThan", "RightValue": 0.6,
                                 "LeftValue": {"Get": "Steps.First.FinalMetricDataList['score'].Value"}}],
                       else_steps=[fail_step("Bad", "score too low")])
    pipeline = create_pipeline(sm, [training_step("First", bucket, code), second, check], experiment=True)
    arn = start(sm, pipeline)
    execution_id = arn.rsplit("/", 1)[-1]
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    found = steps_of(sm, arn)
    assert set(found) == {"First", "Second", "Good"}
    assert found["First"]["EndTime"] <= found["Second"]["StartTime"]  # data dependency
    assert found["First"]["AttemptCount"] == 1
    first, second_job = job_name(sm, found["First"]), job_name(sm, found["Second"])
    assert re.fullmatch(rf"pipelines-{execution_id}-First-[A-Za-z0-9]{{10}}", first)
    described = sm.describe_training_job(TrainingJobName=second_job)
    assert described["Environment"]["FROM_FIRST"] == f"s3://{bucket}/output/{first}/output/model.tar.gz"
    assert found["Good"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    # the execution's trial (experiment = pipeline name, trial = execution id) holds its jobs
    assert sm.describe_trial(TrialName=execution_id)["ExperimentName"] == pipeline
    components = sm.list_trial_components(TrialName=execution_id)["TrialComponentSummaries"]
    assert sorted(c["TrialComponentName"] for c in components) == sorted(
        f"{job}-aws-training-job" for job in (first, second_job))
    assert {c["TrialComponentSource"]["SourceType"] for c in components} == {"SageMakerTrainingJob"}


def test_failed_job_fails_its_step_and_later_steps_do_not_run(sm, s3, bucket):
    code = training_code(s3, bucket)
    steps = [training_step("Broken", bucket, code, env={"MODE": "fail"}),
             condition_step("After", [], DependsOn=["Broken"])]
    arn = start(sm, create_pipeline(sm, steps))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"
    found = steps_of(sm, arn)
    assert set(found) == {"Broken"}
    assert "training failed on purpose" in found["Broken"]["FailureReason"]
    assert sm.describe_training_job(TrainingJobName=job_name(sm, found["Broken"]))["TrainingJobStatus"] == "Failed"


def test_independent_steps_run_in_parallel_up_to_the_limit(sm, s3, bucket):
    code = training_code(s3, bucket)
    steps = [training_step(f"T{i}", bucket, code, env={"MODE": "sleep", "SLEEP": "1"}) for i in range(3)]
    pipeline = create_pipeline(sm, steps, ParallelismConfiguration={"MaxParallelExecutionSteps": 1})
    arn = start(sm, pipeline)
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    spans = sorted((s["StartTime"], s["EndTime"]) for s in steps_of(sm, arn).values())
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))  # one at a time
    arn = sm.start_pipeline_execution(PipelineName=pipeline,
                                      ParallelismConfiguration={"MaxParallelExecutionSteps": 3})["PipelineExecutionArn"]
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    spans = sorted((s["StartTime"], s["EndTime"]) for s in steps_of(sm, arn).values())
    assert spans[2][0] < spans[0][1]  # all three started before the first ended


def test_two_executions_at_once(sm, s3, bucket):
    code = training_code(s3, bucket)
    pipeline = create_pipeline(sm, [training_step("Train", bucket, code)])
    arns = [start(sm, pipeline), start(sm, pipeline)]
    assert arns[0] != arns[1]
    for arn in arns:
        assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    jobs = {job_name(sm, steps_of(sm, arn)["Train"]) for arn in arns}
    assert len(jobs) == 2


def test_unsupported_step_types_fail_with_a_reason(sm):
    steps = [{"Name": "Lam", "Type": "Lambda", "FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:f",
              "Arguments": {}}]
    arn = start(sm, create_pipeline(sm, steps))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Failed"
    assert steps_of(sm, arn)["Lam"]["FailureReason"].startswith("smlocal cannot run Lambda steps")


def test_client_request_token_makes_start_idempotent(sm):
    pipeline = create_pipeline(sm, [condition_step("Only", [])])
    token = "t" * 40
    first = sm.start_pipeline_execution(PipelineName=pipeline, ClientRequestToken=token)["PipelineExecutionArn"]
    again = sm.start_pipeline_execution(PipelineName=pipeline, ClientRequestToken=token)["PipelineExecutionArn"]
    assert first == again
    described = wait_execution(sm, first)
    assert described["PipelineExecutionDisplayName"].startswith("execution-")
    named = sm.start_pipeline_execution(PipelineName=pipeline, PipelineExecutionDisplayName="nightly")
    assert sm.describe_pipeline_execution(
        PipelineExecutionArn=named["PipelineExecutionArn"])["PipelineExecutionDisplayName"] == "nightly"


REPORT_SCRIPT = """
import json, os
os.makedirs("/opt/ml/processing/report", exist_ok=True)
with open("/opt/ml/processing/report/report.json", "w") as handle:
    json.dump({"metrics": {"mse": {"value": 2.5}}, "job": os.environ["MY_JOB"]}, handle)
"""


def test_processing_step_property_file_feeds_a_condition(sm, s3, bucket):
    s3.put_object(Bucket=bucket, Key="code/report.py", Body=REPORT_SCRIPT.encode())
    output_uri = {"Std:Join": {"On": "/", "Values": [f"s3://{bucket}", "runs",
                                                     {"Get": "Execution.PipelineExecutionId"}, "report"]}}
    process = {"Name": "Report", "Type": "Processing", "PropertyFiles": [
        {"PropertyFileName": "Metrics", "OutputName": "report", "FilePath": "report.json"}], "Arguments": {
        "ProcessingInputs": [{"InputName": "code", "S3Input": {
            "S3Uri": f"s3://{bucket}/code/report.py", "LocalPath": "/opt/ml/processing/input/code",
            "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "report", "S3Output": {
            "S3Uri": output_uri, "LocalPath": "/opt/ml/processing/report", "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": {"Get": "Parameters.Instances"},
                                                  "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:"
                                         "1.2-1-cpu-py3",
                             "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/report.py"]},
        "Environment": {"MY_JOB": {"Get": "Execution.ProcessingJobName"}},
        "RoleArn": ROLE}}
    mse = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Report.PropertyFiles.Metrics"}, "Path": "metrics.mse.value"}}
    job = {"Std:JsonGet": {"PropertyFile": {"Get": "Steps.Report.PropertyFiles.Metrics"}, "Path": "job"}}
    check = condition_step("Check", [{"Type": "LessThanOrEqualTo", "LeftValue": mse, "RightValue": 3.0}],
                       if_steps=[fail_step("Show", {"Std:Join": {"On": " ", "Values": [mse, job]}})])
    parameters = [{"Name": "Instances", "Type": "Integer", "DefaultValue": 1}]
    arn = start(sm, create_pipeline(sm, [process, check], parameters, experiment=True))
    wait_execution(sm, arn)
    found = steps_of(sm, arn)
    assert found["Report"]["StepStatus"] == "Succeeded", found["Report"].get("FailureReason")
    name = job_name(sm, found["Report"], "ProcessingJob")
    described = sm.describe_processing_job(ProcessingJobName=name)
    execution_id = arn.rsplit("/", 1)[-1]
    assert described["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == (
        f"s3://{bucket}/runs/{execution_id}/report")
    assert described["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    assert found["Check"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    assert found["Show"]["FailureReason"] == f"2.5 {name}"
    components = sm.list_trial_components(TrialName=execution_id)["TrialComponentSummaries"]
    assert [c["TrialComponentName"] for c in components] == [f"{name}-aws-processing-job"]


def test_model_and_register_model_steps(sm, s3, bucket):
    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
    s3.put_object(Bucket=bucket, Key="models/model.tar.gz", Body=b"not really a model")
    group = unique("group")
    model = {"Name": "Create", "Type": "Model", "Arguments": {
        "ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": image,
                                                      "ModelDataUrl": f"s3://{bucket}/models/model.tar.gz"}}}
    register = {"Name": "Register", "Type": "RegisterModel", "Arguments": {
        "ModelPackageGroupName": group, "ModelApprovalStatus": {"Get": "Parameters.Approval"},
        "InferenceSpecification": {"Containers": [{"Image": image, "ModelDataUrl": {
            "Get": "Steps.Create.PrimaryContainer.ModelDataUrl"}}], "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"]}}}
    show = fail_step("Show", {"Std:Join": {"On": " ", "Values": [{"Get": "Steps.Create.ModelName"},
                                                               {"Get": "Steps.Register.ModelPackageVersion"}]}})
    parameters = [{"Name": "Approval", "Type": "String", "DefaultValue": "PendingManualApproval",
                   "EnumValues": ["PendingManualApproval", "Approved"]}]
    pipeline = create_pipeline(sm, [model, register, show], parameters)
    for version, approval in ((1, "PendingManualApproval"), (2, "Approved")):
        arn = start(sm, pipeline, Approval=approval)
        wait_execution(sm, arn)
        found = steps_of(sm, arn)
        assert found["Create"]["StepStatus"] == "Succeeded", found["Create"].get("FailureReason")
        model_arn = found["Create"]["Metadata"]["Model"]["Arn"]
        package_arn = found["Register"]["Metadata"]["RegisterModel"]["Arn"]
        assert package_arn.endswith(f"model-package/{group.lower()}/{version}")
        package = sm.describe_model_package(ModelPackageName=package_arn)
        assert package["ModelApprovalStatus"] == approval
        model_name, shown_version = found["Show"]["FailureReason"].split()
        assert model_arn.endswith(model_name.lower()) and shown_version == str(version)
        assert sm.describe_model(ModelName=model_name)["PrimaryContainer"]["Image"] == image
    assert sm.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupStatus"] == "Completed"
    with pytest.raises(ClientError) as exc:
        start(sm, pipeline, Approval="Maybe")
    assert aws_error(exc)[0] == "ValidationException"
