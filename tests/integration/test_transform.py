"""Batch transform jobs through real boto3 and the real SageMaker SDK v2 against the running emulator."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import time

import numpy as np
import pytest
from botocore.exceptions import ClientError

from conftest import (ROLE, SKLEARN_IMAGE, aws_error, put_s3, read_s3, s3_keys, unique, upload_sourcedir,
                      wait_for)

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
LOG_GROUP = "/aws/sagemaker/TransformJobs"
CLIENT_FAILURE = "ClientError: See job logs for more information"


# ---- helpers


def _csv(rows) -> str:
    return "".join(",".join(str(v) for v in row) + "\n" for row in rows)


def _transform_request(name: str, model: str, input_uri: str, output_uri: str, *, content_type="text/csv",
                       split="Line", data_type="S3Prefix", **extra) -> dict:
    request = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": input_uri}},
                           "ContentType": content_type, "SplitType": split},
        "TransformOutput": {"S3OutputPath": output_uri},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    for key, value in extra.items():
        if key in ("TransformInput", "TransformOutput"):
            request[key].update(value)
        else:
            request[key] = value
    return request


def _wait(sm, name: str, timeout: float = 180.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = sm.describe_transform_job(TransformJobName=name)
        if job["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"transform job {name} did not finish in {timeout}s: {job['TransformJobStatus']}")


def _log_lines(emulator, name: str, suffix: str) -> list[str]:
    logs = emulator.client("logs")
    streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")["logStreams"]
    wanted = [s["logStreamName"] for s in streams if s["logStreamName"].endswith(suffix)]
    assert wanted, f"no stream ending in {suffix!r}: {[s['logStreamName'] for s in streams]}"
    events = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=wanted[0], startFromHead=True)["events"]
    return [e["message"] for e in events]


def _features(n: int, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(size=(n, 4)), 4)


def _model_tar(s3, uri: str) -> tarfile.TarFile:
    return tarfile.open(fileobj=io.BytesIO(read_s3(s3, uri)))


# ---- a built-in XGBoost model, trained once for the module
@pytest.fixture(scope="module")
def xgb(emulator):
    """Trains the built-in XGBoost 1.0-1 on a CSV (label in column 0) and creates its Model."""
    sm, s3 = emulator.client("sagemaker"), emulator.client("s3")
    bucket = unique("xgb-transform")
    s3.create_bucket(Bucket=bucket)
    x = _features(300, seed=1)
    y = x @ np.array([1.0, -2.0, 0.5, 3.0]) + 1.0
    train = put_s3(s3, bucket, "train/train.csv", _csv(np.column_stack([y, x])))
    job = unique("xgb-train")
    sm.create_training_job(
        TrainingJobName=job, RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"num_round": "30", "objective": "reg:squarederror", "max_depth": "4"},
        InputDataConfig=[{"ChannelName": "train", "ContentType": "text/csv",
                          "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": train}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/models"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )
    trained = wait_for(sm, job, timeout=180)
    assert trained["TrainingJobStatus"] == "Completed", trained.get("FailureReason")
    artifacts = trained["ModelArtifacts"]["S3ModelArtifacts"]
    model = unique("xgb-model")
    sm.create_model(ModelName=model, ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": XGBOOST_IMAGE, "ModelDataUrl": artifacts})

    import pickle
    import xgboost

    with _model_tar(s3, artifacts) as archive:
        booster = pickle.load(archive.extractfile("xgboost-model"))

    def predict(rows: np.ndarray) -> np.ndarray:
        return booster.predict(xgboost.DMatrix(rows))

    return {"bucket": bucket, "model": model, "predict": predict}


def _predictions(text: bytes) -> np.ndarray:
    return np.array([float(line) for line in text.decode().splitlines()])


# ---- built-in XGBoost: the basic CSV flow
def test_xgboost_multi_record_csv_gives_one_prediction_per_line_in_order(sm, s3, emulator, xgb):
    bucket, x = xgb["bucket"], _features(2000, seed=2)
    name = unique("xgb-multi")
    source = put_s3(s3, bucket, f"{name}/in/data.csv", _csv(x))
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out",
        BatchStrategy="MultiRecord", MaxPayloadInMB=1, MaxConcurrentTransforms=4))
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    out = read_s3(s3, f"s3://{bucket}/{name}/out/data.csv.out")
    np.testing.assert_allclose(_predictions(out), xgb["predict"](x), rtol=1e-5)
    assert source.endswith("data.csv")

    # Describe echoes the request with AWS's shape
    assert job["TransformJobArn"] == f"arn:aws:sagemaker:us-east-1:{emulator.settings.account_id}:transform-job/{name}"
    assert job["ModelName"] == xgb["model"]
    assert (job["BatchStrategy"], job["MaxPayloadInMB"], job["MaxConcurrentTransforms"]) == ("MultiRecord", 1, 4)
    assert job["TransformInput"]["SplitType"] == "Line"
    assert job["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 1}
    assert job["CreationTime"] <= job["TransformStartTime"] <= job["TransformEndTime"]
    assert "FailureReason" not in job and "LastModifiedTime" not in job

    # the data log names the effective settings, as AWS's does
    data_log = _log_lines(emulator, name, "/data-log")
    assert data_log[0].endswith(":[sagemaker logs]: MaxConcurrentTransforms=4, MaxPayloadInMB=1, "
                                "BatchStrategy=MULTI_RECORD")


def test_xgboost_single_record_with_accept_and_assemble_line(sm, s3, xgb):
    bucket, x = xgb["bucket"], _features(25, seed=3)
    name = unique("xgb-single")
    put_s3(s3, bucket, f"{name}/in/data.csv", _csv(x))
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], f"s3://{bucket}/{name}/in/data.csv", f"s3://{bucket}/{name}/out/",
        BatchStrategy="SingleRecord", TransformOutput={"Accept": "text/csv", "AssembleWith": "Line"}))
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    head = s3.head_object(Bucket=bucket, Key=f"{name}/out/data.csv.out")
    assert head["ContentType"] == "text/csv"
    out = read_s3(s3, f"s3://{bucket}/{name}/out/data.csv.out")
    np.testing.assert_allclose(_predictions(out), xgb["predict"](x), rtol=1e-5)


def test_input_filter_join_and_output_filter(sm, s3, xgb):
    bucket, x = xgb["bucket"], _features(40, seed=4)
    name = unique("xgb-join")
    ids = [f"row{i}" for i in range(len(x))]
    put_s3(s3, bucket, f"{name}/in/data.csv", "".join(f"{i}," + ",".join(map(str, r)) + "\n" for i, r in zip(ids, x)))
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out",
        BatchStrategy="MultiRecord", TransformOutput={"Accept": "text/csv", "AssembleWith": "Line"},
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}))
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["DataProcessing"] == {"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}
    rows = [line.split(",") for line in read_s3(s3, f"s3://{bucket}/{name}/out/data.csv.out").decode().splitlines()]
    assert [r[0] for r in rows] == ids
    assert all(len(r) == 2 for r in rows)
    np.testing.assert_allclose([float(r[1]) for r in rows], xgb["predict"](x), rtol=1e-5)


def test_join_without_output_filter_appends_the_prediction(sm, s3, xgb):
    bucket, x = xgb["bucket"], _features(5, seed=5)
    name = unique("xgb-join-all")
    text = _csv(x)
    put_s3(s3, bucket, f"{name}/in/data.csv", text)
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out",
        TransformOutput={"AssembleWith": "Line"}, DataProcessing={"JoinSource": "Input"}))
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    lines = read_s3(s3, f"s3://{bucket}/{name}/out/data.csv.out").decode().splitlines()
    assert [line.rsplit(",", 1)[0] for line in lines] == text.splitlines()


def test_each_input_object_gets_its_own_out_object(sm, s3, xgb):
    bucket = xgb["bucket"]
    name = unique("xgb-objects")
    parts = {"a.csv": _features(3, 6), "b.csv": _features(4, 7), "nested/c.csv": _features(5, 8)}
    for key, rows in parts.items():
        put_s3(s3, bucket, f"{name}/in/{key}", _csv(rows))
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], f"s3://{bucket}/{name}/in", f"s3://{bucket}/{name}/out"))
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert s3_keys(s3, bucket, f"{name}/out/") == sorted(f"{name}/out/{k}.out" for k in parts)
    for key, rows in parts.items():
        out = read_s3(s3, f"s3://{bucket}/{name}/out/{key}.out")
        np.testing.assert_allclose(_predictions(out), xgb["predict"](rows), rtol=1e-5)


def test_manifest_file_lists_the_inputs(sm, s3, xgb):
    bucket = xgb["bucket"]
    name = unique("xgb-manifest")
    x1, x2 = _features(3, 9), _features(2, 10)
    put_s3(s3, bucket, f"{name}/data/one.csv", _csv(x1))
    put_s3(s3, bucket, f"{name}/data/two.csv", _csv(x2))
    put_s3(s3, bucket, f"{name}/data/ignored.csv", "not,listed\n")
    manifest = put_s3(s3, bucket, f"{name}/input.manifest",
                    json.dumps([{"prefix": f"s3://{bucket}/{name}/data/"}, "one.csv", "two.csv"]))
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], manifest, f"s3://{bucket}/{name}/out", data_type="ManifestFile"))
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert s3_keys(s3, bucket, f"{name}/out/") == [f"{name}/out/one.csv.out", f"{name}/out/two.csv.out"]
    np.testing.assert_allclose(_predictions(read_s3(s3, f"s3://{bucket}/{name}/out/two.csv.out")),
                               xgb["predict"](x2), rtol=1e-5)


def test_gzip_input_is_decompressed(sm, s3, xgb):
    import gzip

    bucket, x = xgb["bucket"], _features(10, 11)
    name = unique("xgb-gzip")
    put_s3(s3, bucket, f"{name}/in/data.csv.gz", gzip.compress(_csv(x).encode()))
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out",
        TransformInput={"CompressionType": "Gzip"}))
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    out = read_s3(s3, f"s3://{bucket}/{name}/out/data.csv.gz.out")
    np.testing.assert_allclose(_predictions(out), xgb["predict"](x), rtol=1e-5)


# ---- failures
def test_model_error_fails_the_job_and_skips_only_that_object(sm, s3, emulator, xgb):
    bucket = xgb["bucket"]
    name = unique("xgb-bad")
    put_s3(s3, bucket, f"{name}/in/good.csv", _csv(_features(3, 12)))
    put_s3(s3, bucket, f"{name}/in/bad.csv", "1.0\n2.0\n")  # one feature; the model has four
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out"))
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Failed"
    assert job["FailureReason"] == CLIENT_FAILURE
    assert s3_keys(s3, bucket, f"{name}/out/") == [f"{name}/out/good.csv.out"]
    data_log = _log_lines(emulator, name, "/data-log")
    origin = f"{bucket}/{name}/in/bad.csv"
    assert any(line.endswith(f"[sagemaker logs]: {origin}: ClientError: 400") for line in data_log)
    assert any(f"{origin}: Message:" in line for line in data_log)
    assert any("Unable to evaluate payload provided" in line for line in data_log)


def test_record_over_max_payload_fails(sm, s3, emulator, xgb):
    bucket = xgb["bucket"]
    name = unique("xgb-big")
    put_s3(s3, bucket, f"{name}/in/data.csv", "1,2,3,4\n" + "1," * 600_000 + "1\n")
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out", MaxPayloadInMB=1))
    job = _wait(sm, name)
    assert (job["TransformJobStatus"], job["FailureReason"]) == ("Failed", CLIENT_FAILURE)
    assert any("larger than MaxPayloadInMB (1 MB)" in line for line in _log_lines(emulator, name, "/data-log"))
    assert s3_keys(s3, bucket, f"{name}/out/") == []


def test_invalid_filter_fails_with_the_aws_message(sm, s3, emulator, xgb):
    bucket = xgb["bucket"]
    name = unique("xgb-filter")
    put_s3(s3, bucket, f"{name}/in/data.csv", _csv(_features(2, 13)))
    sm.create_transform_job(**_transform_request(
        name, xgb["model"], f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out",
        DataProcessing={"OutputFilter": "$[0:2,246:]", "JoinSource": "Input"}))
    job = _wait(sm, name)
    assert (job["TransformJobStatus"], job["FailureReason"]) == ("Failed", CLIENT_FAILURE)
    assert any("Invalid JsonPath: $[0:2,246:]: only single range filters of format (eg: [1:5]) are supported"
               in line for line in _log_lines(emulator, name, "/data-log"))


def test_unknown_model_is_a_validation_exception(sm, bucket, emulator):
    with pytest.raises(ClientError) as info:
        sm.create_transform_job(**_transform_request(unique("nomodel"), "no-such-model", f"s3://{bucket}/in/",
                                                     f"s3://{bucket}/out"))
    arn = f"arn:aws:sagemaker:us-east-1:{emulator.settings.account_id}:model/no-such-model"
    assert aws_error(info) == ("ValidationException", f'Could not find model "{arn}".')


def test_no_input_objects_is_rejected_at_create(sm, xgb):
    bucket = xgb["bucket"]
    with pytest.raises(ClientError) as info:
        sm.create_transform_job(**_transform_request(unique("empty"), xgb["model"], f"s3://{bucket}/nothing-here/",
                                                     f"s3://{bucket}/out"))
    code, message = aws_error(info)
    assert code == "ValidationException"
    assert message.startswith(f'No S3 objects found under S3 URL "s3://{bucket}/nothing-here/" given in input '
                              "data source. Please ensure that the bucket exists in the selected region (us-east-1)")


def test_duplicate_unknown_and_limits(sm, s3, xgb):
    bucket = xgb["bucket"]
    name = unique("xgb-dup")
    put_s3(s3, bucket, f"{name}/in/data.csv", _csv(_features(2, 14)))
    request = _transform_request(name, xgb["model"], f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out")
    sm.create_transform_job(**request)
    with pytest.raises(ClientError) as info:
        sm.create_transform_job(**request)
    code, message = aws_error(info)
    assert code == "ResourceInUse" and message.startswith("Job name must be unique within an AWS account and region")
    _wait(sm, name)

    with pytest.raises(ClientError) as info:
        sm.describe_transform_job(TransformJobName="no-such-transform-job")
    assert aws_error(info) == ("ValidationException", "Could not find requested job with name no-such-transform-job")
    with pytest.raises(ClientError) as info:
        sm.stop_transform_job(TransformJobName="no-such-transform-job")
    assert aws_error(info)[0] == "ValidationException"
    with pytest.raises(ClientError) as info:
        sm.stop_transform_job(TransformJobName=name)
    assert aws_error(info)[0] == "ValidationException"

    for extra in ({"MaxPayloadInMB": 101}, {"MaxPayloadInMB": 30, "MaxConcurrentTransforms": 4}):
        with pytest.raises(ClientError) as info:
            sm.create_transform_job(**{**request, "TransformJobName": unique("limit"), **extra})
        assert aws_error(info)[0] == "ValidationException"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "zombie" not in status.read().lower()
    except FileNotFoundError:
        return False


def test_recover_fails_jobs_a_dead_server_left_running_and_kills_their_model_server(sm, emulator, xgb):
    from smlocal.runtime.model_server import ModelServer

    name = unique("orphan")
    model = sm.describe_model(ModelName=xgb["model"])
    server = ModelServer.start(emulator.runtime, [model["PrimaryContainer"]], name=name, kind="transform", batch=True)
    try:
        pidfiles = list((emulator.runtime.jobs_root / "transform" / name).glob("*.pid"))
        assert len(pidfiles) == 1
        pid = int(pidfiles[0].read_text())
        emulator.store.put("TransformJob", name, {
            "TransformJobName": name,
            "TransformJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:transform-job/{name}",
            "TransformJobStatus": "InProgress", "ModelName": xgb["model"],
            "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in"}}},
            "TransformOutput": {"S3OutputPath": "s3://b/out"},
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            "CreationTime": time.time(), "LastModifiedTime": time.time()})
        assert emulator.transform.recover() >= 1
        job = sm.describe_transform_job(TransformJobName=name)
        assert job["TransformJobStatus"] == "Failed"
        assert job["FailureReason"].startswith("InternalServerError: the smlocal server stopped")
        assert "TransformEndTime" in job
        deadline = time.time() + 10
        while _running(pid):
            assert time.time() < deadline, "the orphaned model server is still running"
            time.sleep(0.05)
    finally:
        server.stop()


def test_list_transform_jobs(sm, s3, xgb):
    bucket = xgb["bucket"]
    tag = unique("lst")
    put_s3(s3, bucket, f"{tag}/in/data.csv", _csv(_features(2, 15)))
    names = [f"{tag}-{i}" for i in range(3)]
    for name in names:
        sm.create_transform_job(**_transform_request(name, xgb["model"], f"s3://{bucket}/{tag}/in/",
                                                     f"s3://{bucket}/{tag}/out/{name}"))
    for name in names:
        _wait(sm, name)
    page = sm.list_transform_jobs(NameContains=tag, SortBy="Name", SortOrder="Ascending")
    assert [s["TransformJobName"] for s in page["TransformJobSummaries"]] == names
    summary = page["TransformJobSummaries"][0]
    assert summary["TransformJobStatus"] == "Completed"
    assert set(summary) >= {"TransformJobName", "TransformJobArn", "CreationTime", "TransformEndTime",
                            "LastModifiedTime", "TransformJobStatus"}
    first = sm.list_transform_jobs(NameContains=tag, MaxResults=2)
    assert len(first["TransformJobSummaries"]) == 2 and "NextToken" in first
    assert sm.list_transform_jobs(NameContains=tag, StatusEquals="Failed")["TransformJobSummaries"] == []


# ---- a script model (SKLearn image): stop, environment
SLOW_SERVE = textwrap.dedent(
    """
    import os, time

    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        return body.decode() if isinstance(body, bytes) else body

    def predict_fn(data, model):
        time.sleep(float(os.environ.get("DELAY", "0")))
        return os.environ.get("ANSWER", "?") + ":" + data.strip()

    def output_fn(prediction, accept):
        return prediction + "\\n"
    """
)


@pytest.fixture
def script_model(sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"serve.py": SLOW_SERVE})
    name = unique("script-model")
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": SKLEARN_IMAGE,
        "Environment": {"SAGEMAKER_PROGRAM": "serve.py", "SAGEMAKER_SUBMIT_DIRECTORY": code, "ANSWER": "model"},
    })
    return name


def test_job_environment_reaches_the_model(sm, s3, bucket, script_model):
    name = unique("env")
    put_s3(s3, bucket, f"{name}/in/data.txt", "a\nb\n")
    sm.create_transform_job(**_transform_request(
        name, script_model, f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out", content_type="text/plain",
        BatchStrategy="SingleRecord", Environment={"ANSWER": "job"}))
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert job["Environment"] == {"ANSWER": "job"}
    assert read_s3(s3, f"s3://{bucket}/{name}/out/data.txt.out") == b"job:a\njob:b\n"


@pytest.mark.slow
def test_stop_ends_a_running_job_without_output(sm, s3, bucket, script_model):
    name = unique("stop")
    put_s3(s3, bucket, f"{name}/in/data.txt", "".join(f"{i}\n" for i in range(500)))
    sm.create_transform_job(**_transform_request(
        name, script_model, f"s3://{bucket}/{name}/in/", f"s3://{bucket}/{name}/out", content_type="text/plain",
        BatchStrategy="SingleRecord", Environment={"DELAY": "0.2"}))
    deadline = time.time() + 120
    while "TransformStartTime" not in sm.describe_transform_job(TransformJobName=name):
        assert time.time() < deadline
        time.sleep(0.1)
    sm.stop_transform_job(TransformJobName=name)
    assert sm.describe_transform_job(TransformJobName=name)["TransformJobStatus"] in ("Stopping", "Stopped")
    job = _wait(sm, name, timeout=60)
    assert job["TransformJobStatus"] == "Stopped"
    assert "FailureReason" not in job
    assert s3_keys(s3, bucket, f"{name}/out/") == []


# ---- whole flows
@pytest.mark.slow
def test_airflow_knn_iris_flow(sm, s3, bucket):
    """The Airflow example DAG's requests: KNN on iris, CreateModel, CreateTransformJob."""
    import sagemaker
    from sklearn.datasets import load_iris

    image = sagemaker.image_uris.retrieve("knn", "us-east-1")
    iris = load_iris()
    train = np.column_stack([iris.target, iris.data])
    put_s3(s3, bucket, "iris/processed-input-data/train.csv", _csv(train))
    put_s3(s3, bucket, "iris/processed-input-data/test.csv", _csv(iris.data))
    training_job = unique("iris-train")
    sm.create_training_job(
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        HyperParameters={"predictor_type": "classifier", "feature_dim": "4", "k": "3", "sample_size": "150"},
        InputDataConfig=[{"ChannelName": "train", "ContentType": "text/csv", "InputMode": "File",
                          "DataSource": {"S3DataSource": {
                              "S3DataType": "S3Prefix",
                              "S3Uri": f"s3://{bucket}/iris/processed-input-data/train.csv"}}}],
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/iris/results/"},
        ResourceConfig={"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1},
        RoleArn=ROLE, StoppingCondition={"MaxRuntimeInSeconds": 6000}, TrainingJobName=training_job,
    )
    trained = wait_for(sm, training_job, timeout=180)
    assert trained["TrainingJobStatus"] == "Completed", trained.get("FailureReason")
    model = unique("iris-KNN-model")
    sm.create_model(ExecutionRoleArn=ROLE, ModelName=model, PrimaryContainer={
        "Mode": "SingleModel", "Image": image,
        "ModelDataUrl": f"s3://{bucket}/iris/results/{training_job}/output/model.tar.gz"})
    name = unique("test-iris-knn")
    sm.create_transform_job(
        TransformJobName=name,
        TransformInput={"DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/iris/processed-input-data/test.csv"}},
            "SplitType": "Line", "ContentType": "text/csv"},
        TransformOutput={"S3OutputPath": f"s3://{bucket}/iris/results", "Accept": "application/jsonlines"},
        TransformResources={"InstanceCount": 1, "InstanceType": "ml.m5.large"},
        ModelName=model,
    )
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    lines = read_s3(s3, f"s3://{bucket}/iris/results/test.csv.out").decode().splitlines()
    predicted = [json.loads(line)["predicted_label"] for line in lines]
    assert len(predicted) == 150
    assert np.mean(np.array(predicted) == iris.target) > 0.9


TRAIN_SCRIPT = textwrap.dedent(
    """
    import argparse, glob, os
    import joblib, pandas as pd
    from sklearn.linear_model import LogisticRegression

    def model_fn(model_dir):
        return joblib.load(os.path.join(model_dir, "model.joblib"))

    if __name__ == "__main__":
        frame = pd.concat(pd.read_csv(f, header=None) for f in glob.glob(os.environ["SM_CHANNEL_TRAIN"] + "/*.csv"))
        model = LogisticRegression(max_iter=500).fit(frame.iloc[:, 1:], frame.iloc[:, 0])
        joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
    """
)


@pytest.mark.slow
def test_sdk_transformer_from_an_estimator(client_env, s3, tmp_path):
    import joblib
    import pandas as pd
    import sagemaker
    from sagemaker.sklearn import SKLearn
    from sklearn.datasets import load_iris

    session = sagemaker.Session()
    iris = load_iris(as_frame=True)
    (tmp_path / "train.csv").write_text(pd.concat([iris.target, iris.data], axis=1).to_csv(header=False, index=False))
    features = iris.data.sample(frac=1.0, random_state=0)
    (tmp_path / "features.csv").write_text(features.to_csv(header=False, index=False))
    prefix = unique("sdk-transform")
    train_uri = session.upload_data(str(tmp_path / "train.csv"), key_prefix=f"{prefix}/train")
    data_uri = session.upload_data(str(tmp_path / "features.csv"), key_prefix=f"{prefix}/batch")
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN_SCRIPT)

    estimator = SKLearn(entry_point="train.py", source_dir=str(source), framework_version="1.2-1",
                        instance_type="ml.m5.large", instance_count=1, role=sagemaker.get_execution_role(),
                        sagemaker_session=session)
    estimator.fit({"train": train_uri}, logs=False)
    output = f"s3://{session.default_bucket()}/{prefix}/predictions"
    transformer = estimator.transformer(instance_count=1, instance_type="ml.m5.large", output_path=output,
                                        assemble_with="Line", accept="text/csv")
    transformer.transform(data_uri, content_type="text/csv", split_type="Line")
    transformer.wait()

    desc = session.sagemaker_client.describe_transform_job(TransformJobName=transformer.latest_transform_job.name)
    assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
    out = read_s3(s3, f"{output}/features.csv.out").decode().splitlines()
    bucket, key = estimator.model_data[5:].split("/", 1)
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as archive:
        model = joblib.load(archive.extractfile("model.joblib"))
    assert len(out) == len(features)
    assert [float(v) for v in out] == [float(v) for v in model.predict(features.to_numpy())]
