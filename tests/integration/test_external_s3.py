"""`--s3-endpoint`: S3 served by an external S3-compatible store instead of the embedded moto.

MinIO (what compose.yaml runs) has no binary or image on this machine, so the contract is tested
against two real stand-ins: a separate moto server process, and the durable store `smlocal up` runs
(`rclone serve s3`, with its own generated credentials). Clients and jobs must read and write the
external store, and nothing may land in the emulator's own S3.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import boto3
import pytest

from conftest import script_job, unique, upload_sourcedir, wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module", params=["moto-server", "rclone"])
def external_s3(request, tmp_path_factory):
    """(endpoint, credential settings) of an S3 store in its own process."""
    if request.param == "rclone":
        from smlocal.s3store import DurableS3Store

        with DurableS3Store(tmp_path_factory.mktemp("rclone")) as store:
            key, secret = store.credentials
            yield store.endpoint, {"s3_access_key_id": key, "s3_secret_access_key": secret}
        return
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.time() < deadline, "moto server did not start"
            time.sleep(0.1)
    yield endpoint, {}
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def emulator_with_external_s3(external_s3, tmp_path_factory):
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    endpoint, credentials = external_s3
    with Emulator(load_settings(data_dir=tmp_path_factory.mktemp("ext"), s3_endpoint=endpoint, **credentials)) as emu:
        yield emu


def test_jobs_read_and_write_the_external_store(emulator_with_external_s3, external_s3):
    emu = emulator_with_external_s3
    external_s3 = external_s3[0]
    env = emu.client_env()
    assert env["AWS_ENDPOINT_URL_S3"] == external_s3
    ext = boto3.client("s3", endpoint_url=external_s3, region_name="us-east-1",
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    ext.create_bucket(Bucket="external-bucket")
    ext.put_object(Bucket="external-bucket", Key="data/x.csv", Body=b"1,2\n")
    code = upload_sourcedir(ext, "external-bucket", {"train.py": (
        "import os\nprint(os.listdir(os.environ['SM_CHANNEL_TRAIN']))\n"
        "open(os.environ['SM_MODEL_DIR'] + '/m', 'w').write('ext')\n")})
    sm = emu.client("sagemaker")
    name = unique("ext")
    sm.create_training_job(**script_job(name, "external-bucket", code, channels={"train": "s3://external-bucket/data/"}))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    key = f"output/{name}/output/model.tar.gz"
    assert ext.head_object(Bucket="external-bucket", Key=key)["ContentLength"] > 0
    # the emulator's embedded S3 never saw the bucket
    embedded = emu.client("s3")
    assert "external-bucket" not in [b["Name"] for b in embedded.list_buckets()["Buckets"]]


def test_exec_environment_points_s3_clients_at_the_store(emulator_with_external_s3, external_s3, tmp_path):
    external_s3 = external_s3[0]
    script = tmp_path / "s.py"
    script.write_text("import boto3\nprint(boto3.client('s3').meta.endpoint_url)\n"
                      "print(boto3.client('sagemaker').meta.endpoint_url)\n")
    env = {**os.environ, **emulator_with_external_s3.client_env()}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [external_s3, emulator_with_external_s3.endpoint]
