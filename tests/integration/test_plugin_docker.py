"""The pytest plugin on containers: a downstream repository's session with ``--smlocal-backend docker
--smlocal-s3 minio``, the S3 store on the MinIO stand-in image (containers/s3-standin: rclone, not
MinIO; the real MinIO image cannot be had here), run as a subprocess like tests/integration/
test_pytest_plugin.py does. Without an engine or the images it skips with the reason; CI
(``SMLOCAL_CI=1``, .ci/run builds the images) fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docker_images import current_images, unavailable

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DOWNSTREAM = Path(__file__).resolve().parents[2] / "fixtures" / "downstream"
STANDIN_IMAGE = "smlocal/s3-standin:latest"

WHERE_SCRIPT = '''\
import json, os, sys
os.makedirs("/opt/ml/model", exist_ok=True)
json.dump({"dockerenv": os.path.exists("/.dockerenv"), "python": sys.executable,
           "s3": os.environ.get("AWS_ENDPOINT_URL_S3")}, open("/opt/ml/model/where.json", "w"))
'''

IN_CONTAINER_TEST = '''\
import io, json, os, tarfile

from sagemaker.sklearn import SKLearn

from conftest import TRAINING_DIR


def test_training_runs_in_a_container_with_minio_as_s3(smlocal, smlocal_session, smlocal_s3_client, iris_train_uri):
    from smlocal.runtime.backends.docker import server_id

    store = smlocal.s3_store
    assert smlocal.emulator.settings.backend == "docker"
    assert store is not None and smlocal.s3_endpoint == store.endpoint != smlocal.endpoint
    with open(os.environ["RECORD"], "w") as out:
        json.dump({"server": server_id(smlocal.settings.data_dir), "minio": store._container.get_container_id(),
                   "host_python": __import__("sys").executable}, out)
    estimator = SKLearn(entry_point="where.py", source_dir=str(TRAINING_DIR), framework_version="1.2-1",
                        instance_type="ml.m5.large", instance_count=1, role=smlocal.role_arn,
                        sagemaker_session=smlocal_session)
    estimator.fit({"train": iris_train_uri}, wait=True, logs=False)
    bucket, key = estimator.model_data[len("s3://"):].split("/", 1)
    # the model is in MinIO itself (its own client, not through smlocal)
    assert store.client().bucket_exists(bucket)
    body = store.client().get_object(bucket, key).data
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        where = json.load(archive.extractfile("where.json"))
    assert where["dockerenv"] is True
    assert where["python"].startswith("/opt/venv/")
    assert where["s3"].endswith(":" + store.endpoint.rsplit(":", 1)[1])
'''


def _engine(tmp_path_factory):
    """The engine with the stand-in image and a current build of smlocal's scikit-learn image."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        client.images.get(STANDIN_IMAGE)
    except Exception as exc:  # noqa: BLE001 - no engine, no SDK, an image not built
        unavailable(f"no Docker engine with {STANDIN_IMAGE} ({exc}); build it: containers/s3-standin/build.sh")
    current_images(client, tmp_path_factory, names=("sklearn",))
    return client


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SMLOCAL_", "AWS_", "PYTEST_")) and k not in ("PYTHONPATH", "SAGEMAKER_ROLE_ARN")}
    env.update(SAGEMAKER_SUPPRESS_V2_WARNING="1", **extra)
    return env


def test_downstream_session_on_docker_backend_and_minio_leaves_no_container(tmp_path, tmp_path_factory):
    import docker

    engine = _engine(tmp_path_factory)
    downstream = tmp_path / "downstream"
    shutil.copytree(DOWNSTREAM, downstream, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (downstream / "training" / "where.py").write_text(WHERE_SCRIPT)
    (downstream / "tests" / "test_in_container.py").write_text(textwrap.dedent(IN_CONTAINER_TEST))
    record = tmp_path / "record.json"

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-rA", "-q",
         "--smlocal-backend", "docker", "--smlocal-s3", "minio", "--smlocal-minio-image", STANDIN_IMAGE],
        cwd=downstream, env=_clean_env(RECORD=str(record)), capture_output=True, text=True, timeout=900)

    summary = f"exit {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, summary
    assert "5 passed" in result.stdout, summary
    seen = json.loads(record.read_text())
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(seen["minio"])
    assert engine.containers.list(all=True, filters={"label": f"smlocal.server={seen['server']}"},
                                  ignore_removed=True) == []
    assert engine.networks.list(filters={"label": f"smlocal.server={seen['server']}"}) == []


def test_minio_option_without_an_image_is_a_usage_error(tmp_path, tmp_path_factory):
    """An image the engine lacks (and cannot pull) stops the session with the hint, and leaves nothing."""
    engine = _engine(tmp_path_factory)
    downstream = tmp_path / "downstream"
    shutil.copytree(DOWNSTREAM, downstream, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    before = {c.id for c in engine.containers.list(all=True, filters={"label": "smlocal.pytest=minio"},
                                                   ignore_removed=True)}

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q",
         "tests/test_training.py::test_fresh_bucket_is_empty", "--smlocal-s3", "minio",
         "--smlocal-minio-image", "smlocal-test/no-such-minio:0"],
        cwd=downstream, env=_clean_env(), capture_output=True, text=True, timeout=300)

    assert result.returncode != 0
    assert "containers/s3-standin/build.sh" in result.stdout + result.stderr, result.stdout[-3000:]
    after = {c.id for c in engine.containers.list(all=True, filters={"label": "smlocal.pytest=minio"},
                                                   ignore_removed=True)}
    assert after <= before
