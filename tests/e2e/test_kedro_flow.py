"""The Kedro spaceflights project on SageMaker: `smlocal exec -- kedro run --env sagemaker`, and `smlocal run`.

The project (fixtures/kedro-spaceflights) is unchanged Kedro 1.x code: its data lives in S3 through
kedro-datasets/s3fs, its model is fitted by an SDK v2 SKLearn training job, and ``untar_model``
reads the job's model.tar.gz through fsspec. The checks read the artefacts back from S3.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


FEATURES = ["engines", "passenger_capacity", "crew", "d_check_complete", "moon_clearance_complete",
            "iata_approved", "company_rating", "review_scores_rating"]


def _kedro_command() -> list[str]:
    """The `kedro` console script next to this interpreter (what a user types), else `python -m kedro`."""
    script = Path(sys.executable).parent / "kedro"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kedro"]


@pytest.fixture
def project(tmp_path) -> Path:
    from smlocal.workflows.kedro_spaceflights import project_dir
    from smlocal.workflows.kedro_spaceflights.main import copy_project

    return copy_project(project_dir(), tmp_path / "spaceflights")


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", **extra}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _read(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_kedro_run_env_sagemaker_puts_every_artefact_in_s3(client_env, s3, sm, bucket, project):
    result = subprocess.run(
        [sys.executable, "-m", "smlocal.cli", "exec", "--", *_kedro_command(), "run", "--env", "sagemaker"],
        cwd=project, env=_env(SPACEFLIGHTS_S3_BUCKET=bucket), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    log = result.stdout + result.stderr
    assert "Completed 7 out of 7 tasks" in log

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="spaceflights/")["Contents"]}
    for key in ("spaceflights/02_intermediate/preprocessed_companies.csv",
                "spaceflights/02_intermediate/preprocessed_shuttles.csv",
                "spaceflights/03_primary/model_input_table.csv",
                "spaceflights/05_model_input/train/train.csv",
                "spaceflights/06_models/regressor.pickle",
                "spaceflights/08_reporting/metrics.json"):
        assert key in keys, sorted(keys)
    # nothing after the raw inputs was written locally
    local = [p for p in (project / "data").rglob("*") if p.is_file() and p.name != ".gitkeep"
             and not p.parent.name.startswith("01_")]
    assert local == []

    # the training job the node ran, and its artefact
    jobs = sm.list_training_jobs(NameContains="spaceflights", SortBy="CreationTime", SortOrder="Descending")
    job = sm.describe_training_job(TrainingJobName=jobs["TrainingJobSummaries"][0]["TrainingJobName"])
    assert job["TrainingJobStatus"] == "Completed"
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == \
        f"s3://{bucket}/spaceflights/05_model_input/train/train.csv"
    artefact = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert artefact.startswith(f"s3://{bucket}/spaceflights/06_models/training-jobs/{job['TrainingJobName']}/")
    assert artefact.endswith("/output/model.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(_read(s3, bucket, artefact.split("/", 3)[3]))) as archive:
        import joblib

        trained = joblib.load(archive.extractfile("model.joblib"))

    # untar_model's output (saved by Kedro to S3) is the very model the job trained
    regressor = pickle.loads(_read(s3, bucket, "spaceflights/06_models/regressor.pickle"))
    assert list(regressor.feature_names_in_) == FEATURES
    assert regressor.coef_.tolist() == trained.coef_.tolist()

    metrics = json.loads(_read(s3, bucket, "spaceflights/08_reporting/metrics.json"))
    table = _read(s3, bucket, "spaceflights/03_primary/model_input_table.csv").decode().splitlines()
    assert metrics["test_rows"] == math.ceil(0.2 * (len(table) - 1))  # train_test_split rounds the test set up
    assert 0.2 < metrics["r2_score"] < 0.6  # the tutorial's linear model explains ~40% of price


def test_smlocal_run_kedro_spaceflights(client_env, bucket, s3):
    result = subprocess.run(
        [sys.executable, "-m", "smlocal.cli", "run", "kedro-spaceflights"],
        env=_env(SPACEFLIGHTS_S3_BUCKET=bucket), capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "Training job spaceflights-" in result.stdout and ": Completed" in result.stdout
    assert f"Metrics (s3://{bucket}/spaceflights/08_reporting/metrics.json)" in result.stdout
    assert _read(s3, bucket, "spaceflights/06_models/regressor.pickle")
