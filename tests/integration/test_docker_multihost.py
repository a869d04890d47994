"""Multi-host jobs on the Docker backend: hosts reach each other by name; isolation keeps the peers only.

Each job runs a BYO image built from ``smlocal/base:bookworm`` whose ``train`` program listens on
port 5555 and sends every other host ``hello from <me>`` by host name, then (with a gateway given)
tries an HTTP request to smlocal's gateway for containers and to the host's own address on the job's
network. Without an engine they skip with the reason; under ``SMLOCAL_CI=1`` they fail instead.
"""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import pytest

from smlocal.config import load_settings
from conftest import ROLE, wait_for
from test_docker_backend import _image, engine  # noqa: F401 - the shared engine fixture (skips without one)

pytestmark = pytest.mark.docker

IMAGE = f"smlocal-test/mesh:{uuid.uuid4().hex[:8]}"
TRAIN = r'''#!/usr/bin/python3
import json, os, socket, threading, time, urllib.request
hp = json.load(open("/opt/ml/input/config/hyperparameters.json"))
rc = json.load(open("/opt/ml/input/config/resourceconfig.json"))
me, peers = rc["current_host"], [h for h in rc["hosts"] if h != rc["current_host"]]
received = []
server = socket.create_server(("0.0.0.0", 5555))
server.settimeout(60)

def serve():
    for _ in peers:
        conn, _ = server.accept()
        received.append(conn.recv(1024).decode())
        conn.sendall(f"ack from {me}".encode())
        conn.close()

listener = threading.Thread(target=serve)
listener.start()
answers = {}
for peer in peers:
    for _ in range(600):
        try:
            conn = socket.create_connection((peer, 5555), timeout=2)
            break
        except OSError:
            time.sleep(0.1)
    conn.sendall(f"hello from {me}".encode())
    answers[peer] = conn.recv(1024).decode()
    conn.close()
listener.join()
probes = {}
if hp.get("gateway"):
    own = socket.gethostbyname(me)
    host_on_network = own.rsplit(".", 1)[0] + ".1"  # the engine's bridge address: this machine
    port = hp["gateway"].rsplit(":", 1)[1]
    for target in (hp["gateway"], f"{host_on_network}:{port}", f"127.0.0.1:{port}"):
        try:
            urllib.request.urlopen(f"http://{target}/", timeout=3)
            probes[target] = "answered"
        except urllib.error.HTTPError as exc:
            probes[target] = f"answered {exc.code}"
        except OSError as exc:
            probes[target] = f"unreachable: {exc}"
print(f"{me} received {sorted(received)} answers {answers}", flush=True)
os.makedirs("/opt/ml/model", exist_ok=True)
open(f"/opt/ml/model/{me}.json", "w").write(json.dumps({"received": sorted(received), "answers": answers,
                                                        "probes": probes, "address": socket.gethostbyname(me)}))
'''


@pytest.fixture(scope="module")
def mesh_image(engine):  # noqa: F811 - the imported fixture
    yield from _image(engine, IMAGE, {"train": TRAIN})


@pytest.fixture(scope="module")
def docker_emulator(tmp_path_factory, mesh_image):
    from smlocal.server import Emulator

    with Emulator(load_settings(data_dir=tmp_path_factory.mktemp("smlocal-mesh"), port=0, backend="docker")) as emu:
        yield emu


def _run(emulator, hosts: int, hyperparameters: dict | None = None, instance_type: str = "ml.m5.large",
         **extra) -> tuple[dict, dict[str, dict]]:
    sm, s3 = emulator.client("sagemaker"), emulator.client("s3")
    bucket, name = f"mesh-{uuid.uuid4().hex[:10]}", f"mesh-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    sm.create_training_job(
        TrainingJobName=name, RoleArn=ROLE, HyperParameters=hyperparameters or {},
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output"},
        ResourceConfig={"InstanceType": instance_type, "InstanceCount": hosts, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 300}, **extra)
    job = wait_for(sm, name, timeout=240)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    body = s3.get_object(Bucket=bucket, Key=f"output/{name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return job, {m.name.removesuffix(".json"): json.loads(tar.extractfile(m).read())
                     for m in tar.getmembers() if m.isfile()}


def _assert_mesh(seen: dict[str, dict], hosts: list[str]) -> None:
    assert sorted(seen) == hosts  # every host wrote its part of the model (merged into one archive)
    for host, part in seen.items():
        others = [h for h in hosts if h != host]
        assert part["received"] == sorted(f"hello from {h}" for h in others)
        assert part["answers"] == {h: f"ack from {h}" for h in others}
    assert len({part["address"] for part in seen.values()}) == len(hosts)  # each its own address


def test_three_hosts_reach_each_other_by_name(docker_emulator):
    _, seen = _run(docker_emulator, 3)
    _assert_mesh(seen, ["algo-1", "algo-2", "algo-3"])


def test_isolated_hosts_reach_each_other_but_not_the_gateway(docker_emulator):
    gateway = docker_emulator.container_endpoint.removeprefix("http://")
    _, seen = _run(docker_emulator, 2, {"gateway": gateway}, EnableNetworkIsolation=True)
    _assert_mesh(seen, ["algo-1", "algo-2"])
    for part in seen.values():
        assert len(part["probes"]) == 3
        for target, outcome in part["probes"].items():
            assert not outcome.startswith("answered"), (target, outcome)


def test_without_isolation_the_gateway_answers_the_hosts(docker_emulator):
    """The probe can tell: without isolation the same request reaches the gateway (unsigned: 403)."""
    gateway = docker_emulator.container_endpoint.removeprefix("http://")
    _, seen = _run(docker_emulator, 2, {"gateway": gateway})
    _assert_mesh(seen, ["algo-1", "algo-2"])
    assert all(part["probes"][gateway] == "answered 403" for part in seen.values())


def test_gpu_type_without_gpus_runs_the_containers_on_the_cpu_and_says_so(docker_emulator):
    from smlocal.runtime import gpus

    if gpus.machine_gpus():
        pytest.skip("this machine has GPUs: the containers get them as device requests instead")
    job, seen = _run(docker_emulator, 2, instance_type="ml.g6.12xlarge")
    _assert_mesh(seen, ["algo-1", "algo-2"])
    logs, group = docker_emulator.client("logs"), "/aws/sagemaker/TrainingJobs"
    stream = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=job["TrainingJobName"] + "/")
    events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreams"][0]["logStreamName"],
                                 startFromHead=True)["events"]
    assert events[0]["message"] == (
        "smlocal: ml.g6.12xlarge has 4 GPUs; this machine has none: running on the CPU (SM_NUM_GPUS=0)")
