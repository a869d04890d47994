"""Built-in XGBoost on several instances trains distributed, as AWS's container does, on both backends.

Real jobs against the emulator on the abalone data (label first, as the built-in algorithm reads CSV),
its training part split into several S3 objects: with ShardedByS3Key each host gets its deal of
them, with FullyReplicated all of them; every host joins one XGBoost cluster (the tracker on
algo-1) and trains the same rounds over its data; algo-1 alone writes the model, which predicts
a held-out part as well as a one-host model does (both RMSEs computed here). A host whose shard is
empty leaves the cluster as the container's does; a host that fails fails the job with its reason.
The process backend needs its job network (hosts in their own network namespaces); the Docker
backend runs smlocal's XGBoost image (skipped without an engine, failing under SMLOCAL_CI=1).
"""

from __future__ import annotations

import io
import random
import re
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import ROLE, wait_for

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
ABALONE = Path(__file__).resolve().parents[2] / "fixtures" / "abalone" / "data" / "abalone.csv"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
PARTS = 4  # S3 objects the training data is split into
HYPERPARAMETERS = {"num_round": "40", "objective": "reg:squarederror", "max_depth": "5", "eta": "0.2",
                   "tree_method": "hist"}
RMSE_TOLERANCE = 0.05  # relative to the one-host model's RMSE


def _abalone() -> tuple[list[list[float]], list[list[float]]]:
    """(training rows, held-out rows): label (rings) first, the sex one-hot, then the 7 measures."""
    rows = []
    for line in ABALONE.read_text().split():
        sex, *measures, rings = line.split(",")
        rows.append([float(rings), *(float(sex == s) for s in "MFI"), *map(float, measures)])
    random.Random(7).shuffle(rows)
    return rows[:3300], rows[3300:]


TRAIN, HELD_OUT = _abalone()


def _csv(rows: list[list[float]]) -> bytes:
    return "".join(",".join(f"{v:g}" for v in row) + "\n" for row in rows).encode()


class Cluster:
    """One emulator (process or Docker backend) and a bucket holding the abalone data."""

    def __init__(self, emulator, name: str):
        self.name = name
        self.sm, self.s3, self.logs = (emulator.client(c) for c in ("sagemaker", "s3", "logs"))
        self.bucket = f"dxgb-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=self.bucket)
        for part in range(PARTS):
            self.put(f"train/part-{part}.csv", _csv(TRAIN[part::PARTS]))
        self.put("single/all.csv", _csv(TRAIN))  # one object: a second host's shard is empty

    def put(self, key: str, body: bytes) -> str:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return f"s3://{self.bucket}/{key.rsplit('/', 1)[0]}"

    def train(self, count: int, distribution: str, prefix: str = "train") -> tuple[dict, list[str]]:
        name = f"dxgb-{count}-{uuid.uuid4().hex[:8]}"
        self.sm.create_training_job(
            TrainingJobName=name, RoleArn=ROLE, HyperParameters=HYPERPARAMETERS,
            AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            InputDataConfig=[{"ChannelName": "train", "ContentType": "text/csv", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": f"s3://{self.bucket}/{prefix}",
                "S3DataDistributionType": distribution}}}],
            OutputDataConfig={"S3OutputPath": f"s3://{self.bucket}/output"},
            ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": count, "VolumeSizeInGB": 5},
            StoppingCondition={"MaxRuntimeInSeconds": 300})
        job = wait_for(self.sm, name, timeout=300)
        return job, self.log_lines(name)

    def log_lines(self, name: str) -> list[str]:
        streams = self.logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")
        return [e["message"] for s in streams["logStreams"]
                for e in self.logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=s["logStreamName"],
                                                  startFromHead=True)["events"]]

    def model_files(self, job: dict) -> dict[str, bytes]:
        bucket, key = job["ModelArtifacts"]["S3ModelArtifacts"][5:].split("/", 1)
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as archive:
            return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}

    def rmse(self, job: dict) -> float:
        import xgboost as xgb

        files = self.model_files(job)
        assert list(files) == ["xgboost-model"], files  # one model, the master's
        booster = xgb.Booster()
        booster.load_model(bytearray(files["xgboost-model"]))
        held_out = np.array(HELD_OUT)
        predictions = booster.predict(xgb.DMatrix(held_out[:, 1:]))
        return float(np.sqrt(np.mean((predictions - held_out[:, 0]) ** 2)))


def _rows_per_host(lines: list[str]) -> list[int]:
    return sorted(int(m.group(1)) for line in lines if (m := re.search(r"Train matrix has (\d+) rows", line)))


def _ranks(lines: list[str]) -> list[tuple[str, str, str]]:
    """(host, port, rank) of every host's joining of a cluster."""
    return sorted(re.findall(r"(algo-\d) joined the XGBoost cluster of \d+ hosts on port (\d+) as rank (\d+)",
                             "\n".join(lines)))


# ---------------------------------------------------------------- the two backends
def _docker_emulator(tmp_path_factory):
    from docker_images import BASE_IMAGE, current_images, unavailable

    from smlocal.config import load_settings
    from smlocal.server import Emulator

    try:
        import docker

        engine = docker.from_env(timeout=120)
        engine.ping()
        engine.images.get(BASE_IMAGE)
    except Exception as exc:  # noqa: BLE001 - any reason the engine or the base image is not there
        unavailable(f"no Docker engine with {BASE_IMAGE} is reachable: {exc}")
    current_images(engine, tmp_path_factory, names=("xgboost",))
    return Emulator(load_settings(data_dir=tmp_path_factory.mktemp("smlocal-dxgb"), port=0, backend="docker"))


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def cluster(request, tmp_path_factory):
    if request.param == "process":
        yield Cluster(request.getfixturevalue("emulator"), "process")
        return
    with _docker_emulator(tmp_path_factory) as emulator:
        yield Cluster(emulator, "docker")


@pytest.fixture(scope="module")
def one_host(cluster):
    """The one-host model every cluster's model is compared with: (job, RMSE on the held-out rows)."""
    job, lines = cluster.train(1, "FullyReplicated")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert any("Single node training" in line for line in lines), lines
    return job, cluster.rmse(job)


# ---------------------------------------------------------------- tests
def test_sharded_hosts_train_one_model_as_good_as_one_host(cluster, one_host):
    job, lines = cluster.train(2, "ShardedByS3Key")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert any("Distributed node training with 2 hosts: ['algo-1', 'algo-2']" in line for line in lines), lines
    # each host trained on its deal of the 4 objects: 2 of them each, all rows between them
    expected = sorted(sum(len(TRAIN[p::PARTS]) for p in range(host, PARTS, 2)) for host in range(2))
    assert _rows_per_host(lines) == expected, lines
    # both hosts in both clusters (which hosts have data, then training), algo-1 the master, rank 0
    assert _ranks(lines) == [("algo-1", "9099", "0"), ("algo-1", "9100", "0"),
                             ("algo-2", "9099", "1"), ("algo-2", "9100", "1")], lines
    # the evaluation lines are the master's only (rank 0): one per round
    rounds = [line for line in lines if re.match(r"\[\d+\]#011train-rmse:", line)]
    assert len(rounds) == int(HYPERPARAMETERS["num_round"]), rounds
    assert [m["MetricName"] for m in job.get("FinalMetricDataList", [])] == ["train:rmse"]
    rmse, single = cluster.rmse(job), one_host[1]
    print(f"{cluster.name}: RMSE one host {single:.4f}, 2 hosts sharded {rmse:.4f}")
    assert abs(rmse - single) <= RMSE_TOLERANCE * single, (rmse, single)


def test_fully_replicated_hosts_each_train_on_all_the_data(cluster, one_host):
    job, lines = cluster.train(2, "FullyReplicated")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _rows_per_host(lines) == [len(TRAIN), len(TRAIN)], lines
    assert [rank for _, port, rank in _ranks(lines) if port == "9100"] == ["0", "1"], lines
    rmse, single = cluster.rmse(job), one_host[1]
    print(f"{cluster.name}: RMSE one host {single:.4f}, 2 hosts fully replicated {rmse:.4f}")
    assert abs(rmse - single) <= RMSE_TOLERANCE * single, (rmse, single)


def test_a_host_whose_shard_is_empty_leaves_the_cluster(cluster, one_host):
    """One object, two hosts: algo-2 has no data; as in the container it says so, tells the others,
    and leaves; algo-1 trains alone and the job completes with its model."""
    job, lines = cluster.train(2, "ShardedByS3Key", prefix="single")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    text = "\n".join(lines)
    assert "Host algo-2 does not have training data. Will broadcast to cluster" in text, lines
    assert "Host algo-2 not being used for distributed training." in text, lines
    assert _rows_per_host(lines) == [len(TRAIN)], lines
    assert _ranks(lines) == [("algo-1", "9099", "0"), ("algo-2", "9099", "1")], lines  # no second cluster
    assert abs(cluster.rmse(job) - one_host[1]) <= RMSE_TOLERANCE * one_host[1]


def test_a_failing_host_fails_the_job_with_its_reason(cluster):
    """algo-2's shard does not parse: the job fails with algo-2's failure, not algo-1's stop."""
    cluster.put("broken/part-0.csv", _csv(TRAIN[:500]))
    cluster.put("broken/part-1.csv", b"not,a,number\n1,2\n")
    job, lines = cluster.train(2, "ShardedByS3Key", prefix="broken")
    assert job["TrainingJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert reason.startswith("AlgorithmError: framework error:"), reason
    assert "could not convert string to float" in reason or "Loading csv data failed" in reason, reason
    # algo-1's shard loaded and it waited in the cluster for algo-2 until the job stopped it
    assert sum("Distributed node training with 2 hosts" in line for line in lines) == 1, lines
    print(f"{cluster.name}: FailureReason {reason[:200]!r}")
