"""Runs one training job end to end: layout → channels → code → process → artefacts.

The service calls :func:`run_training_job` on a worker thread and learns what happens through the
:class:`~smlocal.runtime.job.Reporter`; the function returns the outcome and never raises for a
job's own errors (they become FailureReason).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from smlocal.runtime import archives, container_command, contract, frameworks, gpus, jobfiles, remote_function
from smlocal.runtime import distribution, mpi_agent, toolkit_failure
from smlocal.runtime.algorithms import metrics as builtin_metrics
from smlocal.runtime.backends.base import RunControl, RunSpec
from smlocal.runtime.environments import RequirementsError, python_for_requirements
from smlocal.runtime.images import Runtime, UnresolvableImage, resolve_runtime
from smlocal.runtime.job import (
    MetricCollector,
    Reporter,
    RuntimeContext,
    job_dir,
    job_marker,
    pidfile,
    run_hosts,
)
from smlocal.runtime.staging import StagingError, channel_shard, join_s3, make_tar_gz, safe_join

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
    metric_summaries: list[dict] = field(default_factory=list)  # MetricCollector.summaries()
    started_at: float | None = None
    ended_at: float | None = None


class JobFailure(Exception):
    """A failure before or after the user's process; the message is the FailureReason."""


class TrainingReporter(Reporter, Protocol):
    """A :class:`Reporter` whose log has a stream per host: ``log(line)`` is algo-1's (smlocal's
    own lines), ``log(line, host=...)`` that host's."""

    def log(self, line: str, host: str = "algo-1") -> None: ...


def run_training_job(job: dict, ctx: RuntimeContext, reporter: TrainingReporter,
                     control: RunControl) -> TrainingOutcome:
    name = job["TrainingJobName"]
    metrics: MetricCollector | None = None  # built once the image is known
    outcome = TrainingOutcome(status="Failed", secondary="Failed")
    folders: list[Path] = []
    try:
        reporter.secondary("Starting", "Preparing the instances for training")
        hps = job.get("HyperParameters") or {}
        params = contract.framework_params(hps)
        algorithm = job.get("AlgorithmSpecification") or {}
        entrypoint = tuple(algorithm.get("ContainerEntrypoint") or ())
        image = _training_image(job)
        backend = ctx.backend_for(image)
        problem = backend.image_problem(image)  # None on the process backend: its runners map images
        if problem:
            raise JobFailure(problem)
        launcher: _Launcher = _ImageLaunch(ctx) if backend.runs_images else _LocalLaunch(ctx)
        runtime = launcher.runtime(image, has_entry_point=bool(params.program))
        metrics = MetricCollector(metric_definitions(job, runtime))
        hosts = launcher.hosts(job)
        gpu_plans = gpus.prepare(ctx.settings, job.get("ResourceConfig") or {}, hosts, reporter.log)
        layouts = []
        for host, gpu in zip(hosts, gpu_plans):
            folders.append(job_dir(ctx, "training", name, host))
            layouts.append(contract.training_layout(
                job, job_name=name, region=ctx.settings.region, num_cpus=os.cpu_count() or 1, num_gpus=gpu.num_gpus,
                job_arn=job.get("TrainingJobArn"), current_host=host, hosts=hosts,
                image_env=contract.SKLEARN_IMAGE_ENV if runtime.framework == "sklearn" else None,
                script_mode=False if entrypoint else None,  # the image's own entry (the toolkit) is replaced
            ))
            _materialize(folders[-1], layouts[-1])
        opt_ml = folders[0]

        reporter.secondary("Downloading", "Downloading input data")
        groups = contract.host_instance_groups(job.get("ResourceConfig") or {}, hosts)
        for index, folder in enumerate(folders):
            _stage_channels(job, folder, ctx, reporter, host=index, groups=groups)
        launch = launcher.launch(job, runtime, folders, layouts, reporter, params)

        reporter.secondary("Training", "Training image download completed. Training in progress.")
        outcome.started_at = time.time()

        def sink_for(host: str) -> Callable[[str], None]:
            def sink(line: str) -> None:
                metrics.feed(line)  # every host's lines, as before (whether AWS reads only algo-1's is unknown)
                reporter.log(line, host=host)
            return sink

        specs = [RunSpec(
            command=launch.commands.get(host, launch.command),
            # a container gets its GPUs as devices; a local process by CUDA_VISIBLE_DEVICES
            env={**_environment(ctx, runtime, host_layout.env, launch.env, launch.python, name),
                 **({} if backend.runs_images else gpu.environment())},
            gpus=gpu.devices,  # a container's devices; the process sandbox shows their nodes
            opt_ml=folder,
            workdir=launch.workdir,
            network_isolation=bool(job.get("EnableNetworkIsolation")),
            pidfile=pidfile(ctx, "training", name, host),
            image=image,
            entrypoint=entrypoint or None,
            arguments=tuple(algorithm.get("ContainerArguments") or ()) or (None if entrypoint else ("train",)),
            hostname=host,
            hosts=hosts,
            job=job_marker("training", name),
            own_network=launch.own_network,
        ) for host, folder, host_layout, gpu in zip(hosts, folders, layouts, gpu_plans)]
        remaining = _remaining_runtime(job)
        # each host's output goes to its own log stream (<job>/algo-N-<epoch>), as on AWS
        results, _ = run_hosts(backend, specs, [sink_for(host) for host in hosts], control, remaining)
        outcome.ended_at = time.time()
        failing = next((i for i, r in enumerate(results) if r.failure or (
            r.exit_code != 0 and not (r.stopped or r.timed_out))), None)
        result = results[failing if failing is not None else 0]
        if result.failure:
            raise JobFailure(result.failure)
        if failing is None and any(r.stopped or r.timed_out for r in results):
            outcome.status = "Stopped"
            timed_out = any(r.timed_out for r in results) and not any(r.stopped for r in results)
            outcome.secondary = "MaxRuntimeExceeded" if timed_out else "Stopped"
            reporter.secondary("Stopping", "Stopping the training job")
        elif failing is not None:
            outcome.failure_reason = _failure_reason(folders[failing], result,
                                                     launch.commands.get(hosts[failing], launch.command),
                                                     script_mode=launch.script_mode)
        else:
            outcome.status = outcome.secondary = "Completed"

        if outcome.status != "Failed":
            reporter.secondary("Uploading", "Uploading generated training model")
        _merge_hosts(folders)
        outcome.model_artifacts = _upload_outputs(job, opt_ml, ctx, upload_model=outcome.status != "Failed",
                                                  log=reporter.log)
    except (JobFailure, StagingError, UnresolvableImage, gpus.GpuUnavailable) as exc:
        outcome.status = outcome.secondary = "Failed"
        outcome.failure_reason = _clip(str(exc))
    except Exception as exc:  # noqa: BLE001 - a job must end, whatever went wrong around it
        outcome.status = outcome.secondary = "Failed"
        outcome.failure_reason = _clip(f"InternalServerError: smlocal could not run the job: {exc!r}")
    finally:
        if not os.environ.get("SMLOCAL_KEEP_JOB_DIRS"):
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)
    outcome.metrics = metrics.final() if metrics is not None else []
    outcome.metric_summaries = metrics.summaries() if metrics is not None else []
    return outcome


@dataclass(frozen=True)
class _Launch:
    """What every host of the job runs.

    Attributes:
        python: The interpreter the job's Python programs run with.
        command: The command line (empty: the image runs its own entry).
        workdir: The working folder.
        env: Environment on top of the job's own (a requirements environment's pip settings...).
        script_mode: Whether a failure is the framework toolkit's (FailureReason from stderr).
        commands: A host's own command where it differs from ``command`` (torchrun's node rank).
        own_network: The hosts need the job's private network even alone (mpirun's ``eth0``).
    """

    python: str
    command: tuple[str, ...] = ()
    workdir: str = "/opt/ml"
    env: dict[str, str] = field(default_factory=dict)
    script_mode: bool = False
    commands: dict[str, tuple[str, ...]] = field(default_factory=dict)
    own_network: bool = False


class _Launcher(Protocol):
    """How a backend's jobs are launched: the one place the runner tells the two kinds apart."""

    def runtime(self, image: str, *, has_entry_point: bool) -> Runtime:
        """What the image is (the metrics, image environment and packages follow from it)."""

    def hosts(self, job: dict) -> tuple[str, ...]:
        """The job's hosts."""

    def launch(self, job: dict, runtime: Runtime, folders: list[Path], layouts: list[contract.JobLayout],
               reporter: Reporter, params: contract.FrameworkParams) -> _Launch:
        """What the hosts run, once their channels are staged."""


class _ImageLaunch:
    """A backend that runs the image itself: the image must be there (checked before), every
    instance is its own host, and the image's own entry runs."""

    def __init__(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx

    def runtime(self, image: str, *, has_entry_point: bool) -> Runtime:
        try:  # what it is only names its metrics
            return resolve_runtime(image, has_entry_point=has_entry_point)
        except UnresolvableImage:
            return Runtime(kind="custom", image=image)

    def hosts(self, job: dict) -> tuple[str, ...]:
        count = contract.instance_count(job.get("ResourceConfig") or {})  # InstanceGroups: their sum
        return tuple(f"algo-{i}" for i in range(1, count + 1))

    def launch(self, job: dict, runtime: Runtime, folders: list[Path], layouts: list[contract.JobLayout],
               reporter: Reporter, params: contract.FrameworkParams) -> _Launch:
        if runtime.kind == "framework" and params.submit_directory and \
                not params.submit_directory.startswith("s3://"):
            for folder in folders:  # the toolkit fetches an s3:// one itself; a local one is not in the image
                _fetch_code(params.submit_directory, folder / "code", self.ctx)
        return _Launch(python=self.ctx.python)


class _LocalLaunch:
    """The process backend: the image maps to this machine's software; every instance is a host
    (a sandboxed process), and a PyTorch job's distribution runs as its image runs it."""

    def __init__(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx

    def runtime(self, image: str, *, has_entry_point: bool) -> Runtime:
        mapping = self.ctx.settings.image_mapping(image)
        if mapping is not None:
            return Runtime(kind="script" if mapping.kind == "script" else "custom", image=image)
        return resolve_runtime(image, has_entry_point=has_entry_point)

    def hosts(self, job: dict) -> tuple[str, ...]:
        count = contract.instance_count(job.get("ResourceConfig") or {})
        return tuple(f"algo-{i}" for i in range(1, count + 1))

    def launch(self, job: dict, runtime: Runtime, folders: list[Path], layouts: list[contract.JobLayout],
               reporter: Reporter, params: contract.FrameworkParams) -> _Launch:
        command, workdir, python, extra_env, container_mode = _local_command(
            job, runtime, layouts[0], folders[0], self.ctx, reporter, params)
        script_mode = runtime.kind == "framework" and not container_mode
        for folder in folders[1:] if script_mode else ():  # every host has its own /opt/ml/code
            shutil.copytree(folders[0] / "code", folder / "code", symlinks=True, dirs_exist_ok=True)
        commands: dict[str, tuple[str, ...]] = {}
        own_network = False
        if script_mode and runtime.framework == "pytorch":
            try:
                plans = [distribution.plan(
                    json.loads(layout.env["SM_TRAINING_ENV"]), command, program=params.program,
                    args=layout.args, python=python, package=(folders[0] / "code" / "setup.py").is_file(),
                    mpirun=shutil.which("mpirun", path=layout.env.get("PATH") or os.environ.get("PATH")),
                    env_names=tuple(layout.env)) for layout in layouts]
            except distribution.DistributionError as exc:
                raise JobFailure(str(exc)) from exc
            extra_env = {**plans[0].env, **extra_env}
            if any(plan.launch_agent for plan in plans):  # one per job: only its own hosts start processes
                extra_env[mpi_agent.TOKEN_ENV] = secrets.token_hex(16)
            # Open MPI binds the job's interface (-mca oob/btl_tcp_if_include eth0), alone too
            own_network = any(plan.runner in (distribution.MPIRUN, distribution.SMDDP) for plan in plans)
            for host, plan in zip(self.hosts(job), plans):
                commands[host] = plan.command
                if plan.runner != distribution.PROCESS:
                    reporter.log(f"smlocal: {host}: {plan.runner} runs {shlex.join(plan.command)}")
        return _Launch(python, tuple(command), workdir, extra_env, script_mode=script_mode, commands=commands,
                       own_network=own_network)


def _local_command(job: dict, runtime: Runtime, layout: contract.JobLayout, opt_ml: Path, ctx: RuntimeContext,
                   reporter: Reporter, params: contract.FrameworkParams
                   ) -> tuple[list[str], str, str, dict[str, str], bool]:
    """What runs on this machine for the image: (command, workdir, python, extra env, container mode)."""
    algorithm = job.get("AlgorithmSpecification") or {}
    entrypoint = tuple(algorithm.get("ContainerEntrypoint") or ())
    python = ctx.python
    command: list[str]
    workdir = "/opt/ml"
    extra_env: dict[str, str] = {}
    container_mode = bool(entrypoint) or bool(
        algorithm.get("ContainerArguments") and runtime.kind in ("custom", "framework", "python"))
    if container_mode:
        python, extra_env = _container_python(job, opt_ml, ctx, reporter)
        command = _container_command(job, runtime, ctx, python)
    elif runtime.kind == "framework":
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
        command = list(contract.script_command(params.program, layout.args, python=python,
                                               package=(code_dir / "setup.py").is_file(),
                                               framework=runtime.framework))
        workdir = "/opt/ml/code"
    elif runtime.kind == "algorithm":
        command = [python, "-m", ALGORITHM_MODULES[runtime.algorithm], "train"]
    elif runtime.kind == "python":
        raise JobFailure(
            f"AlgorithmError: the image {runtime.image} has no training program of its own (it runs "
            "'train'): give AlgorithmSpecification.ContainerEntrypoint, as the SageMaker SDK's "
            "@remote and @step functions do."
        )
    else:
        mapping = ctx.settings.image_mapping(runtime.image)
        command = container_command.local_command(mapping.command, (), entrypoint=None, arguments=None,
                                                  python=python, mapped=True)
        command += list(layout.args if runtime.kind == "script" else ())
    return command, workdir, python, extra_env, container_mode


def _environment(ctx: RuntimeContext, runtime: Runtime, layout_env: dict[str, str], extra_env: dict[str, str],
                 python: str, name: str) -> dict[str, str]:
    env = {**ctx.base_env(), **layout_env, **extra_env, "SMLOCAL_JOB": job_marker("training", name)}
    packages_path = frameworks.python_path(env.get("PYTHONPATH"), runtime.framework)
    if packages_path:  # the image's own packages (sagemaker_containers ...)
        env["PYTHONPATH"] = packages_path
    if runtime.kind == "algorithm":
        env["SMLOCAL_ALGO_VERSION"] = runtime.version or ""
    if runtime.kind == "custom" and ctx.settings.image_mapping(runtime.image) is not None:
        env.update(ctx.settings.image_mapping(runtime.image).environment)
    if python != ctx.python:
        env["PATH"] = f"{Path(python).parent}:{env['PATH']}"
    return env


def _merge_hosts(folders: list[Path]) -> None:
    """Every host's ``model/`` and ``output/data/`` into the first host's (its files win): what the
    job uploads. Only regular files are taken; nothing the job made a link is followed."""
    first = folders[0]
    for folder in folders[1:]:
        for rel in ("model", "output/data"):
            for found in jobfiles.walk(folder, rel):
                if found.kind != "file":
                    continue
                source = folder / rel / Path(*found.parts)
                target = first / rel / Path(*found.parts)
                if os.path.lexists(target) or any(p.is_symlink() for p in target.parents if p != first):
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


def metric_definitions(job: dict, runtime: Runtime) -> list[dict]:
    """The MetricDefinitions applied to a training job's log: the service knows a built-in
    algorithm's metrics, and adds the job's own MetricDefinitions."""
    own = list((job.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or [])
    return (builtin_metrics.definitions(runtime.algorithm) if runtime.kind == "algorithm" else []) + own


def _training_image(job: dict) -> str:
    spec = job.get("AlgorithmSpecification", {})
    image = spec.get("TrainingImage")
    if not image:
        raise JobFailure(
            f"smlocal cannot run AlgorithmName '{spec.get('AlgorithmName')}': marketplace and "
            "custom algorithm resources are not emulated. Give a TrainingImage."
        )
    return image


def _container_command(job: dict, runtime: Runtime, ctx: RuntimeContext, python: str) -> list[str]:
    """ContainerEntrypoint + ContainerArguments (or the arguments after the image's own entry).

    A mapped image's ENTRYPOINT is its mapped command; an AWS image is treated as having none
    (the framework images' entry scripts run the given command as it is). The mapping's programs
    are this machine's (its interpreter paths are kept); the request's name the image's (any
    Python path is the job's): see :func:`container_command.local_command`.
    """
    algorithm = job.get("AlgorithmSpecification") or {}
    mapping = ctx.settings.image_mapping(runtime.image) if runtime.kind in ("custom", "script") else None
    argv = container_command.local_command(mapping.command if mapping is not None else (), (),
                                           entrypoint=algorithm.get("ContainerEntrypoint"),
                                           arguments=algorithm.get("ContainerArguments"),
                                           python=python, mapped=mapping is not None)
    if not argv:
        raise JobFailure(f"AlgorithmError: the image {runtime.image} has no entrypoint and none was given.")
    return argv


def _container_python(job: dict, opt_ml: Path, ctx: RuntimeContext,
                      reporter: Reporter) -> tuple[str, dict[str, str]]:
    """The interpreter and extra environment of a job that runs its own ContainerEntrypoint.

    The SDK's remote-function driver pip-installs its dependency file: smlocal builds that
    environment outside the sandbox (cached) and tells the driver's pip to use no index.
    """
    algorithm = job.get("AlgorithmSpecification") or {}
    if not remote_function.is_function_job(algorithm):
        return ctx.python, {}
    folder = opt_ml.parent / "_requirements"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        if not remote_function.stage_requirements(opt_ml, algorithm.get("ContainerArguments") or (), folder):
            return ctx.python, dict(remote_function.PIP_OFFLINE_ENV)
        try:
            python = python_for_requirements(folder, ctx.envs_root, reporter.log)
        except RequirementsError as exc:
            raise JobFailure(f"AlgorithmError: RuntimeEnvironmentError: {exc}") from exc
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return python, dict(remote_function.PIP_OFFLINE_ENV)


def _materialize(opt_ml: Path, layout: contract.JobLayout) -> None:
    for rel in layout.dirs:
        (opt_ml / rel).mkdir(parents=True, exist_ok=True)
    for rel, text in layout.files.items():
        target = opt_ml / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _stage_channels(job: dict, opt_ml: Path, ctx: RuntimeContext, reporter: Reporter, *,
                    host: int = 0, groups: list[str] | None = None) -> None:
    """Stages into ``opt_ml`` the channels of host ``host`` (its 0-based index in host order);
    ``groups`` is every host's instance group, in host order (default: one host).

    A channel whose S3DataSource names InstanceGroupNames goes only to the hosts of those groups;
    under ShardedByS3Key its objects are dealt among the hosts that get it."""
    groups = groups or [contract.HOMOGENEOUS_GROUP]
    for channel in job.get("InputDataConfig") or []:
        name = channel["ChannelName"]
        named = ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("InstanceGroupNames")
        takers = [i for i, group in enumerate(groups) if not named or group in named]
        if host not in takers:  # its instance group does not get the channel
            continue
        mode = channel.get("InputMode") or job["AlgorithmSpecification"].get("TrainingInputMode", "File")
        if mode != "File":
            reporter.log(f"smlocal: channel '{name}' asks for {mode} mode; staging it as File mode "
                         f"(files under /opt/ml/input/data/{name}).")
        source = channel.get("DataSource", {})
        s3 = source.get("S3DataSource")
        if not s3:
            raise JobFailure(f"ClientError: channel '{name}': only S3DataSource is supported by smlocal")
        ctx.stager.download_source(s3.get("S3DataType", "S3Prefix"), s3["S3Uri"], opt_ml / "input" / "data" / name,
                                   shard=channel_shard(s3, takers.index(host), len(takers)))


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


def _failure_reason(opt_ml: Path, result, command: tuple[str, ...], *, script_mode: bool) -> str:
    # the job may have made it a link to a host file or a FIFO: only a regular file is read
    failure = jobfiles.read_regular(opt_ml, "output/failure", FAILURE_FILE_READ_MAX)
    if failure is not None:
        text = failure[0].decode(errors="replace").strip()
        if text:
            return _clip(text)
    if script_mode:
        # The error text is always extracted (as the toolkit does for images that capture stderr):
        # a FailureReason that names the exception is what users need to act on.
        return _clip(toolkit_failure.script_failure_reason(result.exit_code, result.stderr_tail, command,
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
