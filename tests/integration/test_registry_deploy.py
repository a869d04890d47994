"""Deploying from the model registry: CreateModel with a container's ModelPackageName, through real
boto3 and the real SDK v2, served by real model-server processes and a real transform job."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, SKLEARN_IMAGE, aws_error, read_s3, tar_gz, unique

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
ROWS = np.array([[5.0, 5.0, 5.0], [1.0, 8.0, 2.0], [9.0, 0.5, 3.0]])
ONE_SOURCE = "Specify one of either Image and Model Data URL or ModelPackageName in container definition."

pytestmark = pytest.mark.slow


def _csv(rows: np.ndarray) -> bytes:
    return "\n".join(",".join(f"{v:g}" for v in row) for row in rows).encode()


@pytest.fixture(scope="module")
def trained(emulator):
    """A built-in XGBoost model trained once for the module, and what its booster predicts."""
    sm, s3 = emulator.client("sagemaker"), emulator.client("s3")
    bucket = unique("registry-deploy")
    s3.create_bucket(Bucket=bucket)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=(200, 3))
    y = 2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2]
    s3.put_object(Bucket=bucket, Key="train/train.csv", Body=_csv(np.column_stack([y, x])))
    job = unique("reg-xgb")
    sm.create_training_job(
        TrainingJobName=job, RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"num_round": "20", "objective": "reg:squarederror", "max_depth": "4"},
        InputDataConfig=[{"ChannelName": "train", "ContentType": "text/csv", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/train", "S3DataDistributionType": "FullyReplicated"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 600})
    sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName=job,
                                                            WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    described = sm.describe_training_job(TrainingJobName=job)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    artifacts = described["ModelArtifacts"]["S3ModelArtifacts"]

    import xgboost

    with tarfile.open(fileobj=io.BytesIO(read_s3(s3, artifacts))) as archive:
        booster = pickle.loads(archive.extractfile("xgboost-model").read())
    expected = booster.predict(xgboost.DMatrix(ROWS)).tolist()
    return {"bucket": bucket, "model_data": artifacts, "expected": expected}


def _spec(trained: dict) -> dict:
    return {"Containers": [{"Image": XGBOOST_IMAGE, "ModelDataUrl": trained["model_data"]}],
            "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
            "SupportedTransformInstanceTypes": ["ml.m5.large"]}


def _register(sm, trained: dict, approval: str = "PendingManualApproval", group: str | None = None) -> str:
    """A new version of the package group ``group`` (created when None), as RegisterModel makes it."""
    if group is None:
        group = unique("reg-group")
        sm.create_model_package_group(ModelPackageGroupName=group)
    return sm.create_model_package(ModelPackageGroupName=group, InferenceSpecification=_spec(trained),
                                   ModelApprovalStatus=approval)["ModelPackageArn"]


def _endpoint(sm, model: str) -> str:
    name = unique("reg-ep")
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    return name


def _floats(body: bytes) -> list[float]:
    return [float(v) for v in body.decode().replace("\n", ",").split(",") if v.strip()]


def test_boto3_model_from_an_approved_package_version_serves_its_predictions(sm, emulator, trained):
    arn = _register(sm, trained)
    sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    model = unique("reg-model")
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": arn})
    # DescribeModel shows the container as given: the package, not its image
    container = sm.describe_model(ModelName=model)["PrimaryContainer"]
    assert container["ModelPackageName"] == arn and "Image" not in container and "ModelDataUrl" not in container

    endpoint = _endpoint(sm, model)
    runtime = emulator.client("sagemaker-runtime")
    response = runtime.invoke_endpoint(EndpointName=endpoint, Body=_csv(ROWS), ContentType="text/csv")
    assert _floats(response["Body"].read()) == pytest.approx(trained["expected"], rel=1e-5)
    sm.delete_endpoint(EndpointName=endpoint)


def test_sdk_model_package_deploy_approves_and_predicts(client_env, trained):
    import sagemaker
    from sagemaker.deserializers import CSVDeserializer
    from sagemaker.model import ModelPackage
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import CSVSerializer

    session = sagemaker.Session()
    sm = session.sagemaker_client
    arn = _register(sm, trained)  # pending: the SDK approves a versioned package before CreateModel
    package = ModelPackage(role=ROLE, model_package_arn=arn, sagemaker_session=session, predictor_cls=Predictor)
    endpoint = unique("sdk-reg-ep")
    predictor = package.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=endpoint,
                               serializer=CSVSerializer(), deserializer=CSVDeserializer())
    assert sm.describe_model_package(ModelPackageName=arn)["ModelApprovalStatus"] == "Approved"
    # the SDK sends a package's container as Containers=[{"ModelPackageName": ...}]
    [container] = sm.describe_model(ModelName=package.name)["Containers"]
    assert container["ModelPackageName"] == arn
    rows = predictor.predict(ROWS.tolist())
    assert [float(v) for row in rows for v in row] == pytest.approx(trained["expected"], rel=1e-5)
    predictor.delete_endpoint()


def test_transform_job_runs_a_model_from_an_unversioned_package(sm, s3, trained):
    bucket = trained["bucket"]
    package = unique("reg-unversioned")  # marketplace-style: a name, no group, no approval status
    sm.create_model_package(ModelPackageName=package, InferenceSpecification=_spec(trained))
    model = unique("reg-batch")
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, Containers=[{"ModelPackageName": package}])
    name = unique("reg-transform")
    s3.put_object(Bucket=bucket, Key=f"{name}/in/rows.csv", Body=_csv(ROWS))
    sm.create_transform_job(
        TransformJobName=name, ModelName=model,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/{name}/in/"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://{bucket}/{name}/out"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
    sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=name,
                                                             WaiterConfig={"Delay": 1, "MaxAttempts": 180})
    job = sm.describe_transform_job(TransformJobName=name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    out = read_s3(s3, f"s3://{bucket}/{name}/out/rows.csv.out")
    assert _floats(out) == pytest.approx(trained["expected"], rel=1e-5)


SCALE = """
import numpy as np

def model_fn(model_dir):
    return 10.0

def predict_fn(data, factor):
    return np.asarray(data) * factor
"""
CLASSIFY = """
import joblib, os

def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""

def test_a_multi_container_package_is_served_as_an_inference_pipeline(sm, s3, emulator, trained):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    bucket = trained["bucket"]
    iris = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=500).fit(*load_iris(return_X_y=True)), iris)
    s3.put_object(Bucket=bucket, Key="pipe/scale.tar.gz", Body=tar_gz({"code/scale.py": SCALE.encode()}))
    s3.put_object(Bucket=bucket, Key="pipe/iris.tar.gz", Body=tar_gz({"model.joblib": iris.getvalue(),
                                                                  "code/inference.py": CLASSIFY.encode()}))
    code = {"SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    group = unique("reg-pipe")
    sm.create_model_package_group(ModelPackageGroupName=group)
    arn = sm.create_model_package(ModelPackageGroupName=group, ModelApprovalStatus="Approved", InferenceSpecification={
        "Containers": [
            {"Image": SKLEARN_IMAGE, "ModelDataUrl": f"s3://{bucket}/pipe/scale.tar.gz",
             "Environment": {**code, "SAGEMAKER_PROGRAM": "scale.py",
                             "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"}},
            {"Image": SKLEARN_IMAGE, "ModelDataUrl": f"s3://{bucket}/pipe/iris.tar.gz",
             "Environment": {**code, "SAGEMAKER_PROGRAM": "inference.py"}}],
        "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["application/json"]})["ModelPackageArn"]
    model = unique("reg-pipe-model")
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": arn})
    endpoint = _endpoint(sm, model)
    # the first container scales 0.51,0.35,0.14,0.02 by 10 into a setosa flower; the second classifies it
    response = emulator.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, Body=b"0.51,0.35,0.14,0.02\n0.67,0.30,0.52,0.23", ContentType="text/csv",
        Accept="application/json")
    assert response["Body"].read() == b"[0, 2]"
    sm.delete_endpoint(EndpointName=endpoint)


def test_packages_that_cannot_be_deployed_are_refused_at_create_model(sm, emulator, trained):
    group = unique("reg-refused")
    sm.create_model_package_group(ModelPackageGroupName=group)
    pending = _register(sm, trained, group=group)
    rejected = _register(sm, trained, approval="Rejected", group=group)
    account = emulator.settings.account_id
    absent = f"arn:aws:sagemaker:us-east-1:{account}:model-package/{group}/9"
    cases = [
        ({"ModelPackageName": pending},
         f"Model Package {pending} has ModelApprovalStatus PendingManualApproval: only an Approved model package "
         "version can be used to create a model."),
        ({"ModelPackageName": rejected},
         f"Model Package {rejected} has ModelApprovalStatus Rejected: only an Approved model package version can "
         "be used to create a model."),
        ({"ModelPackageName": absent}, f"ModelPackage {absent} does not exist."),
        ({"ModelPackageName": f"{group}/9"}, f"ModelPackage {absent} does not exist."),
        ({"ModelPackageName": pending, "Image": XGBOOST_IMAGE}, ONE_SOURCE),
        ({"ModelPackageName": pending, "ModelDataUrl": trained["model_data"]}, ONE_SOURCE),
        ({"Environment": {"A": "1"}}, ONE_SOURCE),
    ]
    for container, message in cases:
        model = unique("reg-no")
        with pytest.raises(ClientError) as exc:
            sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer=container)
        assert aws_error(exc) == ("ValidationException", message), container
        with pytest.raises(ClientError):
            sm.describe_model(ModelName=model)

    # approved, but asking for an inference specification the package does not have
    sm.update_model_package(ModelPackageArn=pending, ModelApprovalStatus="Approved")
    with pytest.raises(ClientError) as exc:
        sm.create_model(ModelName=unique("reg-no"), ExecutionRoleArn=ROLE, Containers=[
            {"ModelPackageName": pending, "InferenceSpecificationName": "neo"}])
    assert aws_error(exc) == ("ValidationException", f"InferenceSpecificationName neo is not found in Model Package "
                                                     f"{pending}.")
    # the same package by its "<group>/<version>" name is accepted once approved
    model = unique("reg-ok")
    version = pending.rsplit("/", 2)[-2:]
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": "/".join(version)})
    assert sm.describe_model(ModelName=model)["PrimaryContainer"]["ModelPackageName"] == "/".join(version)
