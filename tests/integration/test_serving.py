"""Models, endpoint configurations, endpoints and InvokeEndpoint: real boto3, the real SDK v2 and
real model-server processes against the running emulator."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import threading
import time

import numpy as np
import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, SKLEARN_IMAGE, aws_error, tar_gz, unique

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
KNN_IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/knn:1"
ACCOUNT = "123456789012"
INFERENCE = textwrap.dedent(
    """
    import joblib, os

    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))
    """
)
TRAIN = textwrap.dedent(
    """
    import argparse, glob, os
    import joblib, pandas as pd
    from sklearn.linear_model import LogisticRegression

    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))

    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        parser.add_argument("-C", type=float, default=1.0)
        parser.parse_args()
        frame = pd.concat(pd.read_csv(f, header=None) for f in glob.glob(os.environ["SM_CHANNEL_TRAIN"] + "/*.csv"))
        model = LogisticRegression(max_iter=500).fit(frame.iloc[:, 1:], frame.iloc[:, 0])
        joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
    """
)
ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]])

def _iris_model():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=500).fit(x, y)


def _sklearn_model_tar(model=None, inference: str = INFERENCE) -> bytes:
    import joblib

    buf = io.BytesIO()
    joblib.dump(model if model is not None else _iris_model(), buf)
    return tar_gz({"model.joblib": buf.getvalue(), "code/inference.py": inference.encode()})


def _create_sklearn_model(sm, s3, bucket: str, name: str, archive: bytes | None = None) -> None:
    key = f"models/{name}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=archive if archive is not None else _sklearn_model_tar())
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": SKLEARN_IMAGE, "ModelDataUrl": f"s3://{bucket}/{key}",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}})


def _deploy(sm, model: str, endpoint: str, variant: str = "AllTraffic") -> None:
    sm.create_endpoint_config(EndpointConfigName=endpoint, ProductionVariants=[{
        "VariantName": variant, "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    sm.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)


def _wait_endpoint(sm, name: str, timeout: float = 120.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        doc = sm.describe_endpoint(EndpointName=name)
        if doc["EndpointStatus"] not in ("Creating", "Updating"):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"endpoint {name} still {doc['EndpointStatus']} after {timeout}s")


@pytest.fixture
def runtime(emulator):
    return emulator.client("sagemaker-runtime")


# ---------------------------------------------------------------- API errors (no model server)
def test_model_and_config_errors_are_worded_as_aws(sm):
    name = unique("m")
    arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/{name}"
    container = {"Image": SKLEARN_IMAGE, "ModelDataUrl": "s3://b/m.tar.gz"}
    assert sm.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE)["ModelArn"] == arn
    with pytest.raises(ClientError) as exc:
        sm.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=ROLE)
    assert aws_error(exc) == ("ValidationException", f'Cannot create already existing model "{arn}".')
    described = sm.describe_model(ModelName=name)
    assert described["PrimaryContainer"] == {**container, "Mode": "SingleModel", "Environment": {}}
    assert described["EnableNetworkIsolation"] is False and described["ExecutionRoleArn"] == ROLE

    missing = unique("nope")
    for call, kwargs, what in (
        (sm.describe_model, {"ModelName": missing}, f'model "arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/{missing}"'),
        (sm.delete_model, {"ModelName": missing}, f'model "arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/{missing}"'),
        (sm.describe_endpoint_config, {"EndpointConfigName": missing},
         f'endpoint configuration "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/{missing}"'),
        (sm.delete_endpoint_config, {"EndpointConfigName": missing},
         f'endpoint configuration "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/{missing}"'),
        (sm.describe_endpoint, {"EndpointName": missing},
         f'endpoint "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{missing}"'),
        (sm.delete_endpoint, {"EndpointName": missing},
         f'endpoint "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{missing}"'),
        (sm.create_endpoint, {"EndpointName": missing, "EndpointConfigName": missing},
         f'endpoint configuration "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/{missing}"'),
        (sm.create_endpoint_config, {"EndpointConfigName": missing, "ProductionVariants": [
            {"VariantName": "v", "ModelName": missing, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}]},
         f'model "arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/{missing}"'),
    ):
        with pytest.raises(ClientError) as exc:
            call(**kwargs)
        assert aws_error(exc) == ("ValidationException", f"Could not find {what}.")

    config = unique("cfg")
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[variant])
    with pytest.raises(ClientError) as exc:
        sm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[variant])
    assert aws_error(exc) == ("ValidationException", "Cannot create already existing endpoint configuration "
                           f'"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/{config}".')
    assert sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"] == [
        {**variant, "InitialVariantWeight": 1.0}]
    listed = sm.list_models(NameContains=name)["Models"]
    assert [m["ModelName"] for m in listed] == [name] and set(listed[0]) == {"ModelName", "ModelArn", "CreationTime"}
    configs = sm.list_endpoint_configs(NameContains=config)["EndpointConfigs"]
    assert [c["EndpointConfigName"] for c in configs] == [config]
    sm.delete_endpoint_config(EndpointConfigName=config)
    sm.delete_model(ModelName=name)
    assert sm.list_models(NameContains=name)["Models"] == []


def test_invoke_unknown_endpoint_is_a_validation_error(runtime):
    with pytest.raises(ClientError) as exc:
        runtime.invoke_endpoint(EndpointName="no-such-endpoint", Body=b"1,2", ContentType="text/csv")
    assert aws_error(exc) == ("ValidationError", f"Endpoint no-such-endpoint of account {ACCOUNT} not found.")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# ---------------------------------------------------------------- real model servers
@pytest.mark.slow
def test_boto3_endpoint_lifecycle_shapes_and_errors(sm, s3, bucket, runtime, emulator):
    model, endpoint = unique("skl"), unique("ep")
    _create_sklearn_model(sm, s3, bucket, model)
    _deploy(sm, model, endpoint)
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Creating"
    doc = _wait_endpoint(sm, endpoint)
    assert doc["EndpointStatus"] == "InService", doc.get("FailureReason")
    [variant] = doc["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    assert (variant["CurrentWeight"], variant["DesiredWeight"]) == (1.0, 1.0)
    assert (variant["CurrentInstanceCount"], variant["DesiredInstanceCount"]) == (1, 1)
    [image] = variant["DeployedImages"]
    assert image["SpecifiedImage"] == SKLEARN_IMAGE
    assert image["ResolvedImage"].startswith(SKLEARN_IMAGE.split(":")[0] + "@sha256:")
    assert doc["EndpointConfigName"] == endpoint and "FailureReason" not in doc
    listed = sm.list_endpoints(NameContains=endpoint, StatusEquals="InService")["Endpoints"]
    assert [e["EndpointName"] for e in listed] == [endpoint]

    response = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3",
                                       ContentType="text/csv", Accept="text/csv")
    assert response["Body"].read() == b"0\n2\n"
    assert response["ContentType"] == "text/csv; charset=utf-8"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    # the container squeezes CSV: one row becomes a 1-D array, which model.predict rejects (as on AWS)
    with pytest.raises(runtime.exceptions.ModelError) as exc:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"5.1,3.5,1.4,0.2", ContentType="text/csv")
    assert exc.value.response["OriginalStatusCode"] == 500
    # JSON in, default Accept (application/json) out
    response = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"[[5.1, 3.5, 1.4, 0.2]]",
                                       ContentType="application/json")
    assert (response["Body"].read(), response["ContentType"]) == (b"[0]", "application/json")

    # the scikit-learn container answers an unsupported content type with Flask's 500 page
    with pytest.raises(runtime.exceptions.ModelError) as exc:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"x", ContentType="application/x-unknown")
    err = exc.value.response
    assert err["OriginalStatusCode"] == 500
    assert "<title>500 Internal Server Error</title>" in err["OriginalMessage"]
    assert err["Error"]["Message"].startswith("Received server error (500) from primary with message \"<!DOCTYPE")
    assert err["Error"]["Message"].endswith(
        "See https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logEventViewer:"
        f"group=/aws/sagemaker/Endpoints/{endpoint} in account {ACCOUNT} for more information.")
    assert err["LogStreamArn"] == f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    with pytest.raises(ClientError) as exc:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"1", ContentType="text/csv", TargetVariant="Other")
    assert aws_error(exc)[0] == "ValidationError"

    # the traceback of that failure is in the variant's log stream
    logs = emulator.client("logs")
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    [stream] = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert stream["logStreamName"].startswith("AllTraffic/i-")
    deadline = time.time() + 10
    while time.time() < deadline:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
        if any("UnsupportedFormatError" in e["message"] for e in events):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the model server's traceback never reached CloudWatch Logs")

    # update to a configuration with two weighted variants; both answer, targeted by name
    other = unique("cfg2")
    sm.create_endpoint_config(EndpointConfigName=other, ProductionVariants=[
        {"VariantName": "A", "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large",
         "InitialVariantWeight": 3.0},
        {"VariantName": "B", "ModelName": model, "InitialInstanceCount": 2, "InstanceType": "ml.m5.large",
         "InitialVariantWeight": 1.0}])
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=other)
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "Updating"
    with pytest.raises(ClientError) as exc:
        sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=other)
    arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{endpoint}"
    assert aws_error(exc) == ("ValidationException", f'Cannot update in-progress endpoint "{arn}".')
    doc = _wait_endpoint(sm, endpoint)
    assert doc["EndpointStatus"] == "InService" and doc["EndpointConfigName"] == other
    assert [(v["VariantName"], v["CurrentWeight"], v["CurrentInstanceCount"]) for v in doc["ProductionVariants"]] \
        == [("A", 3.0, 1), ("B", 1.0, 2)]
    for name in ("A", "B"):
        response = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"[[6.7, 3.0, 5.2, 2.3]]",
                                           ContentType="application/json", TargetVariant=name)
        assert (response["InvokedProductionVariant"], response["Body"].read()) == (name, b"[2]")

    # traffic follows UpdateEndpointWeightsAndCapacities
    sm.update_endpoint_weights_and_capacities(EndpointName=endpoint, DesiredWeightsAndCapacities=[
        {"VariantName": "A", "DesiredWeight": 0.0}])
    doc = sm.describe_endpoint(EndpointName=endpoint)
    assert [(v["VariantName"], v["DesiredWeight"]) for v in doc["ProductionVariants"]] == [("A", 0.0), ("B", 1.0)]
    served = {runtime.invoke_endpoint(EndpointName=endpoint, Body=b"[[6.7, 3.0, 5.2, 2.3]]",
                                      ContentType="application/json")["InvokedProductionVariant"] for _ in range(20)}
    assert served == {"B"}

    # an endpoint keeps serving after its configuration and model are deleted
    sm.delete_endpoint_config(EndpointConfigName=other)
    sm.delete_model(ModelName=model)
    assert runtime.invoke_endpoint(EndpointName=endpoint, Body=b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3",
                                   ContentType="text/csv", Accept="application/json")["Body"].read() == b"[0, 2]"
    sm.delete_endpoint(EndpointName=endpoint)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    with pytest.raises(ClientError) as exc:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"1", ContentType="text/csv")
    assert aws_error(exc)[0] == "ValidationError"
    assert not (emulator.settings.data_dir / "jobs" / "endpoint" / endpoint).exists()


@pytest.mark.slow
def test_model_archive_escaping_its_folder_fails_the_endpoint(sm, s3, bucket, emulator):
    model, endpoint = unique("bad-archive"), unique("bad-archive-ep")
    # model/ is <data>/jobs/endpoint/<name>/<instance>/model: six levels up is outside the data dir
    archive = tar_gz({"model.joblib": b"x", "../evil": b"pwned", "../../../../../../evil-escape": b"pwned",
                    "code/inference.py": INFERENCE.encode()})
    _create_sklearn_model(sm, s3, bucket, model, archive)
    _deploy(sm, model, endpoint)
    doc = _wait_endpoint(sm, endpoint)
    assert doc["EndpointStatus"] == "Failed"
    assert doc["FailureReason"].startswith(f'Failed to extract model data archive from URL "s3://{bucket}/')
    assert "unsafe path: ../evil" in doc["FailureReason"]
    assert "ProductionVariants" not in doc
    assert list(emulator.settings.data_dir.rglob("evil*")) == []
    assert not (emulator.settings.data_dir.parent / "evil-escape").exists()
    assert not (emulator.settings.data_dir / "jobs" / "endpoint" / endpoint).exists()
    sm.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_model_fn_error_fails_the_ping_health_check(sm, s3, bucket):
    model, endpoint = unique("broken"), unique("broken-ep")
    inference = "def model_fn(model_dir):\n    raise RuntimeError('weights are corrupt')\n"
    _create_sklearn_model(sm, s3, bucket, model, _sklearn_model_tar(inference=inference))
    _deploy(sm, model, endpoint)
    doc = _wait_endpoint(sm, endpoint)
    assert doc["EndpointStatus"] == "Failed"
    assert doc["FailureReason"].startswith(
        "The primary container for production variant AllTraffic did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint.")
    assert "RuntimeError: weights are corrupt" in doc["FailureReason"]


@pytest.mark.slow
def test_a_workers_kept_output_is_bounded_per_line(sm, s3, bucket, emulator):
    from smlocal.runtime.model_server import ModelServer, ModelServerError

    # a 1 MB line reaches the server in pieces of ~256 KB; each kept line is cut at 4 KiB
    inference = "import os, sys\nsys.stdout.write('x' * 1_000_000 + '\\n')\nsys.stdout.flush()\nos._exit(3)\n"
    key = f"models/{unique('loud')}/model.tar.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=_sklearn_model_tar(inference=inference))
    container = {"Image": SKLEARN_IMAGE, "ModelDataUrl": f"s3://{bucket}/{key}", "Environment": {
        "SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}}
    with pytest.raises(ModelServerError) as info:
        ModelServer.start(emulator.runtime, [container], name=unique("loud"), kind="endpoint")
    detail = info.value.detail
    assert detail.startswith("the model server exited with code 3: xxxx")
    assert len(detail) < 5 * 4096 + 100


@pytest.mark.slow
def test_builtin_xgboost_model_served_from_a_training_job(sm, s3, bucket, runtime):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=(200, 3))
    y = 2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2]
    rows = "\n".join(",".join(f"{v:.4f}" for v in (label, *feats)) for label, feats in zip(y, x))
    s3.put_object(Bucket=bucket, Key="xgb/train/train.csv", Body=rows.encode())
    job = unique("xgb")
    sm.create_training_job(
        TrainingJobName=job, RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"num_round": "30", "objective": "reg:squarederror", "max_depth": "4"},
        InputDataConfig=[{"ChannelName": "train", "ContentType": "text/csv", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/xgb/train",
            "S3DataDistributionType": "FullyReplicated"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/xgb/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 600})
    sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName=job,
                                                            WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    trained = sm.describe_training_job(TrainingJobName=job)
    assert trained["TrainingJobStatus"] == "Completed", trained.get("FailureReason")

    model, endpoint = unique("xgbm"), unique("xgb-ep")
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": XGBOOST_IMAGE, "ModelDataUrl": trained["ModelArtifacts"]["S3ModelArtifacts"]})
    _deploy(sm, model, endpoint)
    assert sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint,
                                                     WaiterConfig={"Delay": 1, "MaxAttempts": 120}) is None
    response = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"5,5,5\n1,8,2", ContentType="text/csv")
    assert response["ContentType"] == "text/csv; charset=utf-8"
    predictions = [float(v) for v in response["Body"].read().decode().split(",")]
    # exactly what the trained booster predicts
    import pickle

    import xgboost as xgb

    artifact = trained["ModelArtifacts"]["S3ModelArtifacts"]
    body = s3.get_object(Bucket=bucket, Key=artifact.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        booster = pickle.loads(archive.extractfile("xgboost-model").read())
    expected = booster.predict(xgb.DMatrix(np.array([[5, 5, 5], [1, 8, 2]], dtype=float))).tolist()
    assert predictions == pytest.approx(expected, rel=1e-5)

    with pytest.raises(runtime.exceptions.ModelError) as exc:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b'{"x": 1}', ContentType="application/json")
    err = exc.value.response
    assert err["OriginalStatusCode"] == 415
    assert err["Error"]["Message"].startswith("Received client error (415) from primary with message ")
    assert err["OriginalMessage"] in err["Error"]["Message"]
    sm.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_builtin_knn_model_served_without_network(sm, s3, bucket, runtime):
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    rows = "\n".join(",".join(str(v) for v in (label, *feats)) for label, feats in zip(y, x))
    s3.put_object(Bucket=bucket, Key="knn/train/iris.csv", Body=rows.encode())
    job = unique("knn")
    sm.create_training_job(
        TrainingJobName=job, RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": KNN_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"feature_dim": "4", "k": "5", "predictor_type": "classifier", "sample_size": "150"},
        InputDataConfig=[{"ChannelName": "train", "ContentType": "text/csv; label_size=1", "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/knn/train",
                             "S3DataDistributionType": "FullyReplicated"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/knn/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 600})
    sm.get_waiter("training_job_completed_or_stopped").wait(TrainingJobName=job,
                                                            WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    trained = sm.describe_training_job(TrainingJobName=job)
    assert trained["TrainingJobStatus"] == "Completed", trained.get("FailureReason")
    model, endpoint = unique("knnm"), unique("knn-ep")
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, EnableNetworkIsolation=True, PrimaryContainer={
        "Image": KNN_IMAGE, "ModelDataUrl": trained["ModelArtifacts"]["S3ModelArtifacts"]})
    _deploy(sm, model, endpoint)
    assert _wait_endpoint(sm, endpoint)["EndpointStatus"] == "InService"
    response = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3",
                                       ContentType="text/csv", Accept="application/json")
    assert response["ContentType"] == "application/json"
    assert [p["predicted_label"] for p in json.loads(response["Body"].read())["predictions"]] == [0.0, 2.0]
    with pytest.raises(runtime.exceptions.ModelError) as exc:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"5.1,3.5,1.4,0.2", ContentType="text/csv",
                                Accept="application/x-recordio-protobuf")
    assert exc.value.response["OriginalStatusCode"] == 406
    sm.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_inference_pipeline_runs_containers_in_series(sm, s3, bucket, runtime):
    scale = textwrap.dedent(
        """
        import numpy as np

        def model_fn(model_dir):
            return 10.0

        def predict_fn(data, factor):
            return np.asarray(data) * factor
        """
    )
    s3.put_object(Bucket=bucket, Key="pipe/scale.tar.gz", Body=tar_gz({"code/scale.py": scale.encode()}))
    s3.put_object(Bucket=bucket, Key="pipe/iris.tar.gz", Body=_sklearn_model_tar())
    env = {"SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
    model, endpoint = unique("pipe"), unique("pipe-ep")
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE, Containers=[
        {"Image": SKLEARN_IMAGE, "ModelDataUrl": f"s3://{bucket}/pipe/scale.tar.gz",
         "Environment": {**env, "SAGEMAKER_PROGRAM": "scale.py",
                         "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "application/json"}},
        {"Image": SKLEARN_IMAGE, "ModelDataUrl": f"s3://{bucket}/pipe/iris.tar.gz",
         "Environment": {**env, "SAGEMAKER_PROGRAM": "inference.py"}}])
    _deploy(sm, model, endpoint)
    assert _wait_endpoint(sm, endpoint)["EndpointStatus"] == "InService"
    # 0.51,0.35,0.14,0.02 scaled by 10 is the setosa flower; the second container classifies it
    response = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"0.51,0.35,0.14,0.02\n0.67,0.30,0.52,0.23",
                                       ContentType="text/csv", Accept="application/json")
    assert response["Body"].read() == b"[0, 2]"
    with pytest.raises(runtime.exceptions.ModelError) as exc:
        runtime.invoke_endpoint(EndpointName=endpoint, Body=b"x", ContentType="image/png")
    assert exc.value.response["Error"]["Message"].startswith("Received server error (500) from container-1 ")
    sm.delete_endpoint(EndpointName=endpoint)


@pytest.mark.slow
def test_sdk_sklearn_estimator_deploys_two_endpoints_at_once(client_env, tmp_path):
    import pandas as pd
    import sagemaker
    from sagemaker.deserializers import CSVDeserializer
    from sagemaker.serializers import CSVSerializer
    from sagemaker.sklearn import SKLearn
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    data = tmp_path / "iris.csv"
    pd.concat([iris.target, iris.data], axis=1).to_csv(data, header=False, index=False)
    session = sagemaker.Session()
    train_uri = session.upload_data(str(data), bucket=session.default_bucket(), key_prefix="tests/serving-iris")
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN)
    estimator = SKLearn(entry_point="train.py", source_dir=str(source), framework_version="1.2-1",
                        instance_type="ml.m5.large", instance_count=1, role=sagemaker.get_execution_role(),
                        sagemaker_session=session)
    estimator.fit({"train": train_uri}, wait=True, logs=False)

    names = [unique("sdk-ep-a"), unique("sdk-ep-b")]
    predictors: dict[str, object] = {}
    failures: list[BaseException] = []

    def deploy(name: str) -> None:
        try:
            predictors[name] = estimator.deploy(initial_instance_count=1, instance_type="ml.m5.large",
                                                endpoint_name=name, model_name=name)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=deploy, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not failures, failures
    sm = session.sagemaker_client
    assert {sm.describe_endpoint(EndpointName=n)["EndpointStatus"] for n in names} == {"InService"}

    expected = [0, 2, 1]
    for name in names:
        predictor = predictors[name]
        assert predictor.predict(ROWS).tolist() == expected  # SKLearnPredictor: NumPy in and out
        predictor.serializer, predictor.deserializer = CSVSerializer(), CSVDeserializer()
        assert predictor.predict(ROWS.tolist()) == [[str(v)] for v in expected]
    for name in names:
        predictors[name].delete_endpoint()
    for name in names:
        sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        with pytest.raises(ClientError) as exc:
            sm.describe_endpoint_config(EndpointConfigName=name)
        assert "Could not find endpoint configuration" in aws_error(exc)[1]


@pytest.mark.slow
def test_endpoints_come_back_after_a_server_restart(tmp_path):
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    settings = load_settings(data_dir=tmp_path / "data", port=0)
    model, endpoint, bucket = "restart-model", "restart-ep", "restart-bucket"
    with Emulator(settings) as emu:
        sm, s3 = emu.client("sagemaker"), emu.client("s3")
        s3.create_bucket(Bucket=bucket)
        _create_sklearn_model(sm, s3, bucket, model)
        _deploy(sm, model, endpoint)
        assert _wait_endpoint(sm, endpoint)["EndpointStatus"] == "InService"
        first = sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"]
        # the instances keep what they downloaded: a restart does not need S3 (in-memory in embedded mode)
        s3.delete_object(Bucket=bucket, Key=f"models/{model}/model.tar.gz")
    with Emulator(settings) as emu:
        sm, runtime = emu.client("sagemaker"), emu.client("sagemaker-runtime")
        assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
        response = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"[[6.7, 3.0, 5.2, 2.3]]",
                                           ContentType="application/json")
        assert response["Body"].read() == b"[2]"
        second = sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"]
        assert second[0]["VariantName"] == first[0]["VariantName"]
        streams = emu.client("logs").describe_log_streams(logGroupName=f"/aws/sagemaker/Endpoints/{endpoint}")
        assert len(streams["logStreams"]) >= 1
        sm.delete_endpoint(EndpointName=endpoint)
        sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
