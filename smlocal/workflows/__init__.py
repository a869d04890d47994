"""Bundled runnable workflows behind `smlocal run NAME`.

Each workflow is an ordinary SageMaker SDK v2 program (unchanged from what would run on AWS) that
`smlocal run` executes under the emulator's client environment, exactly like `smlocal exec`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WORKFLOWS = {
    "sklearn-train": "smlocal.workflows.sklearn_train.main",
    "abalone": "smlocal.workflows.abalone.main",
    "kedro-spaceflights": "smlocal.workflows.kedro_spaceflights.main",
    "airflow-iris": "smlocal.workflows.airflow_iris.main",
}
# workflows that define a SageMaker pipeline → its name (`smlocal promote WORKFLOW --to aws`)
PIPELINE_WORKFLOWS = {
    "abalone": "AbalonePipeline",
}


def run_workflow(name: str, params: dict[str, str], flags: dict) -> int:
    from smlocal.client import emulator_environment

    module = WORKFLOWS.get(name)
    if module is None:
        print(f"smlocal run: unknown workflow {name!r}; known: {', '.join(sorted(WORKFLOWS))}", file=sys.stderr)
        return 2
    with emulator_environment(**flags) as env:
        argv = [sys.executable, "-m", module]
        for key, value in params.items():
            argv += ["--param", f"{key}={value}"]
        return subprocess.call(argv, env={**os.environ, **env})


def define_pipeline(name: str, env: dict[str, str], image_region: str) -> str:
    """Runs a pipeline workflow's definition half (upload, upsert, no execution); returns the pipeline name."""
    if name not in PIPELINE_WORKFLOWS:
        raise ValueError(f"workflow {name!r} defines no SageMaker pipeline; pipeline workflows: "
                         f"{', '.join(sorted(PIPELINE_WORKFLOWS))}")
    argv = [sys.executable, "-m", WORKFLOWS[name], "--define-only", "--image-region", image_region]
    done = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"defining the {name} pipeline failed:\n{done.stdout}{done.stderr}")
    return PIPELINE_WORKFLOWS[name]


def workflow_dir(name: str) -> Path:
    return Path(__file__).parent / name
