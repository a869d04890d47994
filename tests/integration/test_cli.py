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


def _job_processes(job_name: str) -> list[int]:
    """Host pids of the processes of a job (every job process carries SMLOCAL_JOB=<kind>/<name>)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(item.startswith(b"SMLOCAL_JOB=") and item.endswith(f"/{job_name}".encode()) for item in environ):
            found.append(int(entry.name))
    return found


def test_server_restart_fails_jobs_that_were_running(tmp_path):
    port = _free_port()
    data = tmp_path / "data"
    up = [*SMLOCAL, "up", "--port", str(port), "--data-dir", str(data), "--s3", "memory"]  # S3 via the gateway
    server = subprocess.Popen(up, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env())
    try:
        _wait_healthy(port, server)
        kwargs = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                      aws_access_key_id="smlocal", aws_secret_access_key="smlocal-secret")
        sm, s3 = boto3.client("sagemaker", **kwargs), boto3.client("s3", **kwargs)
        s3.create_bucket(Bucket="restart-bucket")
        code = upload_sourcedir(s3, "restart-bucket", {"train.py": "import time\nprint('started', flush=True)\ntime.sleep(600)\n"})
        name = unique("crash")
        sm.create_training_job(**script_job(name, "restart-bucket", code))
        deadline = time.time() + 60
        while not _job_processes(name):  # the job runs in its own PID namespace: found by its marker
            assert time.time() < deadline, "the job's process never started"
            time.sleep(0.2)
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
        # the orphaned job processes were ended too
        deadline = time.time() + 10
        while _job_processes(name) and time.time() < deadline:
            time.sleep(0.1)
        assert _job_processes(name) == []
        assert list((data / "jobs" / "training" / name).glob(".*.sandbox")) == []  # its copy-on-write layers too
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_jobs_and_logs_cover_training_and_processing(sm, s3, bucket, emulator):
    training = unique("cli-train")
    submit = upload_sourcedir(s3, bucket, {"train.py": "print('hello from training')\n"})
    sm.create_training_job(**script_job(training, bucket, submit))
    processing = unique("cli-proc")
    s3.put_object(Bucket=bucket, Key=f"{processing}/code/job.py", Body=b"print('hello from processing')\n")
    sm.create_processing_job(
        ProcessingJobName=processing, RoleArn="arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        ProcessingInputs=[{"InputName": "code", "S3Input": {
            "S3Uri": f"s3://{bucket}/{processing}/code/job.py", "LocalPath": "/opt/ml/processing/input/code",
            "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                               "VolumeSizeInGB": 30}},
        AppSpecification={"ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
                          "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/job.py"]})
    env = {**_clean_env(), "SMLOCAL_ENDPOINT": emulator.endpoint}
    # --follow returns once the job has ended, with every line it logged
    followed = subprocess.run([*SMLOCAL, "logs", processing, "--follow"], capture_output=True, text=True, env=env,
                              timeout=120)
    assert followed.returncode == 0, followed.stderr
    assert "hello from processing" in followed.stdout
    assert sm.describe_processing_job(ProcessingJobName=processing)["ProcessingJobStatus"] == "Completed"
    subprocess.run([*SMLOCAL, "logs", training, "--follow"], capture_output=True, env=env, timeout=120, check=True)
    shown = subprocess.run([*SMLOCAL, "logs", training], capture_output=True, text=True, env=env, check=True)
    assert "hello from training" in shown.stdout and "hello from processing" not in shown.stdout

    listed = subprocess.run([*SMLOCAL, "jobs", "--max", "100"], capture_output=True, text=True, env=env, check=True)
    rows = {line.split()[1]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows[training][0] == "training" and rows[training][2] == "Completed"
    assert rows[processing][0] == "processing" and rows[processing][2] == "Completed"

    missing = subprocess.run([*SMLOCAL, "logs", unique("no-such-job")], capture_output=True, text=True, env=env)
    assert missing.returncode == 1 and "no logs for job" in missing.stderr
