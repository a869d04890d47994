"""kedro-spaceflights: ``kedro run --env sagemaker`` in a copy of the spaceflights project, then a summary.

Parameters (``--param NAME=VALUE``): ``env`` (Kedro environment, default ``sagemaker``), ``project``
(another Kedro project folder), ``workdir`` (where to copy the project; kept afterwards; default a
temporary folder that is removed).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from smlocal.workflows import configure_logging
from smlocal.workflows.kedro_spaceflights import project_dir

OUTPUTS = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def copy_project(source: Path, target: Path) -> Path:
    """Copies the project without previous run outputs (data/02_* ... data/08_* keep only .gitkeep)."""
    shutil.copytree(source, target, ignore=OUTPUTS, dirs_exist_ok=True)
    for folder in (target / "data").glob("0[2-8]_*"):
        for item in folder.iterdir():
            if item.name != ".gitkeep":
                shutil.rmtree(item) if item.is_dir() else item.unlink()
    return target


def summary(env_name: str, workdir: Path) -> int:
    """Prints the training job, its model artefact and the saved metrics; 0 when all are there."""
    import boto3

    sm = boto3.client("sagemaker")
    jobs = sm.list_training_jobs(NameContains="spaceflights", SortBy="CreationTime", SortOrder="Descending",
                                 MaxResults=1)["TrainingJobSummaries"]
    if not jobs:
        print("no spaceflights training job found", file=sys.stderr)
        return 1
    job = sm.describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])
    print(f"\nTraining job {job['TrainingJobName']}: {job['TrainingJobStatus']}")
    print(f"Model artefact: {job.get('ModelArtifacts', {}).get('S3ModelArtifacts')}")
    if env_name == "sagemaker":
        import sagemaker

        bucket = os.environ.get("SPACEFLIGHTS_S3_BUCKET") or sagemaker.Session().default_bucket()
        key = "spaceflights/08_reporting/metrics.json"
        metrics = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
        print(f"Metrics (s3://{bucket}/{key}): {metrics}")
    else:
        metrics = json.loads((workdir / "data" / "08_reporting" / "metrics.json").read_text())
        print(f"Metrics: {metrics}")
    return 0 if job["TrainingJobStatus"] == "Completed" and "r2_score" in metrics else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--param", action="append", default=[])
    params = dict(p.split("=", 1) for p in parser.parse_args().param)
    configure_logging()
    if importlib.util.find_spec("kedro") is None or importlib.util.find_spec("s3fs") is None:
        print("smlocal run kedro-spaceflights needs Kedro: pip install 'smlocal[kedro]'", file=sys.stderr)
        return 2
    env_name = params.get("env", "sagemaker")
    temp = None
    if params.get("workdir"):
        workdir = Path(params["workdir"])
    else:
        temp = tempfile.mkdtemp(prefix="smlocal-kedro-")
        workdir = Path(temp) / "spaceflights"
    try:
        copy_project(project_dir(params.get("project")), workdir)
        env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}
        code = subprocess.call([sys.executable, "-m", "kedro", "run", "--env", env_name], cwd=workdir, env=env)
        if code != 0:
            print(f"kedro run --env {env_name} failed (exit {code})", file=sys.stderr)
            return code
        return summary(env_name, workdir)
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
