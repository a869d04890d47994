"""Bundled runnable workflows behind `smlocal run NAME`.

Each workflow is an ordinary SageMaker SDK v2 program (unchanged from what would run on AWS) that
`smlocal run` executes under the emulator's client environment, exactly like `smlocal exec`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
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


def workflow_argv(name: str, params: dict[str, str]) -> list[str] | None:
    """The command that runs workflow ``name`` with ``params`` (None for an unknown name)."""
    module = WORKFLOWS.get(name)
    if module is None:
        return None
    argv = [sys.executable, "-m", module]
    for key, value in params.items():
        argv += ["--param", f"{key}={value}"]
    return argv


def configure_logging() -> None:
    """The logging of smlocal's own workflow programs: WARNING, or INFO under ``SMLOCAL_VERBOSE=1``.

    Importing the SageMaker SDK v2 runs ``logging.basicConfig(level=logging.INFO)`` (in
    ``sagemaker.experiments._metrics``), which puts every library's INFO lines (botocore's "Found
    endpoint for s3 via: environment_global." on each client, the SDK's "Created S3 bucket") on the
    output. These programs are ours, so they replace that set-up with their own (``force=True``); a
    user's program under `smlocal exec` keeps whatever it configures. Unless verbose, the SDK's
    warnings about fields it pops out of every pipeline definition ("Popping out 'ProcessingJobName'
    ...", "Running within a PipelineSession ...") are hidden too: they are expected for these
    definitions and say nothing about the run. Every other warning and error still shows.
    """
    verbose = os.environ.get("SMLOCAL_VERBOSE") == "1"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=logging.BASIC_FORMAT,
                        force=True)
    if verbose:
        return
    for name in ("sagemaker.workflow.utilities", "sagemaker.workflow._utils"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Running within a PipelineSession", category=UserWarning)


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
