"""What a training or processing job sees inside its container, as pure functions (no I/O).

SageMaker and its training toolkit (``sagemaker-training``, which every framework image runs in
script mode) give a job config files under ``/opt/ml``, directories, environment variables and a
command line. This module computes them from the API request body (as boto3 sends it); the job
runner writes ``files``, creates ``dirs``, stages ``inputs`` and runs the command.

The toolkit modelled is ``sagemaker-training`` 4.x as in the framework images: the scikit-learn
image runs the script with ``capture_error=False``, the PyTorch/TensorFlow/Hugging Face images with
``capture_error=True``; ``hardened=True`` selects toolkit 5.1.4's command line instead. What the
toolkit reports when that command fails is :mod:`smlocal.runtime.toolkit_failure`'s.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from smlocal.config import DEFAULT_ACCOUNT
from smlocal.errors import ValidationError

CONTAINER_ROOT = "/opt/ml"
PROCESSING_PREFIX = "/opt/ml/processing/"
HOMOGENEOUS_GROUP = "homogeneousCluster"
NETWORK_INTERFACE = "eth0"
DEFAULT_LOG_LEVEL = 20  # logging.INFO: the toolkit's default sagemaker_container_log_level

# The toolkit's own hyperparameters: never user arguments, nor "framework params".
_TOOLKIT_HYPERPARAMETERS = frozenset({
    "sagemaker_program", "sagemaker_submit_directory", "sagemaker_enable_cloudwatch_metrics",
    "sagemaker_region", "sagemaker_container_log_level", "sagemaker_job_name",
    "default_user_module_name", "_tuning_objective_metric", "sagemaker_s3_output",
})
# Framework params that make the current instance group a distribution group.
_DISTRIBUTION_FLAGS = (
    "sagemaker_mpi_enabled", "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled", "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled", "sagemaker_torch_distributed_enabled",
)
# Training-environment properties the toolkit does not export as SM_* variables of their own.
_NOT_EXPORTED = frozenset({
    "additional_framework_parameters", "channel_input_dirs", "distribution_hosts",
    "hyperparameters", "is_master", "is_modelparallel_enabled", "is_smddpmprun_installed",
    "is_smddprun_installed", "job_name", "master_hostname",
})
# ENV of the scikit-learn 1.2-1 image (docker/1.2-1 base and final Dockerfiles) that a script can
# observe; pass it as ``image_env`` for that image (PATH and the model server's settings left out).
SKLEARN_IMAGE_ENV = {
    "SAGEMAKER_TRAINING_MODULE": "sagemaker_sklearn_container.training:main",
    "SAGEMAKER_SERVING_MODULE": "sagemaker_sklearn_container.serving:main",
    "SAGEMAKER_SKLEARN_VERSION": "1.2-1",
    "SM_INPUT": "/opt/ml/input",
    "SM_INPUT_TRAINING_CONFIG_FILE": "/opt/ml/input/config/hyperparameters.json",
    "SM_INPUT_DATA_CONFIG_FILE": "/opt/ml/input/config/inputdataconfig.json",
    "SM_CHECKPOINT_CONFIG_FILE": "/opt/ml/input/config/checkpointconfig.json",
    "SM_MODEL_DIR": "/opt/ml/model",
    "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "UTF-8",
    "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
}


@dataclass(frozen=True)
class DataBinding:
    """A data directory of a job and the S3 location it is staged from or uploaded to.

    Attributes:
        name: ChannelName, InputName or OutputName.
        path: Relative to the /opt/ml root, or absolute when outside it.
        s3_uri: Source or destination (None for file-system or dataset-definition inputs).
        s3_data_type, distribution, compression: As in the request (S3DataType, ...).
        mode: Input mode (File, FastFile, Pipe), or an output's S3UploadMode.
    """

    name: str
    path: str
    s3_uri: str | None
    s3_data_type: str = "S3Prefix"
    distribution: str = "FullyReplicated"
    mode: str = "File"
    compression: str = "None"


@dataclass(frozen=True)
class JobLayout:
    """Everything to set up before a job's process starts.

    Attributes:
        files: Path relative to the /opt/ml root -> text.
        dirs: Directories to create, relative to the /opt/ml root.
        env: The user process's whole environment (no host environment merged in).
        args: The user program's arguments in script mode, else the container's arguments.
        entrypoint: ContainerEntrypoint of the request, if any.
        program: The script-mode entry point (``sagemaker_program``), else None.
        cwd: Working directory relative to the root (``code`` in script mode), else None.
        extra_dirs: Absolute directories outside /opt/ml to create (a checkpoint LocalPath).
        inputs: Data to stage before the start.
        outputs: Data to upload (processing outputs, training checkpoints).
    """

    files: dict[str, str]
    dirs: tuple[str, ...]
    env: dict[str, str]
    args: tuple[str, ...]
    entrypoint: tuple[str, ...] = ()
    program: str | None = None
    cwd: str | None = None
    extra_dirs: tuple[str, ...] = ()
    inputs: tuple[DataBinding, ...] = ()
    outputs: tuple[DataBinding, ...] = ()


@dataclass(frozen=True)
class FrameworkParams:
    """The decoded ``sagemaker_*`` hyperparameters (the SDK JSON-encodes them as strings).

    Attributes:
        program, submit_directory, region, job_name, enable_cloudwatch_metrics, s3_output:
            ``sagemaker_<name>`` (submit_directory: S3 URI or path of the source code).
        container_log_level: ``sagemaker_container_log_level`` (20 when absent).
        additional: Every other ``sagemaker_*`` one (``sagemaker_mpi_enabled``, ...): the
            toolkit's "framework params" (SM_FRAMEWORK_PARAMS).
    """

    program: str | None = None
    submit_directory: str | None = None
    region: str | None = None
    container_log_level: Any = DEFAULT_LOG_LEVEL
    job_name: str | None = None
    enable_cloudwatch_metrics: Any = None
    s3_output: str | None = None
    additional: dict[str, Any] = field(default_factory=dict)


def decode_hyperparameters(hps: Mapping[str, Any] | None) -> dict[str, Any]:
    """Decodes each value as JSON, keeping the raw value when that fails (as the toolkit).

    Example: ``{"epochs": "3", "name": '"x"', "opt": "adam"}`` ->
    ``{"epochs": 3, "name": "x", "opt": "adam"}``.
    """
    decoded: dict[str, Any] = {}
    for key, value in (hps or {}).items():
        try:
            decoded[key] = json.loads(value)
        except (ValueError, TypeError):
            decoded[key] = value
    return decoded


def _split(decoded: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Decoded hyperparameters -> (toolkit-reserved, framework params, user hyperparameters)."""
    reserved = {k: v for k, v in decoded.items()
                if k in _TOOLKIT_HYPERPARAMETERS or k.startswith("sagemaker_")}
    framework = {k: v for k, v in reserved.items() if k not in _TOOLKIT_HYPERPARAMETERS}
    return reserved, framework, {k: v for k, v in decoded.items() if k not in reserved}


def framework_params(hps: Mapping[str, Any] | None) -> FrameworkParams:
    """Decodes the toolkit's hyperparameters from a request's HyperParameters."""
    reserved, framework, _ = _split(decode_hyperparameters(hps))
    return FrameworkParams(
        program=reserved.get("sagemaker_program"),
        submit_directory=reserved.get("sagemaker_submit_directory"),
        region=reserved.get("sagemaker_region"),
        container_log_level=reserved.get("sagemaker_container_log_level", DEFAULT_LOG_LEVEL),
        job_name=reserved.get("sagemaker_job_name"),
        enable_cloudwatch_metrics=reserved.get("sagemaker_enable_cloudwatch_metrics"),
        s3_output=reserved.get("sagemaker_s3_output"),
        additional=framework,
    )


def _text(value: Any) -> str:
    """The toolkit's text of a scalar: bytes as latin-1, None as empty, else ``str``."""
    if value is None:
        return ""
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def env_value(value: Any) -> str:
    """One SM_* variable's value: strings as they are, anything else as sorted compact JSON."""
    if value is None or isinstance(value, (str, bytes)):
        return _text(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def to_cmd_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """User hyperparameters as the toolkit's arguments: sorted ``--key value`` pairs (``-k`` for a
    one-letter key), dicts as ``k=v,k2=v2``, anything else through ``str`` (``True``, ``0.1``)."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        name, value = _text(key), hyperparameters[key]
        args.append(("--%s" if len(name) > 1 else "-%s") % name if name else "")
        if hasattr(value, "items"):
            args.append(",".join("%s=%s" % (k, v) for k, v in sorted(value.items())))
        else:
            args.append(_text(value))
    return args


def _rel(container_path: str) -> str | None:
    """A container path relative to /opt/ml, or None when it is outside."""
    norm = posixpath.normpath(container_path)
    if norm == CONTAINER_ROOT:
        return ""
    return norm[len(CONTAINER_ROOT) + 1:] if norm.startswith(CONTAINER_ROOT + "/") else None


def _instance_groups(resources: Mapping[str, Any], hosts: Sequence[str]) -> list[dict[str, Any]]:
    """resourceconfig.json's instance_groups; hosts are dealt to the groups in request order."""
    groups = resources.get("InstanceGroups") or [{
        "InstanceGroupName": HOMOGENEOUS_GROUP,
        "InstanceType": resources.get("InstanceType", "local"), "InstanceCount": len(hosts)}]
    result, start = [], 0
    for i, group in enumerate(groups):
        count = len(hosts) - start if i == len(groups) - 1 else int(group.get("InstanceCount", 0))
        result.append({"instance_group_name": group["InstanceGroupName"],
                       "instance_type": group["InstanceType"],
                       "hosts": list(hosts[start:start + count])})
        start += count
    return result


def instance_count(resources: Mapping[str, Any]) -> int:
    """How many instances a ResourceConfig asks for: InstanceCount, or the InstanceGroups' sum."""
    groups = resources.get("InstanceGroups")
    if groups:
        return max(1, sum(int(g.get("InstanceCount") or 0) for g in groups))
    return max(1, int(resources.get("InstanceCount") or 1))


def host_instance_types(resources: Mapping[str, Any], hosts: Sequence[str]) -> list[str | None]:
    """Each host's instance type (its instance group's), in ``hosts`` order."""
    by_host = {h: g["instance_type"] for g in _instance_groups(resources, hosts) for h in g["hosts"]}
    return [None if by_host.get(h) == "local" else by_host.get(h) for h in hosts]


def host_instance_groups(resources: Mapping[str, Any], hosts: Sequence[str]) -> list[str]:
    """Each host's instance group name (``homogeneousCluster`` without InstanceGroups), in ``hosts`` order."""
    by_host = {h: g["instance_group_name"] for g in _instance_groups(resources, hosts) for h in g["hosts"]}
    return [by_host.get(h, HOMOGENEOUS_GROUP) for h in hosts]


def _channel_config(channel: Mapping[str, Any], default_mode: str) -> dict[str, str]:
    """One channel's inputdataconfig.json entry (FastFile is written as File)."""
    s3 = channel.get("DataSource", {}).get("S3DataSource") or {}
    entry = {"ContentType": channel["ContentType"]} if channel.get("ContentType") else {}
    mode = channel.get("InputMode") or default_mode
    entry["TrainingInputMode"] = "File" if mode == "FastFile" else mode
    entry["S3DistributionType"] = s3.get("S3DataDistributionType", "FullyReplicated")
    entry["RecordWrapperType"] = channel.get("RecordWrapperType", "None")
    return entry


def _validate_training(request: Mapping[str, Any]) -> None:
    default_mode = (request.get("AlgorithmSpecification") or {}).get("TrainingInputMode")
    seen: set[str] = set()
    for channel in request.get("InputDataConfig") or []:
        name = channel["ChannelName"]
        if name in seen:
            raise ValidationError(f"Channel names must be unique. Duplicate channel name: {name}")
        seen.add(name)
        s3 = channel.get("DataSource", {}).get("S3DataSource")
        if ((channel.get("InputMode") or default_mode) == "FastFile" and s3
                and s3.get("S3DataType") != "S3Prefix"):
            raise ValidationError(
                f"Channel {name}: FastFile input mode requires S3DataType S3Prefix.")


def training_layout(
    request: Mapping[str, Any], *, job_name: str, region: str, current_host: str = "algo-1",
    hosts: Sequence[str] = ("algo-1",), num_cpus: int, num_gpus: int = 0, memory_mb: int | None = None,
    job_arn: str | None = None, image_env: Mapping[str, str] | None = None,
    script_mode: bool | None = None, base_dir: str = CONTAINER_ROOT,
) -> JobLayout:
    """The contract of one host of a training job.

    In script mode (by default when ``sagemaker_program`` is set) env is what the toolkit hands
    the user script: image ENV < request Environment < TRAINING_JOB_NAME/ARN < the toolkit's
    SAGEMAKER_JOB_NAME, CURRENT_HOST, SAGEMAKER_REGION < SM_* < PYTHONPATH. Otherwise env stops
    at TRAINING_JOB_NAME/ARN and args are ContainerArguments, or ``train`` without an entrypoint.

    Args:
        request: CreateTrainingJob request body.
        job_name: TrainingJobName.
        region: The job's region (SAGEMAKER_REGION when ``sagemaker_region`` is absent).
        current_host, hosts: This host and all hosts (listed sorted, as SageMaker does).
        num_cpus, num_gpus: SM_NUM_CPUS and SM_NUM_GPUS.
        memory_mb: Unused: the contract tells the job no memory figure.
        job_arn: TrainingJobArn (default: the request's, else built from region, the default
            account and the lowered name).
        image_env: The image's ENV (e.g. SAGEMAKER_TRAINING_MODULE); lowest precedence.
        script_mode: Force script mode on or off.
        base_dir: Where /opt/ml really is for the process (the paths in env use it).

    Raises:
        ValidationError: What CreateTrainingJob rejects beyond the botocore model.
    """
    del memory_mb
    _validate_training(request)
    join = lambda *parts: posixpath.join(base_dir, *parts)  # noqa: E731
    algo = request.get("AlgorithmSpecification") or {}
    default_mode = algo.get("TrainingInputMode") or "File"
    channels = list(request.get("InputDataConfig") or [])
    hps = dict(request.get("HyperParameters") or {})
    groups = _instance_groups(request.get("ResourceConfig") or {}, list(hosts))
    group = next((g for g in groups if current_host in g["hosts"]), groups[0])
    resource_config = {
        "current_host": current_host, "current_instance_type": group["instance_type"],
        "current_group_name": group["instance_group_name"], "hosts": sorted(hosts),
        "instance_groups": groups, "network_interface_name": NETWORK_INTERFACE, "topology": None,
    }
    input_data_config = {c["ChannelName"]: _channel_config(c, default_mode) for c in channels}
    files = {
        "input/config/hyperparameters.json": json.dumps(hps),
        "input/config/resourceconfig.json": json.dumps(resource_config),
        "input/config/inputdataconfig.json": json.dumps(input_data_config),
    }
    dirs = ["model", "output", "output/data", "input/config", "input/data", "code"]
    inputs, extra_dirs, outputs = [], [], []
    for channel in channels:
        s3 = channel.get("DataSource", {}).get("S3DataSource") or {}
        dirs.append("input/data/" + channel["ChannelName"])
        inputs.append(DataBinding(
            channel["ChannelName"], dirs[-1], s3.get("S3Uri"), s3.get("S3DataType", "S3Prefix"),
            s3.get("S3DataDistributionType", "FullyReplicated"),
            channel.get("InputMode") or default_mode, channel.get("CompressionType", "None")))
    if request.get("CheckpointConfig"):
        checkpoint = request["CheckpointConfig"]
        local = checkpoint.get("LocalPath") or "/opt/ml/checkpoints"
        files["input/config/checkpointconfig.json"] = json.dumps(
            {"LocalPath": local, "S3Uri": checkpoint["S3Uri"]})
        path = _rel(local) if _rel(local) is not None else local
        (dirs if _rel(local) is not None else extra_dirs).append(path)
        outputs.append(DataBinding("checkpoints", path, checkpoint["S3Uri"], mode="Continuous"))
    arn = job_arn or request.get("TrainingJobArn") or (
        f"arn:aws:sagemaker:{region}:{DEFAULT_ACCOUNT}:training-job/{job_name.lower()}")
    container_env = {**(image_env or {}), **(request.get("Environment") or {}),
                     "TRAINING_JOB_NAME": job_name, "TRAINING_JOB_ARN": arn}
    if script_mode is None:
        script_mode = "sagemaker_program" in hps or "SAGEMAKER_PROGRAM" in container_env
    common = dict(files=files, dirs=tuple(dict.fromkeys(dirs)), extra_dirs=tuple(extra_dirs),
                  inputs=tuple(inputs), outputs=tuple(outputs))
    if not script_mode:
        entrypoint = tuple(algo.get("ContainerEntrypoint") or ())
        args = tuple(algo.get("ContainerArguments") or (() if entrypoint else ("train",)))
        return JobLayout(env=container_env, args=args, entrypoint=entrypoint, **common)

    reserved, framework, user_hps = _split(decode_hyperparameters(hps))
    program_env = container_env.get("SAGEMAKER_PROGRAM")
    entry_point = program_env or reserved.get("sagemaker_program")
    module_name = program_env or str(reserved.get("sagemaker_program"))
    dist_groups = framework.get("sagemaker_distribution_instance_groups")
    if dist_groups is None:
        flagged = any(framework.get(flag, False) for flag in _DISTRIBUTION_FLAGS)
        dist_groups = [group["instance_group_name"]] if flagged else []
    dist_hosts = [h for g in groups if g["instance_group_name"] in dist_groups for h in g["hosts"]]
    master = dist_hosts[0] if dist_hosts else resource_config["hosts"][0]
    mp_parameters = container_env.get("SM_HP_MP_PARAMETERS")
    channel_dirs = {c["ChannelName"]: join("input/data", c["ChannelName"]) for c in channels}
    training_env = {  # every property of the toolkit's Environment: SM_TRAINING_ENV
        "additional_framework_parameters": framework, "channel_input_dirs": channel_dirs,
        "current_host": current_host, "current_instance_group": group["instance_group_name"],
        "current_instance_group_hosts": group["hosts"], "current_instance_type": group["instance_type"],
        "distribution_hosts": dist_hosts, "distribution_instance_groups": dist_groups,
        "framework_module": container_env.get("SAGEMAKER_TRAINING_MODULE"),
        "hosts": resource_config["hosts"], "hyperparameters": user_hps,
        "input_config_dir": join("input/config"), "input_data_config": input_data_config,
        "input_dir": join("input"), "instance_groups": [g["instance_group_name"] for g in groups],
        "instance_groups_dict": {g["instance_group_name"]: g for g in groups},
        "is_hetero": len(groups) > 1, "is_master": current_host == master,
        "is_modelparallel_enabled": mp_parameters and mp_parameters != "{}",
        "is_smddpmprun_installed": False, "is_smddprun_installed": False, "job_name": job_name,
        "log_level": reserved.get("sagemaker_container_log_level", DEFAULT_LOG_LEVEL),
        "master_hostname": master, "model_dir": join("model"),
        "module_dir": str(reserved.get("sagemaker_submit_directory", join("code"))),
        "module_name": module_name[:-3] if module_name.endswith(".py") else module_name,
        "network_interface_name": NETWORK_INTERFACE, "num_cpus": num_cpus, "num_gpus": num_gpus,
        "num_neurons": 0, "output_data_dir": join("output/data"), "output_dir": join("output"),
        "output_intermediate_dir": join("output/intermediate"), "resource_config": resource_config,
        "user_entry_point": entry_point,
    }
    user_args = to_cmd_args(user_hps)
    exported = {k: v for k, v in training_env.items() if k not in _NOT_EXPORTED}
    exported.update(hps=user_hps, framework_params=framework, training_env=training_env,
                    channels=sorted(channel_dirs), user_args=user_args)
    exported.update({f"channel_{k}": v for k, v in channel_dirs.items()})
    exported.update({f"hp_{k}": v for k, v in user_hps.items()})
    env = {
        **container_env,
        "SAGEMAKER_JOB_NAME": _text(reserved.get("sagemaker_job_name", "")),
        "CURRENT_HOST": current_host,
        "SAGEMAKER_REGION": _text(reserved.get("sagemaker_region", region) or ""),
        **{f"SM_{str(k).upper()}": env_value(v) for k, v in exported.items() if k},
    }
    python_path = container_env.get("PYTHONPATH")
    env["PYTHONPATH"] = join("code") + (":" + python_path if python_path else "")
    return JobLayout(env=env, args=tuple(user_args), program=entry_point, cwd="code", **common)


def script_command(
    program: str, args: Iterable[str], *, python: str, package: bool = False, framework: str | None = None,
    capture_error: bool = False, hardened: bool = False,
) -> tuple[str, ...]:
    """The argv the image's toolkit runs for a script-mode entry point (from /opt/ml/code).

    ``sagemaker-training`` (scikit-learn, PyTorch, TensorFlow, Hugging Face images) picks the
    entry point's type as its ``_entry_point_type.get`` does: a ``.sh`` name is a command; else a
    setup.py in the code directory (``package``) makes a Python package, run as
    ``python -m module args``; else a ``.py`` name is a Python program, ``python prog args``; any
    other name is a command, ``/bin/sh -c "./prog args"`` with shell-quoted args (the runner must
    make the file executable). The XGBoost image's toolkit (``sagemaker-containers``
    ``modules.run_module``) runs every entry point as a module instead: ``python -m name args``,
    ``name`` being the program without ``.py``, whatever its type.

    Args:
        program: The entry point (``sagemaker_program``).
        args: The user arguments (JobLayout.args).
        python: The interpreter.
        package: The code directory holds a setup.py.
        framework: The image's framework (images.Runtime.framework); ``xgboost`` runs modules.
        capture_error: The image runs the script capturing stderr (PyTorch, TensorFlow, Hugging
            Face): toolkit 4.x then gives the joined command line to ``/bin/sh -c``. Without it
            (scikit-learn) toolkit 4.x strips double quotes from the ends of the last word.
        hardened: Toolkit 5.1.4 instead: plain argv, ``python -- prog``, quoted program name.
    """
    args = [_text(a) for a in args]
    if framework == "xgboost":
        return (python, "-m", program[:-3] if program.endswith(".py") else program, *args)
    if program.endswith(".sh") or not (package or program.endswith(".py")):
        line = "./%s %s" % (shlex.quote(program) if hardened else program,
                            " ".join(shlex.quote(a) for a in args))
        cmd = ["/bin/sh", "-c", line if hardened else '"%s"' % line]
    elif package:
        module = re.sub(r"\.py$", "", program) if hardened else program.replace(".py", "")
        cmd = [python, "-m", module, *args]
    else:
        cmd = [python, *(["--"] if hardened else []), program, *args]
    if hardened:
        return tuple(cmd)
    if capture_error:
        return ("/bin/sh", "-c", " ".join(cmd))
    cmd[-1] = cmd[-1].strip('"')
    return tuple(cmd)


def _validate_processing(request: Mapping[str, Any]) -> None:
    outputs = (request.get("ProcessingOutputConfig") or {}).get("Outputs") or []
    for kind, key, items in (("ProcessingInput", "InputName", request.get("ProcessingInputs") or []),
                             ("ProcessingOutput", "OutputName", outputs)):
        names = [item[key] for item in items]
        for name in names:
            if names.count(name) > 1:
                raise ValidationError(f"{kind} names must be unique. Duplicate {key}: {name}")
        for item in items:
            s3 = item.get("S3Input") or item.get("S3Output")
            if s3 and s3.get("LocalPath") is None and not item.get("AppManaged"):
                raise ValidationError(f"{kind} {item[key]}: LocalPath is a required parameter when AppManaged "
                                      "is False.")
            local = (item.get("S3Input") or item.get("DatasetDefinition")
                     or item.get("S3Output") or {}).get("LocalPath")
            if local is not None and not local.startswith(PROCESSING_PREFIX):
                raise ValidationError(f"{kind} {item[key]}: LocalPath {local} is not valid. "
                                      f"LocalPath must begin with {PROCESSING_PREFIX}")


def processing_layout(
    request: Mapping[str, Any], *, job_name: str, current_host: str, hosts: Sequence[str],
    num_cpus: int, num_gpus: int = 0, region: str = "us-east-1", job_arn: str | None = None,
    image_env: Mapping[str, str] | None = None,
) -> JobLayout:
    """The contract of one host of a processing job.

    Files are config/processingjobconfig.json and config/resourceconfig.json; env is the image
    ENV overridden by the request's Environment (SageMaker adds nothing documented); args are
    ContainerArguments. Every LocalPath is under /opt/ml/processing/, so ``extra_dirs`` is empty.

    Args:
        request: CreateProcessingJob request body.
        job_name, current_host, hosts: ProcessingJobName, this host, all hosts.
        num_cpus, num_gpus: Unused: processing containers are told neither.
        region: For the ARN built when neither ``job_arn`` nor the request has one.
        job_arn: ProcessingJobArn.
        image_env: The image's ENV.

    Raises:
        ValidationError: A LocalPath outside /opt/ml/processing/, or a duplicate name.
    """
    del num_cpus, num_gpus
    _validate_processing(request)
    app = request.get("AppSpecification") or {}
    config_inputs, inputs, outputs, dirs = [], [], [], ["config", "output"]
    for item in request.get("ProcessingInputs") or []:
        entry, s3 = dict(item), item.get("S3Input")
        if s3:  # as the container sees it: every default filled in
            s3 = entry["S3Input"] = {
                "LocalPath": s3.get("LocalPath"), "S3Uri": s3["S3Uri"],
                "S3DataDistributionType": s3.get("S3DataDistributionType", "FullyReplicated"),
                "S3DataType": s3["S3DataType"], "S3InputMode": s3.get("S3InputMode", "File"),
                "S3CompressionType": s3.get("S3CompressionType", "None"), "S3DownloadMode": "StartOfJob"}
        s3, dataset = s3 or {}, item.get("DatasetDefinition") or {}
        local = s3.get("LocalPath", dataset.get("LocalPath"))
        if local is not None:
            dirs.append(_rel(local))
            inputs.append(DataBinding(
                item["InputName"], dirs[-1], s3.get("S3Uri"), s3.get("S3DataType", "S3Prefix"),
                s3.get("S3DataDistributionType", dataset.get("DataDistributionType") or "FullyReplicated"),
                s3.get("S3InputMode", dataset.get("InputMode") or "File"),
                s3.get("S3CompressionType", "None")))
        config_inputs.append(entry)
    output_config = request.get("ProcessingOutputConfig")
    if output_config is not None:
        config_outputs = []
        for item in output_config.get("Outputs") or []:
            entry = dict(item)
            if item.get("S3Output") and item["S3Output"].get("LocalPath"):  # else AppManaged: nothing local
                s3 = item["S3Output"]
                mode = s3.get("S3UploadMode", "EndOfJob")
                entry["S3Output"] = {"LocalPath": s3["LocalPath"], "S3Uri": s3["S3Uri"],
                                     "S3UploadMode": mode}
                dirs.append(_rel(s3["LocalPath"]))
                outputs.append(DataBinding(item["OutputName"], dirs[-1], s3["S3Uri"], mode=mode))
            config_outputs.append(entry)
        output_config = {"Outputs": config_outputs, "KmsKeyId": output_config.get("KmsKeyId")}
    cluster = (request.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    job_config = {
        "ProcessingJobArn": job_arn or request.get("ProcessingJobArn") or (
            f"arn:aws:sagemaker:{region}:{DEFAULT_ACCOUNT}:processing-job/{job_name.lower()}"),
        "ProcessingJobName": job_name,
        "AppSpecification": {"ImageUri": app.get("ImageUri"),
                             "ContainerEntrypoint": app.get("ContainerEntrypoint"),
                             "ContainerArguments": app.get("ContainerArguments")},
        "Environment": dict(request.get("Environment") or {}),
        "ProcessingInputs": config_inputs,
        "ProcessingOutputConfig": output_config,
        "ProcessingResources": {"ClusterConfig": {
            "InstanceCount": cluster.get("InstanceCount", len(hosts)),
            "InstanceType": cluster.get("InstanceType"),
            "VolumeSizeInGB": cluster.get("VolumeSizeInGB"),
            "VolumeKmsKeyId": cluster.get("VolumeKmsKeyId")}},
        "RoleArn": request.get("RoleArn"),
        "StoppingCondition": {"MaxRuntimeInSeconds": (request.get("StoppingCondition") or {})
                              .get("MaxRuntimeInSeconds", 86400)},
    }
    files = {"config/processingjobconfig.json": json.dumps(job_config),
             "config/resourceconfig.json": json.dumps({"current_host": current_host, "hosts": list(hosts)})}
    return JobLayout(files=files, dirs=tuple(dict.fromkeys(dirs)),
                     env={**(image_env or {}), **(request.get("Environment") or {})},
                     args=tuple(app.get("ContainerArguments") or ()),
                     entrypoint=tuple(app.get("ContainerEntrypoint") or ()),
                     inputs=tuple(inputs), outputs=tuple(outputs))


def shard_keys(keys: Sequence[str], host_index: int, host_count: int) -> list[str]:
    """The S3 objects one host receives under ShardedByS3Key.

    Keys in S3 listing order (sorted) are dealt round-robin: host ``i`` of ``n`` (0-based, in
    sorted host order) gets keys ``i, i + n, i + 2n, ...``: disjoint shards of about 1/n each.

    Raises:
        ValueError: ``host_index`` is not within ``[0, host_count)``.
    """
    if host_count < 1 or not 0 <= host_index < host_count:
        raise ValueError(f"host_index {host_index} is not within 0..{host_count - 1}")
    return sorted(keys)[host_index::host_count]
