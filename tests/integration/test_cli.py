"""The smlocal command as users run it: real subprocesses, real servers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import pytest

from conftest import script_job, unique, upload_sourcedir

SMLOCAL = [sys.executable, "-m", "smlocal.cli"]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_", "SAGEMAKER_"))
           and k != "PYTHONPATH"}
    env["SMLOCAL_AUTODETECT"] = "0"  # never borrow a developer's running `smlocal up`
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"smlocal up exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_smlocal/health", timeout=1) as resp:
                if b'"ok"' in resp.read():
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("smlocal up did not become healthy")


def test_exec_runs_unchanged_sdk_script(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(
        """
        import sagemaker
        session = sagemaker.Session()
        print("bucket", session.default_bucket())
        print("role", sagemaker.get_execution_role())
        raise SystemExit(7)
        """
    ))
    proc = subprocess.run([*SMLOCAL, "exec", "--", sys.executable, str(script)], capture_output=True, text=True,
                          env=_clean_env(), timeout=180)
    assert proc.returncode == 7, proc.stderr
    assert "bucket sagemaker-us-east-1-123456789012" in proc.stdout
    assert "role arn:aws:iam::123456789012:role/SageMakerExecutionRole" in proc.stdout


def test_exec_without_command_is_a_usage_error():
    proc = subprocess.run([*SMLOCAL, "exec"], capture_output=True, text=True, env=_clean_env(), timeout=60)
    assert proc.returncode == 2
    assert "give a command" in proc.stderr


def test_server_restart_fails_jobs_that_were_running(tmp_path):
    port = _free_port()
    data = tmp_path / "data"
    up = [*SMLOCAL, "up", "--port", str(port), "--data-dir", str(data)]
    server = subprocess.Popen(up, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env())
    try:
        _wait_healthy(port, server)
        kwargs = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                      aws_access_key_id="smlocal", aws_secret_access_key="smlocal-secret")
        sm, s3 = boto3.client("sagemaker", **kwargs), boto3.client("s3", **kwargs)
        s3.create_bucket(Bucket="restart-bucket")
        code = upload_sourcedir(s3, "restart-bucket", {"train.py": "import os, time\nprint('pid', os.getpid(), flush=True)\ntime.sleep(600)\n"})
        name = unique("crash")
        sm.create_training_job(**script_job(name, "restart-bucket", code))
        logs = boto3.client("logs", **kwargs)
        pid = None
        deadline = time.time() + 60
        while pid is None:
            assert time.time() < deadline, "the job never logged its pid"
            time.sleep(0.2)
            streams = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                                logStreamNamePrefix=f"{name}/")["logStreams"]
            for stream in streams:
                for event in logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                                 logStreamName=stream["logStreamName"])["events"]:
                    if event["message"].startswith("pid "):
                        pid = int(event["message"].split()[1])
        assert Path(f"/proc/{pid}").exists()
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
    server = subprocess.Popen(up, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env())
    try:
        _wait_healthy(port, server)
        job = sm.describe_training_job(TrainingJobName=name)
        assert job["TrainingJobStatus"] == "Failed"
        assert "smlocal server stopped while this job was running" in job["FailureReason"]
        assert job["TrainingEndTime"] >= job["CreationTime"]
        # the orphaned job process was ended too
        deadline = time.time() + 10
        while Path(f"/proc/{pid}").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
