"""Runs one training job end to end: layout → channels → code → process → artefacts.

The service calls :func:`run_training_job` on a worker thread and learns what happens through the
:class:`~smlocal.runtime.job.Reporter`; the function returns the outcome and never raises for a
job's own errors (they become FailureReason).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from smlocal.runtime import archives, contract, jobfiles
from smlocal.runtime.backends.base import RunControl, RunSpec
from smlocal.runtime.environments import RequirementsError, python_for_requirements
from smlocal.runtime.images import Runtime, UnresolvableImage, resolve_runtime
from smlocal.runtime.job import (
    MetricCollector,
    Reporter,
    RuntimeContext,
    interpreter_command,
    job_dir,
    job_marker,
    pidfile,
)
from smlocal.runtime.staging import StagingError, join_s3, make_tar_gz, safe_join

FAILURE_REASON_MAX = 1024
FAILURE_FILE_READ_MAX = 64 * 1024  # bytes of /opt/ml/output/failure read
ALGORITHM_MODULES = {
    "xgboost": "smlocal.runtime.algorithms.xgboost_algo",
    "knn": "smlocal.runtime.algorithms.knn_algo",
}


@dataclass
class TrainingOutcome:
    status: str  # Completed | Failed | Stopped
    secondary: str  # Completed | Failed | Stopped | MaxRuntimeExceeded
    failure_reason: str | None = None
    model_artifacts: str | None = None
    metrics: list[dict] = field(default_factory=list)
    started_at: float | None = None
    ended_at: float | None = None


class JobFailure(Exception):
    """A failure before or after the user's process; the message is the FailureReason."""


def run_training_job(job: dict, ctx: RuntimeContext, reporter: Reporter, control: RunControl) -> TrainingOutcome:
    name = job["TrainingJobName"]
    metrics = MetricCollector(job.get("AlgorithmSpecification", {}).get("MetricDefinitions"))
    outcome = TrainingOutcome(status="Failed", secondary="Failed")
    opt_ml: Path | None = None
    try:
        reporter.secondary("Starting", "Preparing the instances for training")
        hps = job.get("HyperParameters") or {}
        params = contract.framework_params(hps)
        runtime = _resolve(job, ctx, has_entry_point=bool(params.program))
        opt_ml = job_dir(ctx, "training", name)
        layout = contract.training_layout(
            job, job_name=name, region=ctx.settings.region, num_cpus=os.cpu_count() or 1,
            job_arn=job.get("TrainingJobArn"),
            image_env=contract.SKLEARN_IMAGE_ENV if runtime.framework == "sklearn" else None,
        )
        _materialize(opt_ml, layout)

        reporter.secondary("Downloading", "Downloading input data")
        _stage_channels(job, opt_ml, ctx, reporter)
        python = ctx.python
        command: list[str]
        if runtime.kind == "framework":
            if not params.program or not params.submit_directory:
                raise JobFailure(
                    "AlgorithmError: framework error: no entry point was given. Framework images run "
                    "script mode: set the hyperparameters sagemaker_program and "
                    "sagemaker_submit_directory (the SageMaker SDK's estimators do)."
                )
            code_dir = opt_ml / "code"
            _fetch_code(params.submit_directory, code_dir, ctx)
            if (code_dir / "requirements.txt").is_file():
                try:
                    python = python_for_requirements(code_dir, ctx.envs_root, reporter.log)
                except RequirementsError as exc:
                    raise JobFailure(f"AlgorithmError: {exc}") from exc
            try:
                entry = safe_join(code_dir, params.program)
            except StagingError:
                entry = None  # a program outside the code dir: the toolkit fails to find it
            if entry is not None and entry.is_file():
                entry.chmod(0o777)  # the toolkit makes the entry point executable
            command = list(contract.script_command(params.program, layout.args, python=python))
            workdir = "/opt/ml/code"
        elif runtime.kind == "algorithm":
            command = [python, "-m", ALGORITHM_MODULES[runtime.algorithm], "train"]
            workdir = "/opt/ml"
        else:
            mapping = ctx.settings.image_mapping(runtime.image)
            command = [part.replace("{python}", python) for part in mapping.command]
            command = interpreter_command(command, python) + list(layout.args if runtime.kind == "script" else ())
            workdir = "/opt/ml"

        env = {**ctx.base_env(), **layout.env, "SMLOCAL_JOB": job_marker("training", name)}
        if runtime.kind == "algorithm":
            env["SMLOCAL_ALGO_VERSION"] = runtime.version or ""
        if runtime.kind == "custom":
            env.update(ctx.settings.image_mapping(runtime.image).environment)
        if python != ctx.python:
            env["PATH"] = f"{Path(python).parent}:{env['PATH']}"

        reporter.secondary("Training", "Training image download completed. Training in progress.")
        outcome.started_at = time.time()

        def sink(line: str) -> None:
            metrics.feed(line)
            reporter.log(line)

        spec = RunSpec(
            command=tuple(command),
            env=env,
            opt_ml=opt_ml,
            workdir=workdir,
            network_isolation=bool(job.get("EnableNetworkIsolation")),
            pidfile=pidfile(ctx, "training", name),
        )
        remaining = _remaining_runtime(job)
        result = ctx.backend.run(spec, sink, RunControl(stop=control.stop, timeout=remaining,
                                                         grace_seconds=control.grace_seconds))
        outcome.ended_at = time.time()
        if result.stopped or result.timed_out:
            outcome.status = "Stopped"
            outcome.secondary = "MaxRuntimeExceeded" if result.timed_out and not result.stopped else "Stopped"
            reporter.secondary("Stopping", "Stopping the training job")
        elif result.exit_code != 0:
            outcome.failure_reason = _failure_reason(opt_ml, result, command, runtime)
        else:
            outcome.status = outcome.secondary = "Completed"

        if outcome.status != "Failed":
            reporter.secondary("Uploading", "Uploading generated training model")
        outcome.model_artifacts = _upload_outputs(job, opt_ml, ctx, upload_model=outcome.status != "Failed",
                                                  log=reporter.log)
    except (JobFailure, StagingError, UnresolvableImage) as exc:
        outcome.status = outcome.secondary = "Failed"
        outcome.failure_reason = _clip(str(exc))
    except Exception as exc:  # noqa: BLE001 - a job must end, whatever went wrong around it
        outcome.status = outcome.secondary = "Failed"
        outcome.failure_reason = _clip(f"InternalServerError: smlocal could not run the job: {exc!r}")
    finally:
        if opt_ml is not None and not os.environ.get("SMLOCAL_KEEP_JOB_DIRS"):
            shutil.rmtree(opt_ml, ignore_errors=True)
    outcome.metrics = metrics.final()
    return outcome


def _resolve(job: dict, ctx: RuntimeContext, *, has_entry_point: bool) -> Runtime:
    spec = job.get("AlgorithmSpecification", {})
    image = spec.get("TrainingImage")
    if not image:
        raise JobFailure(
            f"smlocal cannot run AlgorithmName '{spec.get('AlgorithmName')}': marketplace and "
            "custom algorithm resources are not emulated. Give a TrainingImage."
        )
    mapping = ctx.settings.image_mapping(image)
    if mapping is not None:
        return Runtime(kind="script" if mapping.kind == "script" else "custom", image=image)
    return resolve_runtime(image, has_entry_point=has_entry_point)


def _materialize(opt_ml: Path, layout: contract.JobLayout) -> None:
    for rel in layout.dirs:
        (opt_ml / rel).mkdir(parents=True, exist_ok=True)
    for rel, text in layout.files.items():
        target = opt_ml / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _stage_channels(job: dict, opt_ml: Path, ctx: RuntimeContext, reporter: Reporter) -> None:
    for channel in job.get("InputDataConfig") or []:
        name = channel["ChannelName"]
        mode = channel.get("InputMode") or job["AlgorithmSpecification"].get("TrainingInputMode", "File")
        if mode != "File":
            reporter.log(f"smlocal: channel '{name}' asks for {mode} mode; staging it as File mode "
                         f"(files under /opt/ml/input/data/{name}).")
        source = channel.get("DataSource", {})
        s3 = source.get("S3DataSource")
        if not s3:
            raise JobFailure(f"ClientError: channel '{name}': only S3DataSource is supported by smlocal")
        ctx.stager.download_source(s3.get("S3DataType", "S3Prefix"), s3["S3Uri"], opt_ml / "input" / "data" / name)


def _fetch_code(submit_directory: str, code_dir: Path, ctx: RuntimeContext) -> None:
    if submit_directory.startswith("s3://"):
        ctx.stager.fetch_and_extract(submit_directory, code_dir)
    elif submit_directory.startswith("file://") or submit_directory.startswith("/"):
        source = Path(submit_directory.removeprefix("file://"))
        if source.is_dir():
            shutil.copytree(source, code_dir, dirs_exist_ok=True)
        else:
            archives.extract(source, code_dir, origin=submit_directory)
    else:
        raise JobFailure(f"ClientError: sagemaker_submit_directory '{submit_directory}' is not an S3 URI")


def _failure_reason(opt_ml: Path, result, command: list[str], runtime: Runtime) -> str:
    # the job may have made it a link to a host file or a FIFO: only a regular file is read
    failure = jobfiles.read_regular(opt_ml, "output/failure", FAILURE_FILE_READ_MAX)
    if failure is not None:
        text = failure[0].decode(errors="replace").strip()
        if text:
            return _clip(text)
    if runtime.kind == "framework":
        # The error text is always extracted (as the toolkit does for images that capture stderr):
        # a FailureReason that names the exception is what users need to act on.
        return _clip(contract.script_failure_reason(result.exit_code, result.stderr_tail, tuple(command),
                                                    capture_error=True, hardened=True))
    return _clip(f"AlgorithmError: process exited with code {result.exit_code}")


def _upload_outputs(job: dict, opt_ml: Path, ctx: RuntimeContext, *, upload_model: bool,
                    log: Callable[[str], None]) -> str | None:
    name = job["TrainingJobName"]
    prefix = join_s3(job["OutputDataConfig"]["S3OutputPath"], name, "output")
    staging = opt_ml.parent / "_artifacts"
    staging.mkdir(exist_ok=True)
    model_uri = None
    try:
        # the job owns everything below opt_ml: nothing there is followed if it is a link
        if jobfiles.walk(opt_ml, "output/data"):
            packed = make_tar_gz(opt_ml / "output" / "data", staging / "output.tar.gz", root=opt_ml, log=log)
            ctx.stager.upload_file(packed, join_s3(prefix, "output.tar.gz"))
        if upload_model:
            model_uri = join_s3(prefix, "model.tar.gz")
            packed = make_tar_gz(opt_ml / "model", staging / "model.tar.gz", root=opt_ml, log=log)
            ctx.stager.upload_file(packed, model_uri)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_uri


def _remaining_runtime(job: dict) -> float | None:
    limit = (job.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    return float(limit) if limit else None


def _clip(text: str) -> str:
    return text if len(text) <= FAILURE_REASON_MAX else text[: FAILURE_REASON_MAX - 3] + "..."
