"""`smlocal up --data-dir D` keeps S3, the execution role and CloudWatch Logs across restarts (kill -9 and clean).

The server runs as users run it (a real `smlocal up` subprocess); clients use the environment it
prints, as `export` lines, like a user pasting them.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from conftest import script_job, unique, upload_sourcedir, wait_for

pytestmark = pytest.mark.slow

SMLOCAL = [sys.executable, "-m", "smlocal.cli"]
GROUP = "/aws/sagemaker/TrainingJobs"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_", "SAGEMAKER_"))
           and k != "PYTHONPATH"}
    env["SMLOCAL_AUTODETECT"] = "0"
    return env


class Server:
    """One `smlocal up` process and the client environment it printed."""

    def __init__(self, data: Path, port: int = 0):
        self.proc = subprocess.Popen([*SMLOCAL, "up", "--port", str(port), "--data-dir", str(data)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env())
        self.env: dict[str, str] = {}
        seen = []
        deadline = time.time() + 60
        for line in self.proc.stdout:
            seen.append(line)
            if line.strip().startswith("export ") and "=" in line:
                key, value = line.strip()[len("export "):].split("=", 1)
                self.env[key] = value.split()[0]
            if line.startswith("or run a command") or time.time() > deadline:
                break
        assert "AWS_ENDPOINT_URL" in self.env and "AWS_ENDPOINT_URL_S3" not in self.env, "".join(seen)
        self.endpoint = self.env["AWS_ENDPOINT_URL"]  # S3 too: the gateway forwards it to the durable store
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])

    def stop(self, sig: int) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)


def _model_bytes(s3, job: dict) -> bytes:
    bucket, key = job["ModelArtifacts"]["S3ModelArtifacts"][5:].split("/", 1)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _messages(logs, job_name: str) -> list[str]:
    streams = logs.describe_log_streams(logGroupName=GROUP, logStreamNamePrefix=f"{job_name}/")["logStreams"]
    return [event["message"] for stream in streams
            for event in logs.get_log_events(logGroupName=GROUP, logStreamName=stream["logStreamName"],
                                             startFromHead=True)["events"]]


def _train(server: Server, bucket: str, body: str, wait: bool = True) -> tuple[str, dict | None]:
    s3, sm = server.client("s3"), server.client("sagemaker")
    code = upload_sourcedir(s3, bucket, {"train.py": body})
    name = unique("durable")
    sm.create_training_job(**script_job(name, bucket, code))
    return name, (wait_for(sm, name) if wait else None)


_COMPLETES = ("import os\nprint('durable-marker', flush=True)\n"
              "open(os.environ['SM_MODEL_DIR'] + '/model.bin', 'wb').write(os.urandom(4096))\n")
_SLEEPS = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"


def test_a_kill_9_loses_no_acknowledged_object_role_or_log(tmp_path):
    data = tmp_path / "data"
    server = Server(data)
    try:
        s3, sm, logs = server.client("s3"), server.client("sagemaker"), server.client("logs")
        s3.create_bucket(Bucket="durable-bucket")
        name, job = _train(server, "durable-bucket", _COMPLETES)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        model = _model_bytes(s3, job)
        big = os.urandom(9 * 1024 * 1024 + 7)
        (tmp_path / "big.bin").write_bytes(big)
        s3.upload_file(str(tmp_path / "big.bin"), "durable-bucket", "data/big.bin")  # multipart
        s3.put_object(Bucket="durable-bucket", Key="data/small.csv", Body=b"1,2,3\n")
        running, _ = _train(server, "durable-bucket", _SLEEPS, wait=False)
        deadline = time.time() + 60
        while "sleeping" not in _messages(logs, running):
            assert time.time() < deadline, "the sleeping job never started"
            time.sleep(0.2)
        assert "durable-marker" in _messages(logs, name)
        rclone = json.loads((data / "s3-store.json").read_text())["pid"]
        server.stop(signal.SIGKILL)
    finally:
        server.close()
    deadline = time.time() + 10
    while Path(f"/proc/{rclone}").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{rclone}").exists(), "the S3 store outlived the killed server"

    again = Server(data, server.port)
    try:
        s3, sm, logs, iam = (again.client(s) for s in ("s3", "sagemaker", "logs", "iam"))
        assert _model_bytes(s3, sm.describe_training_job(TrainingJobName=name)) == model
        assert hashlib.sha256(s3.get_object(Bucket="durable-bucket", Key="data/big.bin")["Body"].read()).digest() \
            == hashlib.sha256(big).digest()
        assert s3.get_object(Bucket="durable-bucket", Key="data/small.csv")["Body"].read() == b"1,2,3\n"
        assert iam.get_role(RoleName="SageMakerExecutionRole")["Role"]["Arn"].endswith(":role/SageMakerExecutionRole")
        assert "durable-marker" in _messages(logs, name)
        stopped = sm.describe_training_job(TrainingJobName=running)
        assert stopped["TrainingJobStatus"] == "Failed"
        assert "smlocal server stopped while this job was running" in stopped["FailureReason"]
        # new work lands in the same store, and the SDK's default bucket is created there
        out = subprocess.run([*SMLOCAL, "exec", "--", sys.executable, "-c",
                              "import sagemaker; print(sagemaker.Session().default_bucket())"],
                             env={**_clean_env(), "SMLOCAL_ENDPOINT": again.endpoint}, capture_output=True,
                             text=True, timeout=180)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[-1] == "sagemaker-us-east-1-123456789012"
        assert (data / "s3" / "sagemaker-us-east-1-123456789012").is_dir()
    finally:
        again.stop(signal.SIGTERM)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_clean_restart_keeps_everything(tmp_path, sig):
    data = tmp_path / "data"
    server = Server(data)
    try:
        s3 = server.client("s3")
        s3.create_bucket(Bucket="clean-bucket")
        s3.put_object(Bucket="clean-bucket", Key="k.txt", Body=b"kept")
        name, job = _train(server, "clean-bucket", _COMPLETES)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        model = _model_bytes(s3, job)
        server.stop(sig)
        assert server.proc.returncode in (0, 130)
    finally:
        server.close()
    again = Server(data, server.port)
    try:
        s3, sm, logs = again.client("s3"), again.client("sagemaker"), again.client("logs")
        assert s3.get_object(Bucket="clean-bucket", Key="k.txt")["Body"].read() == b"kept"
        assert _model_bytes(s3, sm.describe_training_job(TrainingJobName=name)) == model
        assert _messages(logs, name).count("durable-marker") == 1  # replayed once, not duplicated
        again.stop(signal.SIGTERM)
    finally:
        again.close()
    third = Server(data, server.port)  # a second replay is not doubled either
    try:
        assert _messages(third.client("logs"), name).count("durable-marker") == 1
    finally:
        third.stop(signal.SIGTERM)


def test_memory_mode_keeps_nothing(tmp_path):
    data = tmp_path / "data"
    env = {**_clean_env(), "SMLOCAL_S3": "memory"}
    proc = subprocess.Popen([*SMLOCAL, "up", "--port", "0", "--data-dir", str(data)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        first = proc.stdout.readline()
        assert "in memory" in first, first
        assert not (data / "s3").exists() and not (data / "s3-credentials.json").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path):
    """Two servers on one data dir would share one store: the second one's recovery would fail the first's jobs."""
    from smlocal.config import load_settings
    from smlocal.server import Emulator
    from smlocal.service.store import DataDirInUse

    with Emulator(load_settings(data_dir=tmp_path, port=0)) as first:
        with pytest.raises(DataDirInUse, match="in use by another smlocal"):
            Emulator(load_settings(data_dir=tmp_path, port=0)).start()
        assert first.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
        up = subprocess.run([sys.executable, "-m", "smlocal.cli", "up", "--port", "0", "--data-dir", str(tmp_path),
                             "--s3", "memory"], capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if not k.startswith("SMLOCAL_")})
        assert up.returncode == 1 and "in use by another smlocal" in up.stderr
    with Emulator(load_settings(data_dir=tmp_path, port=0)):  # released on stop
        pass
