"""compose.yaml live: `docker-compose up -d` with the S3 stand-in image (containers/s3-standin: rclone,
not MinIO; the real MinIO image cannot be had here) behind MINIO_IMAGE, then `smlocal run abalone`
from the host against the composed server (every step a container of smlocal's framework images,
every artefact in the compose S3 store), then `down`: nothing of the project is left.

The images are built beforehand (.ci/run does: base, framework images, the stand-in, smlocal's own
image with containers/smlocal/build.sh). Without an engine, docker-compose or the images the test
skips with the reason; CI (``SMLOCAL_CI=1``) fails instead. Ports and the data dir are the test's own
(compose variables), so a user's running compose project is not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from docker_images import current_images, unavailable
from smlocal.pytest_plugin import _free_port_on  # the plugin's own: a port free on loopback and the bridge

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
STANDIN_IMAGE = "smlocal/s3-standin:latest"
SMLOCAL_IMAGE = "smlocal/smlocal:latest"
MINIO_KEYS = ("minioadmin", "minioadmin")  # compose.yaml's defaults


def _requirements(tmp_path_factory):
    """The engine client and the compose command, or skip (fail in CI) saying what is missing.
    The framework images are made current builds of this checkout first (docker_images)."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        for image in (STANDIN_IMAGE, SMLOCAL_IMAGE):
            client.images.get(image)
        compose = _compose_command()
    except Exception as exc:  # noqa: BLE001 - no engine, no compose, an image not built
        unavailable(f"compose needs a Docker engine, docker-compose and the images ({exc}); build them: "
                    "containers/s3-standin/build.sh, smlocal images build, containers/smlocal/build.sh")
    current_images(client, tmp_path_factory)
    return client, compose


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode == 0:
        return ["docker", "compose"]
    raise RuntimeError("neither docker-compose (v1) nor `docker compose` (v2) is installed")


def _wait_healthy(endpoint: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{endpoint}/_smlocal/health", timeout=2) as response:
                if b'"ok"' in response.read():
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _host_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SMLOCAL_", "AWS_", "PYTEST_", "MINIO_")) and k not in ("PYTHONPATH",)}
    env.update(SAGEMAKER_SUPPRESS_V2_WARNING="1", **extra)
    return env


def test_compose_up_then_smlocal_run_abalone_then_down_leaves_nothing(tmp_path, tmp_path_factory):
    import boto3

    from smlocal.runtime.backends.docker import bridge_gateway, server_id

    engine, compose = _requirements(tmp_path_factory)
    bridge = bridge_gateway(engine)
    project = f"smlocaltest{uuid.uuid4().hex[:8]}"
    port, s3_port = _free_port_on("127.0.0.1"), _free_port_on("127.0.0.1", bridge)
    data_dir = tmp_path / "compose-data"
    data_dir.mkdir()
    env = _host_env(MINIO_IMAGE=STANDIN_IMAGE, SMLOCAL_IMAGE=SMLOCAL_IMAGE, SMLOCAL_COMPOSE_PORT=str(port),
                    SMLOCAL_COMPOSE_S3_PORT=str(s3_port), SMLOCAL_COMPOSE_CONSOLE_PORT=str(_free_port_on("127.0.0.1")),
                    SMLOCAL_COMPOSE_DATA_DIR=str(data_dir), SMLOCAL_DOCKER_BRIDGE_IP=bridge)
    base = [*compose, "-p", project, "-f", str(REPO / "compose.yaml")]
    endpoint = f"http://127.0.0.1:{port}"
    try:
        up = subprocess.run([*base, "up", "-d", "--no-build"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        logs = lambda: subprocess.run([*base, "logs", "--no-color"], cwd=REPO, env=env, capture_output=True,  # noqa: E731
                                      text=True, timeout=60).stdout[-5000:]
        assert _wait_healthy(endpoint, 120), logs()

        run = subprocess.run([sys.executable, "-m", "smlocal.cli", "run", "abalone"], cwd=tmp_path,
                             env=_host_env(SMLOCAL_ENDPOINT=endpoint), capture_output=True, text=True, timeout=1500)
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:] + logs()
        assert "Pipeline execution Succeeded" in run.stdout, run.stdout[-6000:]

        # every artefact is in the compose store, read with the store's own keys (not through smlocal)
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{s3_port}", region_name="us-east-1",
                          aws_access_key_id=MINIO_KEYS[0], aws_secret_access_key=MINIO_KEYS[1])
        keys = [obj["Key"] for bucket in s3.list_buckets()["Buckets"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
                for obj in page.get("Contents", [])]
        assert any(key.startswith("AbaloneTrain/") and key.endswith("/output/model.tar.gz") for key in keys), keys
        assert any(key.startswith("AbaloneTransform/") and key.endswith(".out") for key in keys), keys
        assert any(key.endswith("evaluation.json") for key in keys), keys
        # the job folders were the engine's bind mounts: they are in the host folder compose was given
        assert (data_dir / "jobs" / "training").is_dir()
    finally:
        down = subprocess.run([*base, "down", "-v", "--remove-orphans"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    project_label = {"label": f"com.docker.compose.project={project}"}
    assert engine.containers.list(all=True, filters=project_label, ignore_removed=True) == []
    assert engine.networks.list(filters=project_label) == []
    assert engine.volumes.list(filters=project_label) == []
    assert engine.containers.list(all=True, filters={"label": f"smlocal.server={server_id(data_dir)}"},
                                  ignore_removed=True) == []
