"""The Docker backend against the real engine: every job kind in a container of its own image.

The tests build a BYO image from ``smlocal/base:bookworm`` (a ``train`` and a ``serve`` program on
its PATH, as SageMaker runs an image: ``docker run IMAGE train``). Without an engine they skip with
the reason; CI (``SMLOCAL_CI=1``) installs one and fails instead.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from smlocal.config import load_settings
from conftest import ROLE, wait_for

pytestmark = pytest.mark.docker

from docker_images import BASE_IMAGE, unavailable
BYO_IMAGE = f"smlocal-test/byo:{uuid.uuid4().hex[:8]}"
TEST_LABEL = {"smlocal.test": "1"}

TRAIN = r'''#!/usr/bin/python3
import json, os, socket, sys, time, urllib.request, urllib.error
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
rc = json.load(open("/opt/ml/input/config/resourceconfig.json"))
mode = hp.get("mode", "plain")
me = rc["current_host"]
print(f"train on {me} of {rc['hosts']}: argv={sys.argv[1:]} dockerenv={os.path.exists('/.dockerenv')}", flush=True)
os.makedirs("/opt/ml/model", exist_ok=True)
if mode == "plain":
    data = open("/opt/ml/input/data/train/data.csv").read()
    open("/opt/ml/model/model.txt", "w").write(json.dumps({
        "dockerenv": os.path.exists("/.dockerenv"), "rows": len(data.splitlines()), "argv": sys.argv[1:],
        "hostname": socket.gethostname(), "python": sys.executable, "path": os.environ.get("PATH"),
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"), "job": os.environ.get("TRAINING_JOB_NAME"),
        "custom": os.environ.get("MY_SETTING"), "key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "secret": os.environ.get("AWS_SECRET_ACCESS_KEY")}))
    print("wrote the model", file=sys.stderr, flush=True)
elif mode == "gateway":  # an unsigned request reaches the gateway and is refused (403)
    try:
        urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + "/", timeout=5)
        answer = "open"
    except urllib.error.HTTPError as exc:
        answer = str(exc.code)
    open("/opt/ml/model/gateway.txt", "w").write(answer)
elif mode in ("isolated", "probe"):  # isolated: nothing answers; probe: whether hp["gateway"] answers
    host, port = hp["gateway"].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        outcome = "reached"
    except OSError as exc:
        outcome = f"unreachable: {exc}"
    open("/opt/ml/model/isolated.txt", "w").write(outcome + "\n" + socket.gethostbyname(me))
elif mode == "exchange":  # algo-2 sends algo-1 a message over the network, by host name
    if me == "algo-1":
        server = socket.create_server(("0.0.0.0", 5555))
        server.settimeout(60)
        conn, peer = server.accept()
        message = conn.recv(1024).decode()
        open("/opt/ml/model/received.txt", "w").write(message)
        conn.sendall(b"ack from algo-1")
        conn.close()
    else:
        for _ in range(300):
            try:
                conn = socket.create_connection(("algo-1", 5555), timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        conn.sendall(f"hello from {me}".encode())
        print("algo-1 answered:", conn.recv(1024).decode(), flush=True)
elif mode == "sleep":
    print("sleeping", flush=True)
    time.sleep(300)
elif mode == "fail":
    open("/opt/ml/output/failure", "w").write("ValueError: the BYO trainer failed on purpose")
    sys.exit(3)
'''

PROCESS = r'''#!/usr/bin/python3
import json, os, sys
rows = open("/opt/ml/processing/input/data/data.csv").read().splitlines()
config = json.load(open("/opt/ml/config/processingjobconfig.json"))
os.makedirs("/opt/ml/processing/output", exist_ok=True)
open("/opt/ml/processing/output/result.txt", "w").write(
    f"{len(rows)} {os.path.exists('/.dockerenv')} {config['ProcessingJobName']} {os.getcwd()} {sys.argv[1:]}")
'''

SERVE = r'''#!/usr/bin/python3
import http.server, os, sys
print(f"serve argv={sys.argv[1:]}", flush=True)
MODEL = open("/opt/ml/model/model.txt").read().strip()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        out = "".join(f"{MODEL}:{line.upper()}:{os.path.exists('/.dockerenv')}\n" for line in body.splitlines())
        data = out.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
'''


def _docker_client():
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        client.images.get(BASE_IMAGE)
        return client
    except Exception as exc:  # noqa: BLE001 - any reason the engine or the base image is not there
        unavailable(f"no Docker engine with {BASE_IMAGE} is reachable: {exc}")


@pytest.fixture(scope="module")
def engine():
    return _docker_client()


def _image(engine, tag: str, programs: dict[str, str], dockerfile_tail: str = ""):
    """Builds ``tag`` on the base image with ``programs`` (name → text) on its PATH; yields it, then removes it."""
    context = io.BytesIO()
    dockerfile = f"FROM {BASE_IMAGE}\nCOPY {' '.join(programs)} /usr/local/bin/\n{dockerfile_tail}"
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in (("Dockerfile", dockerfile), *programs.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    engine.images.build(fileobj=context, custom_context=True, tag=tag, labels=TEST_LABEL, rm=True)
    yield tag
    engine.images.remove(tag, force=True)


@pytest.fixture(scope="module")
def byo_image(engine):
    """A BYO image: ``train`` and ``serve`` on its PATH, no ENTRYPOINT (SageMaker passes the word)."""
    yield from _image(engine, BYO_IMAGE, {"train": TRAIN, "serve": SERVE, "process": PROCESS}, "WORKDIR /srv\n")


@pytest.fixture(scope="module")
def docker_emulator(tmp_path_factory, byo_image):
    from smlocal.server import Emulator

    with Emulator(load_settings(data_dir=tmp_path_factory.mktemp("smlocal-docker"), port=0, backend="docker")) as emu:
        yield emu


@pytest.fixture
def dsm(docker_emulator):
    return docker_emulator.client("sagemaker")


@pytest.fixture
def ds3(docker_emulator):
    return docker_emulator.client("s3")


@pytest.fixture
def dbucket(ds3):
    name = f"docker-{uuid.uuid4().hex[:12]}"
    ds3.create_bucket(Bucket=name)
    ds3.put_object(Bucket=name, Key="train/data.csv", Body=b"1,2\n3,4\n5,6\n")
    return name


def _labelled(engine, emulator) -> list:
    from smlocal.runtime.backends.docker import SERVER_LABEL, server_id

    label = f"{SERVER_LABEL}={server_id(emulator.settings.data_dir)}"
    # ignore_removed: a container removed between the engine's listing and its inspection is gone
    return engine.containers.list(all=True, filters={"label": label}, ignore_removed=True) + \
        engine.networks.list(filters={"label": label})


def _running(engine, emulator) -> list:
    from smlocal.runtime.backends.docker import SERVER_LABEL, server_id

    label = f"{SERVER_LABEL}={server_id(emulator.settings.data_dir)}"
    return engine.containers.list(filters={"label": label}, ignore_removed=True)


def _training(name: str, bucket: str, image: str, hyperparameters: dict | None = None, **extra) -> dict:
    request = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "HyperParameters": {"mode": "plain", **(hyperparameters or {})},
        "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/train", "S3DataDistributionType": "FullyReplicated"}}}],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    request.update(extra)
    return request


def _model_files(s3, bucket: str, job: str) -> dict[str, bytes]:
    body = s3.get_object(Bucket=bucket, Key=f"output/{job}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _logs(emulator, group: str, prefix: str) -> list[str]:
    logs = emulator.client("logs")
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=prefix)["logStreams"]
    return [e["message"] for s in streams
            for e in logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"])["events"]]


def test_byo_training_runs_in_a_container_of_the_image(dsm, ds3, dbucket, docker_emulator, engine):
    name = f"byo-{uuid.uuid4().hex[:8]}"
    dsm.create_training_job(**_training(name, dbucket, BYO_IMAGE, Environment={"MY_SETTING": "from-the-request"}))
    job = wait_for(dsm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    model = json.loads(_model_files(ds3, dbucket, name)["model.txt"])
    assert model["dockerenv"] is True and model["rows"] == 3 and model["argv"] == []  # `train` itself ran (no ENTRYPOINT)
    assert model["hostname"] == "algo-1" and model["python"] == "/usr/bin/python3"
    assert model["job"] == name and model["custom"] == "from-the-request"  # the contract's environment
    assert "/work" not in (model["path"] or "") and "127.0.0.1" not in model["endpoint"]  # nothing of the host
    lines = _logs(docker_emulator, "/aws/sagemaker/TrainingJobs", name)
    assert any("dockerenv=True" in line for line in lines) and any("wrote the model" in line for line in lines)
    assert _labelled(engine, docker_emulator) == []


def test_failure_file_and_exit_code_become_the_reason(dsm, dbucket, docker_emulator, engine):
    name = f"byo-fail-{uuid.uuid4().hex[:8]}"
    dsm.create_training_job(**_training(name, dbucket, BYO_IMAGE, {"mode": "fail"}))
    job = wait_for(dsm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"] == "ValueError: the BYO trainer failed on purpose"
    assert _labelled(engine, docker_emulator) == []


def test_a_missing_image_fails_the_job_with_the_build_hint(dsm, dbucket, engine):
    name = f"missing-{uuid.uuid4().hex[:8]}"
    dsm.create_training_job(**_training(name, dbucket, "smlocal-test/not-there:1"))
    job = wait_for(dsm, name)
    assert job["TrainingJobStatus"] == "Failed"
    assert "'smlocal-test/not-there:1' is not in the local Docker engine" in job["FailureReason"]
    from smlocal.runtime import image_catalog

    sklearn = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    if not engine.images.list(name=image_catalog.local_tag(sklearn)):  # smlocal's stand-in not built
        name = f"missing-{uuid.uuid4().hex[:8]}"
        dsm.create_training_job(**_training(name, dbucket, sklearn, {
            "sagemaker_program": '"train.py"', "sagemaker_submit_directory": f'"s3://{dbucket}/code.tar.gz"'}))
        job = wait_for(dsm, name)
        assert job["TrainingJobStatus"] == "Failed"
        assert job["FailureReason"] == image_catalog.missing_image_reason(sklearn)
        assert "smlocal images build" in job["FailureReason"]


def test_the_gateway_for_containers_wants_signatures(dsm, ds3, dbucket, docker_emulator):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    from smlocal.auth import CLIENT_ACCESS_KEY, client_secret_key

    endpoint = docker_emulator.container_endpoint
    assert endpoint and "127.0.0.1" not in endpoint
    key, secret = docker_emulator.container_credentials
    signed = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                          aws_secret_access_key=secret)
    assert dbucket in [b["Name"] for b in signed.list_buckets()["Buckets"]]
    host_pair = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=CLIENT_ACCESS_KEY,
                             aws_secret_access_key=client_secret_key())
    with pytest.raises(Exception) as refused:  # smlocal's own pair is for the host, not for containers
        host_pair.list_buckets()
    assert "InvalidAccessKeyId" in str(refused.value) or "AccessDenied" in str(refused.value)
    unsigned = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                            config=Config(signature_version=UNSIGNED))
    with pytest.raises(Exception) as refused:
        unsigned.list_buckets()
    assert "AccessDenied" in str(refused.value)
    name = f"byo-gw-{uuid.uuid4().hex[:8]}"  # and from inside a job: reachable, unsigned refused
    dsm.create_training_job(**_training(name, dbucket, BYO_IMAGE, {"mode": "gateway"}))
    job = wait_for(dsm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _model_files(ds3, dbucket, name)["gateway.txt"] == b"403"


def test_network_isolation_reaches_nothing(dsm, ds3, dbucket, docker_emulator):
    name = f"byo-iso-{uuid.uuid4().hex[:8]}"
    gateway = docker_emulator.container_endpoint.removeprefix("http://")
    dsm.create_training_job(**_training(name, dbucket, BYO_IMAGE, {"mode": "isolated", "gateway": gateway},
                                        EnableNetworkIsolation=True))
    job = wait_for(dsm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    outcome, address = _model_files(ds3, dbucket, name)["isolated.txt"].decode().splitlines()
    assert outcome.startswith("unreachable") and address == "127.0.0.1"  # algo-1 resolves (--add-host)


def test_two_hosts_exchange_a_message_by_host_name(dsm, ds3, dbucket, docker_emulator, engine):
    name = f"byo-2h-{uuid.uuid4().hex[:8]}"
    request = _training(name, dbucket, BYO_IMAGE, {"mode": "exchange"})
    request["ResourceConfig"]["InstanceCount"] = 2
    dsm.create_training_job(**request)
    job = wait_for(dsm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _model_files(ds3, dbucket, name)["received.txt"] == b"hello from algo-2"
    lines = _logs(docker_emulator, "/aws/sagemaker/TrainingJobs", name)
    assert any("algo-1 answered: ack from algo-1" in line for line in lines)
    assert _labelled(engine, docker_emulator) == []  # containers and the job's network are gone


def test_stop_and_max_runtime_end_a_container_job(dsm, dbucket, docker_emulator, engine):
    stopped = f"byo-stop-{uuid.uuid4().hex[:8]}"
    dsm.create_training_job(**_training(stopped, dbucket, BYO_IMAGE, {"mode": "sleep"}))
    limited = f"byo-max-{uuid.uuid4().hex[:8]}"
    dsm.create_training_job(**_training(limited, dbucket, BYO_IMAGE, {"mode": "sleep"},
                                        StoppingCondition={"MaxRuntimeInSeconds": 3}))
    deadline = time.time() + 60
    while not any("sleeping" in line for line in _logs(docker_emulator, "/aws/sagemaker/TrainingJobs", stopped)):
        assert time.time() < deadline
        time.sleep(0.2)
    began = time.time()
    dsm.stop_training_job(TrainingJobName=stopped)
    job = wait_for(dsm, stopped)
    assert job["TrainingJobStatus"] == "Stopped" and job["SecondaryStatus"] == "Stopped"
    assert time.time() - began < 30
    job = wait_for(dsm, limited)
    assert job["TrainingJobStatus"] == "Stopped" and job["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert _labelled(engine, docker_emulator) == []


def test_processing_with_a_container_entrypoint(dsm, ds3, dbucket, docker_emulator):
    name = f"byo-proc-{uuid.uuid4().hex[:8]}"
    dsm.create_processing_job(
        ProcessingJobName=name, RoleArn=ROLE,
        AppSpecification={"ImageUri": BYO_IMAGE, "ContainerEntrypoint": ["python3", "/usr/local/bin/process"],
                          "ContainerArguments": ["--flag", "1"]},
        ProcessingInputs=[{"InputName": "data", "S3Input": {
            "S3Uri": f"s3://{dbucket}/train", "LocalPath": "/opt/ml/processing/input/data", "S3DataType": "S3Prefix",
            "S3InputMode": "File"}}],
        ProcessingOutputConfig={"Outputs": [{"OutputName": "out", "S3Output": {
            "S3Uri": f"s3://{dbucket}/processed", "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}}]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 5}},
        StoppingCondition={"MaxRuntimeInSeconds": 300})
    deadline = time.time() + 120
    while (job := dsm.describe_processing_job(ProcessingJobName=name))["ProcessingJobStatus"] == "InProgress":
        assert time.time() < deadline
        time.sleep(0.2)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    result = ds3.get_object(Bucket=dbucket, Key="processed/result.txt")["Body"].read().decode()
    assert result == f"3 True {name} /srv ['--flag', '1']"  # the image's own WORKDIR


def _model(dsm, ds3, bucket: str, text: str) -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.txt")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text.encode()))
    ds3.put_object(Bucket=bucket, Key=f"models/{text}.tar.gz", Body=buf.getvalue())
    name = f"byo-model-{uuid.uuid4().hex[:8]}"
    dsm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": BYO_IMAGE, "ModelDataUrl": f"s3://{bucket}/models/{text}.tar.gz"})
    return name


def test_endpoints_answer_from_serving_containers(dsm, ds3, dbucket, docker_emulator, engine):
    runtime = docker_emulator.client("sagemaker-runtime")
    endpoints = []
    for text in ("alpha", "beta"):  # two endpoints at once
        model = _model(dsm, ds3, dbucket, text)
        config = f"{model}-config"
        dsm.create_endpoint_config(EndpointConfigName=config, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
        endpoints.append((text, f"{model}-ep"))
        dsm.create_endpoint(EndpointName=endpoints[-1][1], EndpointConfigName=config)
    for text, endpoint in endpoints:
        dsm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    for text, endpoint in endpoints:
        answer = runtime.invoke_endpoint(EndpointName=endpoint, Body=b"ab\ncd", ContentType="text/csv")
        assert answer["Body"].read() == f"{text}:AB:True\n{text}:CD:True\n".encode()
    assert len(_running(engine, docker_emulator)) >= 2  # this server's serving containers (not another worker's)
    for _, endpoint in endpoints:
        dsm.delete_endpoint(EndpointName=endpoint)
    deadline = time.time() + 60
    while _labelled(engine, docker_emulator):
        assert time.time() < deadline
        time.sleep(0.2)


def test_batch_transform_through_a_serving_container(dsm, ds3, dbucket, docker_emulator, engine):
    model = _model(dsm, ds3, dbucket, "gamma")
    ds3.put_object(Bucket=dbucket, Key="batch/in.csv", Body=b"x\ny\n")
    name = f"byo-tf-{uuid.uuid4().hex[:8]}"
    dsm.create_transform_job(
        TransformJobName=name, ModelName=model,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{dbucket}/batch"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://{dbucket}/batch-out", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
    deadline = time.time() + 120
    while (job := dsm.describe_transform_job(TransformJobName=name))["TransformJobStatus"] == "InProgress":
        assert time.time() < deadline
        time.sleep(0.2)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    out = ds3.get_object(Bucket=dbucket, Key="batch-out/in.csv.out")["Body"].read()
    assert out == b"gamma:X:True\ngamma:Y:True\n"
    assert _labelled(engine, docker_emulator) == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _up(data_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "SMLOCAL_RUNTIME_DIR": str(data_dir.parent / "run")}
    proc = subprocess.Popen([sys.executable, "-m", "smlocal.cli", "up", "--backend", "docker", "--data-dir",
                             str(data_dir), "--port", str(port), "--s3", "durable"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    for line in proc.stdout:
        if "listening on" in line:
            return proc
        assert time.time() < deadline and proc.poll() is None, line
    raise AssertionError("smlocal up did not start")


def test_a_restarted_server_removes_the_containers_of_a_killed_one(tmp_path, engine, byo_image):
    import boto3

    from smlocal.auth import CLIENT_ACCESS_KEY, client_secret_key
    from smlocal.runtime.backends.docker import SERVER_LABEL, server_id

    data_dir, port = tmp_path / "data", _free_port()
    label = f"{SERVER_LABEL}={server_id(data_dir)}"

    def client(service):
        return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                            aws_access_key_id=CLIENT_ACCESS_KEY, aws_secret_access_key=client_secret_key())

    proc = _up(data_dir, port)
    try:
        s3, sm = client("s3"), client("sagemaker")
        s3.create_bucket(Bucket="killed-server")
        s3.put_object(Bucket="killed-server", Key="train/data.csv", Body=b"1\n")
        sm.create_training_job(**_training("left-behind", "killed-server", BYO_IMAGE, {"mode": "sleep"}))
        deadline = time.time() + 60
        while not engine.containers.list(filters={"label": label}, ignore_removed=True):
            assert time.time() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert engine.containers.list(filters={"label": label}, ignore_removed=True)  # the dead server's job still runs
    proc = _up(data_dir, port)
    try:
        assert engine.containers.list(all=True, filters={"label": label}, ignore_removed=True) == []
        job = client("sagemaker").describe_training_job(TrainingJobName="left-behind")
        assert job["TrainingJobStatus"] == "Failed"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


SDK_TRAIN = r'''
import argparse, glob, os, sys
import joblib, pandas as pd
from sklearn.linear_model import LogisticRegression

parser = argparse.ArgumentParser()
parser.add_argument("-C", type=float, default=1.0)
args = parser.parse_args()
frame = pd.concat(pd.read_csv(f, header=None) for f in glob.glob(os.environ["SM_CHANNEL_TRAIN"] + "/*.csv"))
model = LogisticRegression(C=args.C, max_iter=500).fit(frame.iloc[:, 1:], frame.iloc[:, 0])
print(f"hello from train.py: C={args.C} dockerenv={os.path.exists('/.dockerenv')} python={sys.executable}")
joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
'''


@pytest.fixture(scope="module")
def docker_client_env(docker_emulator):
    from conftest import point_environment_at

    from smlocal import compat

    patch = pytest.MonkeyPatch()
    point_environment_at(patch, docker_emulator.client_env())
    compat.install()
    yield docker_emulator.client_env()
    patch.undo()


def test_sdk_sklearn_estimator_runs_in_smlocal_sklearn_image(docker_client_env, docker_emulator, engine, tmp_path,
                                                             capsys):
    import boto3
    import joblib
    import pandas as pd
    import sagemaker
    from sagemaker.sklearn import SKLearn
    from sklearn.datasets import load_iris

    from smlocal.runtime import image_catalog

    uri = sagemaker.image_uris.retrieve("sklearn", "us-east-1", version="1.2-1", instance_type="ml.m5.large")
    if not engine.images.list(name=image_catalog.local_tag(uri)):
        unavailable(f"smlocal's scikit-learn image is not built ({image_catalog.missing_image_reason(uri)})")
    iris = load_iris(as_frame=True)
    (tmp_path / "iris.csv").write_text(pd.concat([iris.target, iris.data], axis=1).to_csv(header=False, index=False))
    session = sagemaker.Session()
    data = session.upload_data(str(tmp_path / "iris.csv"), bucket=session.default_bucket(), key_prefix="docker/iris")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(SDK_TRAIN)
    estimator = SKLearn(entry_point="train.py", source_dir=str(tmp_path / "src"), framework_version="1.2-1",
                        instance_type="ml.m5.large", instance_count=1, role=sagemaker.get_execution_role(),
                        sagemaker_session=session, hyperparameters={"C": 0.5})
    estimator.fit({"train": data}, wait=True, logs=True)
    out = capsys.readouterr().out
    assert "hello from train.py: C=0.5 dockerenv=True" in out
    assert f"python={sys.executable}" not in out  # the image's own interpreter, not smlocal's
    assert estimator.latest_training_job.describe()["TrainingJobStatus"] == "Completed"
    bucket, key = estimator.model_data[5:].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        assert joblib.load(archive.extractfile("model.joblib")).C == 0.5
    assert _labelled(engine, docker_emulator) == []


@pytest.fixture(scope="module")
def framework_images(engine, tmp_path_factory):
    from docker_images import current_images

    return current_images(engine, tmp_path_factory)


def test_builtin_xgboost_follows_the_version_the_jobs_image_names(dsm, ds3, dbucket, framework_images):
    """smlocal's XGBoost image stands in for every version: a 1.0-1 job gets 1.0-1's artefact (a
    pickled Booster, as the process backend writes it) and that version's serving, which scores
    LIBSVM rows with one index past the model's features (the abalone batch data)."""
    import sagemaker

    uri = sagemaker.image_uris.retrieve("xgboost", "us-east-1", version="1.0-1", py_version="py3",
                                        instance_type="ml.m5.xlarge")
    rows = "".join(f"{2 * x + 1},0,{x}\n" for x in range(60))  # features f0 (constant), f1
    ds3.put_object(Bucket=dbucket, Key="xgb/train/train.csv", Body=rows.encode())
    name = f"xgb-10-{uuid.uuid4().hex[:8]}"
    request = _training(name, dbucket, uri, {"num_round": "10", "objective": "reg:squarederror"})
    request["HyperParameters"].pop("mode")
    request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{dbucket}/xgb/train"
    request["InputDataConfig"][0]["ContentType"] = "text/csv"
    dsm.create_training_job(**request)
    job = wait_for(dsm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    artefact = _model_files(ds3, dbucket, name)["xgboost-model"]
    assert artefact[:1] == b"\x80"  # a pickle (protocol 2+), not save_model's UBJSON

    model = f"xgb-10-model-{uuid.uuid4().hex[:8]}"
    dsm.create_model(ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={
        "Image": uri, "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"]})
    ds3.put_object(Bucket=dbucket, Key="xgb/batch/rows.libsvm", Body=b"1:10 2:7\n1:30 2:7\n")  # 3 columns, 2 features
    transform = f"xgb-10-tf-{uuid.uuid4().hex[:8]}"
    dsm.create_transform_job(
        TransformJobName=transform, ModelName=model,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                        "S3Uri": f"s3://{dbucket}/xgb/batch"}}},
        TransformOutput={"S3OutputPath": f"s3://{dbucket}/xgb/out"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1})
    deadline = time.time() + 180
    while (described := dsm.describe_transform_job(TransformJobName=transform))["TransformJobStatus"] == "InProgress":
        assert time.time() < deadline
        time.sleep(0.3)
    assert described["TransformJobStatus"] == "Completed", described.get("FailureReason")
    out = ds3.get_object(Bucket=dbucket, Key="xgb/out/rows.libsvm.out")["Body"].read().decode().split()
    assert len(out) == 2 and abs(float(out[0]) - 21) < 2 and abs(float(out[1]) - 61) < 2


# ---- what a job may do to the host and to other jobs

SITE_PACKAGES = next(p for p in sys.path if p.endswith("site-packages") and os.path.isdir(os.path.join(p, "boto3")))

LIST_BUCKETS = """
import sys, boto3
client = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1", aws_access_key_id=sys.argv[2],
                      aws_secret_access_key=sys.argv[3])
try:
    print("buckets:", len(client.list_buckets()["Buckets"]))
except Exception as exc:
    print("refused:", exc)
"""


def _on_docker0(engine, *args) -> str:
    """Runs LIST_BUCKETS in a container of the default bridge that is not a job of smlocal's (this
    machine's boto3, mounted read-only) and returns what it printed."""
    output = engine.containers.run(BYO_IMAGE, ["/usr/bin/python3", "-c", LIST_BUCKETS, *args], remove=True,
                                   labels=TEST_LABEL, network_mode="bridge", environment={"PYTHONPATH": "/site"},
                                   volumes={SITE_PACKAGES: {"bind": "/site", "mode": "ro"}})
    return output.decode()


def test_containers_sign_with_the_jobs_own_key_pair_not_smlocals(dsm, ds3, dbucket, docker_emulator, engine):
    from smlocal.auth import CLIENT_ACCESS_KEY, client_secret_key

    name = f"byo-keys-{uuid.uuid4().hex[:8]}"
    dsm.create_training_job(**_training(name, dbucket, BYO_IMAGE))
    job = wait_for(dsm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    model = json.loads(_model_files(ds3, dbucket, name)["model.txt"])
    assert model["key"] != CLIENT_ACCESS_KEY and (model["key"], model["secret"]) == docker_emulator.container_credentials
    endpoint = docker_emulator.container_endpoint
    assert _on_docker0(engine, endpoint, CLIENT_ACCESS_KEY, client_secret_key()).startswith("refused:")
    assert _on_docker0(engine, endpoint, model["key"], model["secret"]).startswith("buckets:")


def test_a_training_job_cannot_reach_an_endpoint_container(dsm, ds3, dbucket, docker_emulator, engine):
    from smlocal.runtime.backends.docker import JOB_LABEL

    model = _model(dsm, ds3, dbucket, "delta")
    endpoint = f"{model}-ep"
    dsm.create_endpoint_config(EndpointConfigName=f"{model}-config", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    dsm.create_endpoint(EndpointName=endpoint, EndpointConfigName=f"{model}-config")
    try:
        dsm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        serving = [c for c in _running(engine, docker_emulator) if endpoint in c.labels.get(JOB_LABEL, "")]
        assert len(serving) == 1
        address = next(iter(serving[0].attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
        name = f"byo-probe-{uuid.uuid4().hex[:8]}"
        dsm.create_training_job(**_training(name, dbucket, BYO_IMAGE, {"mode": "probe", "gateway": f"{address}:8080"}))
        job = wait_for(dsm, name)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        outcome = _model_files(ds3, dbucket, name)["isolated.txt"].decode().splitlines()[0]
        assert outcome.startswith("unreachable"), outcome
    finally:
        dsm.delete_endpoint(EndpointName=endpoint)


def test_a_container_that_cannot_start_fails_every_host_at_once(dsm, dbucket, docker_emulator, engine):
    name = f"byo-noexe-{uuid.uuid4().hex[:8]}"
    request = _training(name, dbucket, BYO_IMAGE)
    request["AlgorithmSpecification"]["ContainerEntrypoint"] = ["/no/such/program"]
    request["ResourceConfig"]["InstanceCount"] = 2
    started = time.time()
    dsm.create_training_job(**request)
    job = wait_for(dsm, name)
    assert job["TrainingJobStatus"] == "Failed" and time.time() - started < 60
    assert job["FailureReason"].startswith("ClientError: the container could not start: ")
    assert "/no/such/program" in job["FailureReason"]
    assert _labelled(engine, docker_emulator) == []


SETUID_JOB = ("cp /bin/true /opt/ml/output/suid && chmod 6755 /opt/ml/output/suid && "
              "mkdir -p /opt/ml/model/private/deep && echo x > /opt/ml/model/private/deep/file && "
              "chown -R 12345:12345 /opt/ml/model/private && chmod 700 /opt/ml/model/private && "
              "grep -E 'CapEff|NoNewPrivs' /proc/self/status > /opt/ml/output/status")


def test_a_job_leaves_no_root_or_setuid_file_in_its_host_folder(engine, byo_image, tmp_path):
    import stat

    from smlocal.runtime.backends.base import RunControl, RunSpec
    from smlocal.runtime.backends.docker import DockerBackend

    folder = tmp_path / "algo-1"
    (folder / "output").mkdir(parents=True)
    backend = DockerBackend(f"test-{uuid.uuid4().hex[:8]}")
    lines: list[str] = []
    result = backend.run(RunSpec(command=(), env={}, opt_ml=folder, image=BYO_IMAGE, entrypoint=("/bin/sh", "-c"),
                                 arguments=(SETUID_JOB,), job=f"training/setuid-{uuid.uuid4().hex[:6]}"),
                         lines.append, RunControl())
    assert result.exit_code == 0 and result.failure is None, lines
    paths = [folder, *folder.rglob("*")]
    assert folder / "model" / "private" / "deep" / "file" in paths
    for path in paths:
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid()), path
        assert not info.st_mode & (stat.S_ISUID | stat.S_ISGID), path
    status = dict(line.split(":\t") for line in (folder / "output" / "status").read_text().splitlines())
    capabilities = int(status["CapEff"], 16)
    assert status["NoNewPrivs"] == "1" and not capabilities & (1 << 13) and not capabilities & (1 << 27)  # NET_RAW, MKNOD
    assert engine.containers.list(all=True, filters={"label": f"smlocal.server={backend.server}"}) == []


def test_start_up_removes_what_dead_servers_of_other_data_dirs_left(engine, byo_image):
    from smlocal.runtime.backends.docker import OWNER_LABEL, SERVER_LABEL, DockerBackend, owner_id

    finished = subprocess.Popen(["true"])
    finished.wait()
    dead, live = owner_id(finished.pid), owner_id(os.getpid())
    created = []
    try:
        for owner in (dead, live):
            labels = {**TEST_LABEL, SERVER_LABEL: f"other-{uuid.uuid4().hex[:8]}", OWNER_LABEL: owner}
            created.append(engine.containers.create(BYO_IMAGE, ["sleep", "300"], labels=labels))
            created.append(engine.networks.create(f"smlocal-test-{uuid.uuid4().hex[:8]}", labels=labels))
        DockerBackend(f"test-{uuid.uuid4().hex[:8]}").remove_leftovers()
        left = {c.id for c in engine.containers.list(all=True, filters={"label": OWNER_LABEL})} | \
            {n.id for n in engine.networks.list(filters={"label": OWNER_LABEL})}
        assert created[0].id not in left and created[1].id not in left  # the dead server's: removed
        assert created[2].id in left and created[3].id in left  # a live server's: kept
    finally:
        for thing in created:
            try:
                thing.remove(force=True) if hasattr(thing, "exec_run") else thing.remove()
            except Exception:  # noqa: BLE001 - already removed
                pass


def test_abalone_takes_its_fail_branch_with_every_job_in_a_container(docker_emulator, framework_images, engine,
                                                                      tmp_path):
    """`smlocal run abalone --param MseThreshold=3.0` against a Docker-backend server: the Fail step ends
    the execution with its message, and every job step started a container of this server (the passing
    branch runs through compose in test_compose.py)."""
    import datetime

    from smlocal.runtime.backends.docker import SERVER_LABEL, server_id

    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_", "SAGEMAKER_"))}
    env["SMLOCAL_ENDPOINT"] = docker_emulator.endpoint
    done = subprocess.run([sys.executable, "-m", "smlocal.cli", "run", "abalone", "--param", "MseThreshold=3.0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode != 0, done.stdout[-4000:]
    assert "Execution failed due to MSE > 3.0" in done.stdout, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Pipeline execution Failed" in done.stdout
    until = datetime.datetime.now(datetime.timezone.utc)
    label = f"{SERVER_LABEL}={server_id(docker_emulator.settings.data_dir)}"
    started = [event["Actor"]["Attributes"].get("image") for event in engine.events(
        since=since, until=until, decode=True, filters={"type": "container", "event": "start", "label": label})]
    # AbaloneProcess (scikit-learn), AbaloneTrain (XGBoost), AbaloneEval (XGBoost): one container each
    assert len(started) >= 3, started
    assert any("scikit-learn" in image for image in started) and any("xgboost" in image for image in started), started
