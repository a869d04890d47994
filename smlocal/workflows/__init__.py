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


def workflow_dir(name: str) -> Path:
    return Path(__file__).parent / name
