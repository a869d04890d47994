"""Model-driven input validation answers what SageMaker answers, in AWS's (Coral's) wording.

Every test runs the real botocore SageMaker model; nothing is mocked.
"""

from __future__ import annotations

import copy
import json

import botocore.session
import pytest

from smlocal.errors import ServiceError, ValidationError
from smlocal.service.validation import SerializationError, _compiled, java_regex_to_python, validate_input

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
NAME_PATTERN = "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@pytest.fixture(scope="module")
def model():
    return botocore.session.get_session().get_service_model("sagemaker")


def errors_of(model, operation: str, params) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        validate_input(model.operation_model(operation), params)
    assert caught.value.status == 400
    return caught.value


def validation_message(model, operation: str, params) -> str:
    error = errors_of(model, operation, params)
    assert isinstance(error, ValidationError) and error.code == "ValidationException"
    return error.message


def serialization_message(model, operation: str, params) -> str:
    error = errors_of(model, operation, params)
    assert isinstance(error, SerializationError) and error.code == "SerializationException"
    return error.message


def training_job(**changes) -> dict:
    """A full CreateTrainingJob body as the SageMaker SDK sends it."""
    body = {
        "TrainingJobName": "sklearn-2024-01-01-00-00-00-000",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File",
                                   "EnableSageMakerMetricsTimeSeries": True},
        "HyperParameters": {"sagemaker_program": '"train.py"', "sagemaker_region": '"us-east-1"',
                            "sagemaker_submit_directory": '"s3://bucket/code/sourcedir.tar.gz"'},
        "InputDataConfig": [
            {"ChannelName": "train", "ContentType": "text/csv", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://bucket/train", "S3DataDistributionType": "FullyReplicated"}}},
            {"ChannelName": "validation", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://bucket/validation"}}},
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        "VpcConfig": {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0123456789abcdef0"]},
        "Environment": {"LOG_LEVEL": "debug"},
        "Tags": [{"Key": "project", "Value": "smlocal"}, {"Key": "Ünïcødé 名前", "Value": "値"}],
        "EnableNetworkIsolation": False,
        "EnableManagedSpotTraining": False,
        "CheckpointConfig": {"S3Uri": "s3://bucket/checkpoints"},
        "DebugHookConfig": {"S3OutputPath": "s3://bucket/debug", "CollectionConfigurations": []},
        "ProfilerConfig": {"S3OutputPath": "s3://bucket/profiler"},
        "ProfilerRuleConfigurations": [{
            "RuleConfigurationName": "ProfilerReport-1704067200",
            "RuleEvaluatorImage": "895741380848.dkr.ecr.us-west-2.amazonaws.com/sagemaker-debugger-rules:latest",
            "RuleParameters": {"rule_to_invoke": "ProfilerReport"}}],
        "ExperimentConfig": {"ExperimentName": "exp", "TrialName": "trial"},
        "RetryStrategy": {"MaximumRetryAttempts": 2},
    }
    body.update(changes)
    return body


def test_a_full_valid_request_passes(model):
    validate_input(model.operation_model("CreateTrainingJob"), training_job())
    validate_input(model.operation_model("DescribeTrainingJob"), {"TrainingJobName": "abc-1"})


def test_a_missing_required_member(model):
    assert validation_message(model, "DescribeTrainingJob", {}) == (
        "1 validation error detected: Value null at 'trainingJobName' failed to satisfy constraint: "
        "Member must not be null")
    body = training_job()
    del body["RoleArn"]
    assert validation_message(model, "CreateTrainingJob", body) == (
        "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: "
        "Member must not be null")


def test_an_explicit_null_is_a_missing_member(model):
    assert validation_message(model, "CreateTrainingJob", training_job(RoleArn=None)) == (
        "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: "
        "Member must not be null")


def test_a_name_breaking_the_pattern(model):
    assert validation_message(model, "CreateTrainingJob", training_job(TrainingJobName="bad_name!")) == (
        "1 validation error detected: Value 'bad_name!' at 'trainingJobName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {NAME_PATTERN}")


def test_a_name_too_long(model):
    name = "a-" * 32 + "a"  # 65 characters, 33 alphanumerics: only the length is wrong
    assert validation_message(model, "DescribeTrainingJob", {"TrainingJobName": name}) == (
        f"1 validation error detected: Value '{name}' at 'trainingJobName' failed to satisfy constraint: "
        "Member must have length less than or equal to 63")


def test_one_value_breaking_two_constraints_gives_two_errors_length_first(model):
    name = "a" * 64
    prefix = f"Value '{name}' at 'trainingJobName' failed to satisfy constraint: "
    assert validation_message(model, "DescribeTrainingJob", {"TrainingJobName": name}) == (
        f"2 validation errors detected: {prefix}Member must have length less than or equal to 63; "
        f"{prefix}Member must satisfy regular expression pattern: {NAME_PATTERN}")


def test_an_empty_name(model):
    assert validation_message(model, "DescribeTrainingJob", {"TrainingJobName": ""}) == (
        "2 validation errors detected: "
        "Value '' at 'trainingJobName' failed to satisfy constraint: Member must have length greater than or equal to 1; "
        f"Value '' at 'trainingJobName' failed to satisfy constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}")


def test_an_instance_type_outside_the_enum(model):
    body = training_job(ResourceConfig={"InstanceType": "local", "InstanceCount": 1, "VolumeSizeInGB": 30})
    allowed = model.shape_for("TrainingInstanceType").metadata["enum"]
    assert "ml.m5.large" in allowed and len(allowed) > 100
    assert validation_message(model, "CreateTrainingJob", body) == (
        "1 validation error detected: Value 'local' at 'resourceConfig.instanceType' failed to satisfy "
        "constraint: Member must satisfy enum value set: [" + ", ".join(allowed) + "]")


def test_errors_inside_list_elements(model):
    body = training_job()
    body["InputDataConfig"][1]["ChannelName"] = "bad channel"
    body["InputDataConfig"][1]["DataSource"]["S3DataSource"]["S3DataType"] = "Folder"
    del body["InputDataConfig"][0]["DataSource"]
    message = validation_message(model, "CreateTrainingJob", body)
    assert message == (
        "3 validation errors detected: "
        "Value null at 'inputDataConfig.1.member.dataSource' failed to satisfy constraint: Member must not be null; "
        "Value 'bad channel' at 'inputDataConfig.2.member.channelName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [A-Za-z0-9\\.\\-_]+; "
        "Value 'Folder' at 'inputDataConfig.2.member.dataSource.s3DataSource.s3DataType' failed to satisfy "
        "constraint: Member must satisfy enum value set: [ManifestFile, S3Prefix, AugmentedManifestFile, Converse]")


def test_numeric_ranges(model):
    processing = {
        "ProcessingJobName": "proc-1", "RoleArn": ROLE, "AppSpecification": {"ImageUri": IMAGE},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 0, "InstanceType": "ml.m5.large",
                                                  "VolumeSizeInGB": 30}},
    }
    assert validation_message(model, "CreateProcessingJob", processing) == (
        "1 validation error detected: Value '0' at 'processingResources.clusterConfig.instanceCount' "
        "failed to satisfy constraint: Member must have value greater than or equal to 1")
    processing["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = 101
    assert validation_message(model, "CreateProcessingJob", processing) == (
        "1 validation error detected: Value '101' at 'processingResources.clusterConfig.instanceCount' "
        "failed to satisfy constraint: Member must have value less than or equal to 100")
    assert validation_message(model, "CreateTrainingJob", training_job(StoppingCondition={"MaxRuntimeInSeconds": 0})) == (
        "1 validation error detected: Value '0' at 'stoppingCondition.maxRuntimeInSeconds' "
        "failed to satisfy constraint: Member must have value greater than or equal to 1")
    # The model lets a training ResourceConfig ask for 0 instances (instance groups), so AWS's model
    # check does too.
    validate_input(model.operation_model("CreateTrainingJob"),
                   training_job(ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 0, "VolumeSizeInGB": 1}))


def test_a_float_range(model):
    body = {"InferenceComponentName": "ic", "EndpointName": "ep", "Specification": {
        "ModelName": "m", "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": 0.1, "MinMemoryRequiredInMb": 1024}}}
    assert validation_message(model, "CreateInferenceComponent", body) == (
        "1 validation error detected: Value '0.1' at 'specification.computeResourceRequirements.numberOfCpuCoresRequired' "
        "failed to satisfy constraint: Member must have value greater than or equal to 0.25")


def test_several_errors_are_counted_and_joined(model):
    body = training_job(TrainingJobName="bad_name!", RoleArn=None,
                        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
                        StoppingCondition={"MaxRuntimeInSeconds": 0})
    message = validation_message(model, "CreateTrainingJob", body)
    assert message.startswith("3 validation errors detected: Value 'bad_name!' at 'trainingJobName' ")
    parts = message.split(": ", 1)[1].split("; ")
    assert [part.split("' failed")[0].rsplit("'", 1)[1] for part in parts] == [
        "trainingJobName", "roleArn", "stoppingCondition.maxRuntimeInSeconds"]


def test_at_most_ten_errors_are_listed(model):
    tags = [{"Key": f"bad{i}!", "Value": "v"} for i in range(1, 13)]
    message = validation_message(model, "CreateTrainingJob", training_job(Tags=tags))
    assert message.startswith("10 validation errors detected: ")
    parts = message[len("10 validation errors detected: "):].split("; ")
    assert len(parts) == 10
    assert parts[0] == ("Value 'bad1!' at 'tags.1.member.key' failed to satisfy constraint: "
                        "Member must satisfy regular expression pattern: ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)")
    assert parts[9].startswith("Value 'bad10!' at 'tags.10.member.key' ")


def test_unicode_property_patterns_work(model):
    tags = [{"Key": "Ünïcødé 名前 ٣", "Value": "x"}, {"Key": "a@b:c/d=e+f-g_h.i", "Value": ""}]
    validate_input(model.operation_model("CreateTrainingJob"), training_job(Tags=tags))


def test_a_scalar_list_reports_its_element_constraints_once(model):
    body = training_job(VpcConfig={"SecurityGroupIds": ["sg-1"], "Subnets": ["subnet-1", "bad!", "worse?"]})
    assert validation_message(model, "CreateTrainingJob", body) == (
        "1 validation error detected: Value '[subnet-1, bad!, worse?]' at 'vpcConfig.subnets' failed to "
        "satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 32, "
        "Member must have length greater than or equal to 0, Member must satisfy regular expression pattern: "
        "[-0-9a-zA-Z]+]")


def test_list_lengths(model):
    subnets = [f"subnet-{i}" for i in range(17)]
    body = training_job(VpcConfig={"SecurityGroupIds": ["sg-1"], "Subnets": subnets})
    assert validation_message(model, "CreateTrainingJob", body) == (
        f"1 validation error detected: Value '[{', '.join(subnets)}]' at 'vpcConfig.subnets' failed to "
        "satisfy constraint: Member must have length less than or equal to 16")
    assert validation_message(model, "CreateTrainingJob", training_job(InputDataConfig=[])) == (
        "1 validation error detected: Value '[]' at 'inputDataConfig' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1")
    channels = [{"ChannelName": f"c{i}", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/k"}}}
                for i in range(21)]
    # A list of structures prints no value: Coral would print Java object identities.
    assert validation_message(model, "CreateTrainingJob", training_job(InputDataConfig=channels)) == (
        "1 validation error detected: Value at 'inputDataConfig' failed to satisfy constraint: "
        "Member must have length less than or equal to 20")


def test_map_keys_and_values(model):
    body = training_job(HyperParameters={"epochs": "10", "big": "x" * 2501})
    assert validation_message(model, "CreateTrainingJob", body) == (
        "1 validation error detected: Value '{epochs=10, big=" + "x" * 2501 + "}' at 'hyperParameters' failed to "
        "satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 2500, "
        "Member must have length greater than or equal to 0, Member must satisfy regular expression pattern: .*]")
    body = training_job(Environment={"1BAD": "v"})
    assert validation_message(model, "CreateTrainingJob", body) == (
        "1 validation error detected: Value '{1BAD=v}' at 'environment' failed to satisfy constraint: "
        "Map keys must satisfy constraint: [Member must have length less than or equal to 512, "
        "Member must have length greater than or equal to 0, Member must satisfy regular expression pattern: "
        "[a-zA-Z_][a-zA-Z0-9_]*]")
    too_many = {f"k{i}": "v" for i in range(101)}
    assert validation_message(model, "CreateTrainingJob", training_job(HyperParameters=too_many)).endswith(
        "at 'hyperParameters' failed to satisfy constraint: Member must have length less than or equal to 100")


def test_a_sensitive_value_is_not_echoed(model):
    body = {"ModelCardName": "card", "ModelCardStatus": "Draft", "Content": "x" * 100001}
    assert validation_message(model, "CreateModelCard", body) == (
        "1 validation error detected: Value at 'content' failed to satisfy constraint: "
        "Member must have length less than or equal to 100000")


def test_create_pipeline(model):
    definition = json.dumps({"Version": "2020-12-01", "Parameters": [], "Steps": []}, indent=2)
    body = {"PipelineName": "my-pipeline", "PipelineDefinition": definition, "RoleArn": ROLE,
            "ClientRequestToken": "0123456789abcdef0123456789abcdef"}
    validate_input(model.operation_model("CreatePipeline"), body)
    assert validation_message(model, "CreatePipeline", {"PipelineName": "my pipeline"}) == (
        "3 validation errors detected: Value 'my pipeline' at 'pipelineName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}; "
        "Value null at 'clientRequestToken' failed to satisfy constraint: Member must not be null; "
        "Value null at 'roleArn' failed to satisfy constraint: Member must not be null")
    assert validation_message(model, "CreatePipeline", dict(body, ClientRequestToken="short")) == (
        "1 validation error detected: Value 'short' at 'clientRequestToken' failed to satisfy constraint: "
        "Member must have length greater than or equal to 32")


@pytest.mark.parametrize("changes, message", [
    ({"TrainingJobName": 123}, "NUMBER_VALUE can not be converted to a String"),
    ({"TrainingJobName": True}, "TRUE_VALUE can not be converted to a String"),
    ({"TrainingJobName": ["x"]}, "Start of list found where not expected"),
    ({"TrainingJobName": {"x": 1}}, "Start of structure or map found where not expected."),
    ({"StoppingCondition": {"MaxRuntimeInSeconds": "3600"}}, "STRING_VALUE can not be converted to an Integer"),
    ({"StoppingCondition": {"MaxRuntimeInSeconds": False}}, "FALSE_VALUE can not be converted to an Integer"),
    ({"EnableNetworkIsolation": 1}, "NUMBER_VALUE can not be converted to a Boolean"),
    ({"EnableNetworkIsolation": "maybe"}, "STRING_VALUE can not be converted to an Boolean"),
    ({"ResourceConfig": "ml.m5.large"}, "Expected null"),
    ({"ResourceConfig": []}, "Start of list found where not expected"),
    ({"InputDataConfig": "train"}, "Expected list or null"),
    ({"InputDataConfig": {"ChannelName": "train"}}, "Start of structure or map found where not expected."),
    ({"HyperParameters": "x"}, "Expected map or null"),
    ({"HyperParameters": ["x"]}, "Start of list found where not expected"),
    ({"HyperParameters": {"epochs": 10}}, "NUMBER_VALUE can not be converted to a String"),
    ({"Tags": [{"Key": "k", "Value": 1}]}, "NUMBER_VALUE can not be converted to a String"),
    ({"VpcConfig": {"SecurityGroupIds": [1], "Subnets": ["s"]}}, "NUMBER_VALUE can not be converted to a String"),
])
def test_a_value_of_the_wrong_json_type(model, changes, message):
    assert serialization_message(model, "CreateTrainingJob", training_job(**changes)) == message


def test_a_type_error_wins_over_constraint_errors(model):
    body = training_job(TrainingJobName="bad_name!", RoleArn=None, EnableNetworkIsolation=[])
    assert serialization_message(model, "CreateTrainingJob", body) == "Start of list found where not expected"


def test_a_body_that_is_not_an_object(model):
    assert serialization_message(model, "DescribeTrainingJob", []) == "Start of list found where not expected"
    assert serialization_message(model, "DescribeTrainingJob", "x") == ""


def test_unknown_members_are_ignored_and_booleans_read_like_aws(model):
    body = training_job(NotAMember={"anything": [1, 2]}, EnableNetworkIsolation="yes",
                        EnableManagedSpotTraining="FALSE", CheckpointConfig=None)
    validate_input(model.operation_model("CreateTrainingJob"), body)


def test_integral_json_numbers_are_truncated(model):
    validate_input(model.operation_model("CreateTrainingJob"), training_job(StoppingCondition={"MaxRuntimeInSeconds": 60.0}))
    assert "Value '0' at 'stoppingCondition.maxRuntimeInSeconds'" in validation_message(
        model, "CreateTrainingJob", training_job(StoppingCondition={"MaxRuntimeInSeconds": 0.5}))


def test_timestamps(model):
    operation = model.operation_model("ListTrainingJobs")
    validate_input(operation, {"CreationTimeAfter": 1704067200, "CreationTimeBefore": 1704067200.5})
    validate_input(operation, {"CreationTimeAfter": "2024-01-01T00:00:00Z"})
    assert serialization_message(model, "ListTrainingJobs", {"CreationTimeAfter": "yesterday"}) == (
        "STRING_VALUE can not be converted to a Timestamp")
    assert serialization_message(model, "ListTrainingJobs", {"CreationTimeAfter": True}) == (
        "TRUE_VALUE can not be converted to a Timestamp")
    assert validation_message(model, "ListTrainingJobs", {"MaxResults": 0, "SortOrder": "Up"}) == (
        "2 validation errors detected: Value '0' at 'maxResults' failed to satisfy constraint: "
        "Member must have value greater than or equal to 1; Value 'Up' at 'sortOrder' failed to satisfy "
        "constraint: Member must satisfy enum value set: [Ascending, Descending]")


def test_a_null_list_element(model):
    body = training_job(InputDataConfig=[None])
    assert validation_message(model, "CreateTrainingJob", body) == (
        "1 validation error detected: Value null at 'inputDataConfig.1.member' failed to satisfy constraint: "
        "Member must not be null")


def test_the_request_is_not_modified(model):
    body = training_job(StoppingCondition={"MaxRuntimeInSeconds": 60.0})
    before = copy.deepcopy(body)
    validate_input(model.operation_model("CreateTrainingJob"), body)
    assert body == before


def test_every_pattern_in_the_sagemaker_model_compiles(model):
    patterns = {model.shape_for(name).metadata.get("pattern") for name in model.shape_names} - {None}
    assert len(patterns) > 100
    assert [p for p in patterns if _compiled(p) is None] == []


def test_java_regex_translation():
    assert java_regex_to_python("arn:[\\p{Alnum}\\-]+:x") == "arn:[a-zA-Z0-9\\-]+:x"
    assert java_regex_to_python("(a*)${1,256}") == "(a*)$"
    assert java_regex_to_python("[\\uD800\\uDC00-\\uDBFF\\uDFFF]") == "[\\U00010000-\\U0010ffff]"
    letters = _compiled("[\\p{L}]+")
    assert letters.fullmatch("Ωmega名") and not letters.fullmatch("a1")
    not_digits = _compiled("\\P{N}+")
    assert not_digits.fullmatch("abc") and not not_digits.fullmatch("a٣")
    xml = _compiled("[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\t]*")
    assert xml.fullmatch("ok 😀\t") and not xml.fullmatch("bell\x07")
    with pytest.raises(ValueError):
        java_regex_to_python("[a-z&&[^b]]")


# --- values as the service receives them ----------------------------------------------------------

@pytest.mark.parametrize("wire, epoch", [
    ("2024-01-01T00:00:00Z", 1704067200.0), ("2024-01-01", 1704067200.0),
    ("2024-01-01T01:00:00+01:00", 1704067200.0), (1704067200, 1704067200), (1704067200.5, 1704067200.5),
])
def test_timestamps_reach_the_service_as_epoch_seconds(model, wire, epoch):
    params = {"CreationTimeAfter": wire}
    validate_input(model.operation_model("ListTrainingJobs"), params)
    assert params["CreationTimeAfter"] == epoch


@pytest.mark.parametrize("wire", ["yesterday", "2024-13-45", "", 1e300, -1e20, float("nan")])
def test_timestamps_that_are_no_instant_are_refused(model, wire):
    message = serialization_message(model, "ListTrainingJobs", {"CreationTimeAfter": wire})
    assert message.endswith("can not be converted to a Timestamp")


def test_scalars_are_delivered_in_their_shapes_type(model):
    """A JSON number is truncated for an integral member and "true" is a boolean, as Coral reads them."""
    request = {"TrainingJobName": "j", "RoleArn": ROLE, "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
               "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
               "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1.7, "VolumeSizeInGB": 1},
               "StoppingCondition": {"MaxRuntimeInSeconds": 60}, "EnableNetworkIsolation": "true"}
    validate_input(model.operation_model("CreateTrainingJob"), request)
    assert type(request["ResourceConfig"]["InstanceCount"]) is int and request["ResourceConfig"]["InstanceCount"] == 1
    assert request["EnableNetworkIsolation"] is True
    assert request["AlgorithmSpecification"]["TrainingImage"] == IMAGE
