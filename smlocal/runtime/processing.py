"""Runs one processing job end to end: hosts → inputs → containers → outputs.

The service calls :func:`run_processing_job` on a worker thread and learns what happens through a
:class:`ProcessingReporter`; the function returns the outcome and never raises for a job's own
errors (they become FailureReason).

What SageMaker documents, and this module does:

* every host (``algo-1`` .. ``algo-N``) is its own container with its own ``/opt/ml``: config files
  ``/opt/ml/config/processingjobconfig.json`` and ``resourceconfig.json``, each ProcessingInput
  staged at its LocalPath (ShardedByS3Key deals the objects out over the hosts);
* the container runs ``ContainerEntrypoint + ContainerArguments`` with the image ENV and the
  request's Environment; the hosts run concurrently;
* a container exiting non-zero fails the job with FailureReason
  ``AlgorithmError: See job logs for more information``; ``/opt/ml/output/message`` (UTF-8, every
  host's concatenated, first 1 KB) becomes ExitMessage, whatever the end;
* after every container exited 0, each ProcessingOutput's LocalPath is uploaded to its S3Uri from
  every host (the hosts write under the same prefix, as on AWS).

Choices where AWS is silent (see the report of the change): MaxRuntimeInSeconds ends the job
Stopped ("After the condition is met, the processing job is stopped"); outputs are uploaded only
for a Completed job; Pipe input mode is staged as files; Continuous upload happens at the end.
"""

from __future__ import annotations

import codecs
import gzip
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from smlocal.config import ImageMapping
from smlocal.errors import ValidationError
from smlocal.runtime import archives, container_command, contract, frameworks, gpus, jobfiles
from smlocal.runtime.backends.base import RunControl, RunResult, RunSpec
from smlocal.runtime.environments import RequirementsError, python_for_requirements
from smlocal.runtime.images import Runtime, UnresolvableImage, resolve_runtime
from smlocal.runtime.job import RuntimeContext, job_dir, job_marker, pidfile, run_hosts
from smlocal.runtime.staging import StagingError, safe_join

KIND = "processing"
TEXT_MAX = 1024  # FailureReason and ExitMessage: "up to one KB"
EXIT_MESSAGE_READ_MAX = 64 * 1024  # bytes of each host's /opt/ml/output/message read
ALGORITHM_ERROR = "AlgorithmError: See job logs for more information"
EXIT_MESSAGE_FILE = "output/message"  # relative to /opt/ml
# The framework images have no ENTRYPOINT; their base (ubuntu) CMD is bash, which with no
# standard input exits 0 at once. That is what runs when a job gives neither entrypoint nor args.
IMAGE_DEFAULT_COMMAND = ("/bin/bash",)
WORKDIR = "/opt/ml"
_SHELLS = ("bash", "/bin/bash", "/usr/bin/bash", "sh", "/bin/sh")
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass
class ProcessingOutcome:
    """How a processing job ended.

    Attributes:
        status: Completed | Failed | Stopped.
        failure_reason: FailureReason (Failed only).
        exit_message: ExitMessage (the containers' /opt/ml/output/message), if any.
        started_at: When the containers started (ProcessingStartTime).
        ended_at: When the last container ended.
    """

    status: str = "Failed"
    failure_reason: str | None = None
    exit_message: str | None = None
    started_at: float | None = None
    ended_at: float | None = None


class ProcessingReporter(Protocol):
    """How a running processing job tells the service what is happening."""

    def started(self) -> None:
        """The containers are starting (ProcessingStartTime)."""

    def log(self, host: str, line: str) -> None:
        """One line of output of one host (its CloudWatch stream)."""


class JobFailure(Exception):
    """A failure around the user's containers; the message is the FailureReason."""


@dataclass
class _Host:
    name: str
    index: int
    opt_ml: Path
    layout: contract.JobLayout
    result: RunResult | None = None
    gpu: gpus.GpuPlan = gpus.GpuPlan()


def host_names(count: int) -> list[str]:
    """``algo-1`` .. ``algo-N``, as SageMaker names the instances of a job."""
    return [f"algo-{i}" for i in range(1, max(1, count) + 1)]


def run_processing_job(job: dict, ctx: RuntimeContext, reporter: ProcessingReporter,
                       control: RunControl) -> ProcessingOutcome:
    """Runs a processing job (a DescribeProcessingJob-shaped document) to its end."""
    name = job["ProcessingJobName"]
    outcome = ProcessingOutcome()
    hosts: list[_Host] = []
    try:
        image = job["AppSpecification"]["ImageUri"]
        backend = ctx.backend_for(image)
        problem = backend.image_problem(image)  # None on the process backend: its runners map images
        if problem:
            raise JobFailure(problem)
        launcher: _Launcher = _ImageLaunch(ctx) if backend.runs_images else _LocalLaunch(ctx)
        runtime, mapping = launcher.runtime(image)
        cluster = job["ProcessingResources"]["ClusterConfig"]
        names = host_names(int(cluster.get("InstanceCount", 1)))
        image_env = _image_env(runtime)
        for index, host in enumerate(names):
            opt_ml = job_dir(ctx, KIND, name, host)
            hosts.append(_Host(host, index, opt_ml, _layout(job, name, host, names, ctx, image_env)))
            _materialize(opt_ml, hosts[-1].layout)
        _check_supported(job)
        _plan_gpus(cluster, hosts, ctx, reporter)
        _log_notes(job, hosts, reporter)
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            list(pool.map(lambda h: _stage_inputs(job, h, len(hosts), ctx), hosts))
        python, command = launcher.launch(hosts[0], runtime, mapping, reporter)
        if control.stop.is_set():
            outcome.status = "Stopped"
            return outcome
        env = {**ctx.base_env(), **hosts[0].layout.env, "SMLOCAL_JOB": job_marker(KIND, name)}
        # the image's own packages, as in training (the scikit-learn image ships sagemaker_containers too)
        packages_path = frameworks.python_path(env.get("PYTHONPATH"), runtime.framework)
        if packages_path:
            env["PYTHONPATH"] = packages_path
        if mapping is not None and mapping.kind != "script":
            env.update(mapping.environment)
        if python != ctx.python:
            env["PATH"] = f"{Path(python).parent}:{env['PATH']}"
        outcome.started_at = time.time()
        reporter.started()
        cause = _run_hosts(job, hosts, tuple(command), env, ctx, reporter, control)
        outcome.ended_at = time.time()
        outcome.exit_message = _exit_message(hosts)
        if cause == "failed":
            outcome.failure_reason = ALGORITHM_ERROR
        elif cause == "stopped" or any(h.result and h.result.timed_out for h in hosts):
            outcome.status = "Stopped"
        else:
            _upload_outputs(job, hosts, ctx, reporter)
            outcome.status = "Completed"
    except (JobFailure, UnresolvableImage, gpus.GpuUnavailable) as exc:
        outcome.status, outcome.failure_reason = "Failed", _clip(str(exc))
    except StagingError as exc:
        outcome.status, outcome.failure_reason = "Failed", _clip(_client_error(str(exc)))
    except Exception as exc:  # noqa: BLE001 - a job must end, whatever went wrong around it
        outcome.status = "Failed"
        outcome.failure_reason = _clip(f"InternalServerError: smlocal could not run the job: {exc!r}")
    finally:
        if not os.environ.get("SMLOCAL_KEEP_JOB_DIRS"):
            for host in hosts:
                shutil.rmtree(host.opt_ml, ignore_errors=True)
    return outcome


# ---- preparing the hosts
class _Launcher(Protocol):
    """How a backend's jobs are launched: the one place the runner tells the two kinds apart."""

    def runtime(self, image: str) -> tuple[Runtime, ImageMapping | None]:
        """What the image is, and its mapping to this machine's software if it has one."""

    def launch(self, host: _Host, runtime: Runtime, mapping: ImageMapping | None,
               reporter: ProcessingReporter) -> tuple[str, list[str]]:
        """The interpreter and command every host runs, once the inputs are staged."""


class _ImageLaunch:
    """A backend that runs the image itself (it must be there, checked before): the image runs its
    own entry with its own software."""

    def __init__(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx

    def runtime(self, image: str) -> tuple[Runtime, ImageMapping | None]:
        return Runtime(kind="custom", image=image), None

    def launch(self, host: _Host, runtime: Runtime, mapping: ImageMapping | None,
               reporter: ProcessingReporter) -> tuple[str, list[str]]:
        return self.ctx.python, []


class _LocalLaunch:
    """The process backend: the image maps to this machine's software."""

    def __init__(self, ctx: RuntimeContext) -> None:
        self.ctx = ctx

    def runtime(self, image: str) -> tuple[Runtime, ImageMapping | None]:
        mapping = self.ctx.settings.image_mapping(image)
        if mapping is not None:
            return Runtime(kind="framework" if mapping.kind == "script" else "custom", image=image), mapping
        # a processing job never runs a built-in algorithm's training: XGBoost is the framework image
        runtime = resolve_runtime(image, has_entry_point=True)
        if runtime.kind == "algorithm":
            raise UnresolvableImage(
                f"smlocal cannot run the built-in algorithm image '{image}' as a processing container. "
                "Map it to a local command in [tool.smlocal.images] to run it.")
        return runtime, None

    def launch(self, host: _Host, runtime: Runtime, mapping: ImageMapping | None,
               reporter: ProcessingReporter) -> tuple[str, list[str]]:
        python = _python_for(host, self.ctx, lambda line: reporter.log(host.name, line))
        return python, _command(host.layout, runtime, mapping, python)


def _image_env(runtime: Runtime) -> dict[str, str] | None:
    if runtime.framework != "sklearn":
        return None
    return {**contract.SKLEARN_IMAGE_ENV, "SAGEMAKER_SKLEARN_VERSION": runtime.version or ""}


def _layout(job: dict, name: str, host: str, names: list[str], ctx: RuntimeContext,
            image_env: dict[str, str] | None) -> contract.JobLayout:
    try:
        return contract.processing_layout(
            job, job_name=name, current_host=host, hosts=names, num_cpus=os.cpu_count() or 1,
            region=ctx.settings.region, job_arn=job.get("ProcessingJobArn"), image_env=image_env)
    except ValidationError as exc:  # CreateProcessingJob checked it; a stored job may predate that
        raise JobFailure(f"ClientError: {exc.message}") from exc


def _materialize(opt_ml: Path, layout: contract.JobLayout) -> None:
    for rel in layout.dirs:
        (opt_ml / rel).mkdir(parents=True, exist_ok=True)
    for rel, text in layout.files.items():
        target = opt_ml / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _check_supported(job: dict) -> None:
    for item in job.get("ProcessingInputs") or []:
        if item.get("DatasetDefinition") and not item.get("AppManaged"):
            raise JobFailure(f"ClientError: ProcessingInput {item['InputName']}: DatasetDefinition "
                             "(Athena/Redshift) inputs are not supported by smlocal; stage the query "
                             "result in S3 and give an S3Input.")
    for item in (job.get("ProcessingOutputConfig") or {}).get("Outputs") or []:
        if item.get("FeatureStoreOutput") and not item.get("AppManaged"):
            raise JobFailure(f"ClientError: ProcessingOutput {item['OutputName']}: FeatureStoreOutput "
                             "is not supported by smlocal; give an S3Output.")


def _plan_gpus(cluster: dict, hosts: list[_Host], ctx: RuntimeContext, reporter: ProcessingReporter) -> None:
    """Each host's GPUs (:func:`gpus.prepare`, as for training: a GPU instance type gets as many of
    this machine's, or the CPU and a note first in every host's log).

    Raises:
        gpus.GpuUnavailable: there are none and ``gpu = "fail"`` (the FailureReason).
    """
    def log(line: str) -> None:
        for host in hosts:
            reporter.log(host.name, line)

    plans = gpus.prepare(ctx.settings, cluster, [h.name for h in hosts], log)
    for host, plan in zip(hosts, plans):
        host.gpu = plan


def _log_notes(job: dict, hosts: list[_Host], reporter: ProcessingReporter) -> None:
    notes = []
    for binding in hosts[0].layout.inputs:
        if binding.mode == "Pipe":
            notes.append(f"smlocal: ProcessingInput '{binding.name}' asks for Pipe mode; it is staged as "
                         f"File mode (files under {_container_path(binding.path)}).")
    for binding in hosts[0].layout.outputs:
        if binding.mode == "Continuous":
            notes.append(f"smlocal: ProcessingOutput '{binding.name}' asks for Continuous upload; it is "
                         "uploaded once, when the job ends.")
    for host in hosts:
        for note in notes:
            reporter.log(host.name, note)


def _stage_inputs(job: dict, host: _Host, host_count: int, ctx: RuntimeContext) -> None:
    """Downloads every S3 input of one host into its LocalPath (nested LocalPaths are fine)."""
    managed = {i["InputName"] for i in job.get("ProcessingInputs") or [] if i.get("AppManaged")}
    for number, binding in enumerate(host.layout.inputs):
        if binding.s3_uri is None or binding.name in managed:
            continue
        shard = (host.index, host_count) if binding.distribution == "ShardedByS3Key" else None
        scratch = host.opt_ml.parent / f"_staging-{host.name}-{number}"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            ctx.stager.download_source(binding.s3_data_type, binding.s3_uri, scratch, shard=shard)
            if binding.compression == "Gzip":
                _gunzip_tree(scratch)
            _merge_into(scratch, host.opt_ml / binding.path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _gunzip_tree(folder: Path) -> None:
    """Decompresses every file in place (``x.csv.gz`` → ``x.csv``), as Pipe mode would stream it."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        renamed = path.suffix == ".gz"
        target = path.with_suffix("") if renamed else path.with_name(path.name + ".gunzip")
        try:
            with gzip.open(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        except (OSError, EOFError) as exc:
            target.unlink(missing_ok=True)
            raise StagingError(f"S3CompressionType is Gzip but {path.name} is not gzip data: {exc}") from exc
        if renamed:
            path.unlink()
        else:
            os.replace(target, path)


def _merge_into(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        target = safe_join(dest, path.relative_to(source).as_posix())
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def _python_for(host: _Host, ctx: RuntimeContext, log: Callable[[str], None]) -> str:
    """The interpreter: the SDK FrameworkProcessor's runproc.sh pip-installs the sourcedir's
    requirements.txt; smlocal builds (and caches) that environment instead of touching its own."""
    entry = host.layout.entrypoint
    if not (len(entry) >= 2 and entry[0] in _SHELLS and entry[1].endswith("runproc.sh")):
        return ctx.python
    bundle = host.opt_ml / "processing" / "input" / "code" / "sourcedir.tar.gz"
    if not bundle.is_file():
        return ctx.python
    try:
        content = archives.scan(bundle, origin=bundle.name)
        if "requirements.txt" not in content.files:
            return ctx.python
        # one pristine folder per distinct bundle content: the environment cache key covers the
        # local packages' paths and files, so the same sourcedir in a later job reuses the
        # environment (pip builds local packages in-tree, hence re-unpacked every time)
        unpacked = ctx.envs_root / "_sourcedirs" / content.digest
        unpacked.parent.mkdir(parents=True, exist_ok=True)
        with _lock_for(content.digest):
            shutil.rmtree(unpacked, ignore_errors=True)
            archives.extract(bundle, unpacked, origin=bundle.name)
            return python_for_requirements(unpacked, ctx.envs_root, log)
    except RequirementsError as exc:
        raise JobFailure(f"AlgorithmError: {exc}") from exc


def _lock_for(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _command(layout: contract.JobLayout, runtime: Runtime, mapping: ImageMapping | None,
             python: str) -> list[str]:
    """ContainerEntrypoint + ContainerArguments over the image's ENTRYPOINT and CMD, the interpreter local.

    A framework image has no ENTRYPOINT of its own and CMD bash: the arguments run as the command,
    or bash. A mapped custom image's ENTRYPOINT is its mapped command, whose programs are this
    machine's (only ``{python}`` and plain ``python`` mean the job's Python); a request's
    entrypoint names the image's programs, so any Python path there is the job's Python (see
    :func:`container_command.local_command`).
    """
    from_mapping = runtime.kind == "custom" and mapping is not None
    image_entrypoint = tuple(mapping.command) if from_mapping else ()
    return container_command.local_command(image_entrypoint, () if image_entrypoint else IMAGE_DEFAULT_COMMAND,
                                           entrypoint=layout.entrypoint, arguments=layout.args, python=python,
                                           mapped=from_mapping)


# ---- running
def _run_hosts(job: dict, hosts: list[_Host], command: tuple[str, ...], env: dict[str, str],
               ctx: RuntimeContext, reporter: ProcessingReporter, control: RunControl) -> str | None:
    """Runs every host's container at once; returns why they were ended early, if they were:
    ``"failed"`` (a host exited non-zero: the others are stopped), ``"stopped"`` (StopProcessingJob)."""
    limit = (job.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    image = job["AppSpecification"]["ImageUri"]
    names = tuple(h.name for h in hosts)
    containers = ctx.backend_for(image).runs_images  # a container's engine numbers its GPUs; a process is told
    specs = [RunSpec(command=command, env={**env, **({} if containers else host.gpu.environment())},
                     gpus=host.gpu.devices, opt_ml=host.opt_ml, workdir=WORKDIR,
                     network_isolation=bool((job.get("NetworkConfig") or {}).get("EnableNetworkIsolation")),
                     pidfile=pidfile(ctx, KIND, job["ProcessingJobName"], host.name), image=image,
                     entrypoint=tuple(host.layout.entrypoint) or None, arguments=tuple(host.layout.args) or None,
                     hostname=host.name, hosts=names, job=job_marker(KIND, job["ProcessingJobName"]))
             for host in hosts]
    sinks = [lambda line, name=host.name: reporter.log(name, line) for host in hosts]
    results, cause = run_hosts(ctx.backend_for(image), specs, sinks, control, float(limit) if limit else None)
    for host, result in zip(hosts, results):
        host.result = result
    failures = [r.failure for r in results if r is not None and r.failure]
    if failures:
        raise JobFailure(failures[0])
    return cause


def _exit_message(hosts: list[_Host]) -> str | None:
    """Every host's /opt/ml/output/message, concatenated, first 1 KB (None when none wrote one)."""
    parts = []
    for host in hosts:
        # the job may have made it a link to a host file or a FIFO: only a regular file is read
        found = jobfiles.read_regular(host.opt_ml, EXIT_MESSAGE_FILE, EXIT_MESSAGE_READ_MAX)
        if found is None:
            continue
        data, truncated = found
        try:
            parts.append(codecs.getincrementaldecoder("utf-8")().decode(data, final=not truncated))
        except UnicodeDecodeError as exc:
            raise JobFailure(f"ClientError: The exit message file /opt/ml/output/message of {host.name} "
                             "is not UTF-8 encoded.") from exc
    text = "".join(parts)
    return text[:TEXT_MAX] if text else None


def _upload_outputs(job: dict, hosts: list[_Host], ctx: RuntimeContext, reporter: ProcessingReporter) -> None:
    managed = {o["OutputName"] for o in (job.get("ProcessingOutputConfig") or {}).get("Outputs") or []
               if o.get("AppManaged")}
    for host in hosts:
        for binding in host.layout.outputs:
            if binding.s3_uri and binding.name not in managed:
                # the job owns its /opt/ml: nothing there is followed if it is a link
                ctx.stager.upload_tree(host.opt_ml / binding.path, binding.s3_uri, root=host.opt_ml,
                                       log=lambda line, name=host.name: reporter.log(name, line))


# ---- texts
def _container_path(rel: str) -> str:
    return f"{contract.CONTAINER_ROOT}/{rel}" if rel else contract.CONTAINER_ROOT


def _client_error(message: str) -> str:
    return message if message.startswith("ClientError") else f"ClientError: {message}"


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 3] + "..."
