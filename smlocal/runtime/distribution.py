"""Which launcher runs a script-mode entry point on each host, as the PyTorch image decides (pure).

The PyTorch training image (``sagemaker-pytorch-training-toolkit``'s ``training.train`` on the
``sagemaker-training`` toolkit) picks a runner from the framework parameters the SDK's
``distribution=`` sets, when the current instance group is a distribution group:

=====================================================  ===========================================
framework parameter (SDK ``distribution``)             runner (toolkit module)
=====================================================  ===========================================
``sagemaker_mpi_enabled`` (``mpi``)                    ``mpirun`` over every host (``mpi.py``)
``sagemaker_pytorch_ddp_enabled`` (``pytorchddp``)     ``mpirun`` + ``smddprun`` (``smdataparallel``)
``sagemaker_torch_distributed_enabled``                ``torchrun`` on each host
(``torch_distributed``)                                (``torch_distributed.py``)
``sagemaker_distributed_dataparallel_enabled``         as ``pytorchddp``
(``smdistributed.dataparallel``)
none of them                                           the plain process (one per host)
=====================================================  ===========================================

checked in that order. Processes per host: ``sagemaker_mpi_num_of_processes_per_host`` when given
(the SDK sets it from ``mpi.processes_per_host``; a hyperparameter of that name sets it for
``torch_distributed``, which has no option of its own), else the GPUs, else the Neuron cores, else
1 (``runner._get_by_runner_type``); the value is used as given, so a bad one fails where the
toolkit's fails (torchrun's ``--nproc_per_node``). Every PyTorch job also gets ``MASTER_ADDR`` (the
first distribution host), ``MASTER_PORT=7777`` and the NCCL settings the image sets before any
runner starts.

smlocal runs ``torchrun`` as this machine's ``python -m torch.distributed.run``. The MPI runners
need an MPI runtime (``mpirun``; without one the job fails saying what to install, see
:class:`DistributionError`) and, on AWS, SSH between the hosts: on several hosts smlocal's launch
agent (``mpi_agent``, run by path in the sandbox) takes SSH's place, with the toolkit's steps: the
workers serve on port 22 and wait, the master waits for them, runs the toolkit's ``mpirun`` command
with the agent as Open MPI's rsh launcher, then tells the workers the run is over.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"
PYTORCH_DDP = "sagemaker_pytorch_ddp_enabled"
SMDATAPARALLEL = "sagemaker_distributed_dataparallel_enabled"
MPI = "sagemaker_mpi_enabled"
PROCESSES_PER_HOST = "sagemaker_mpi_num_of_processes_per_host"
NUM_PROCESSES = "sagemaker_mpi_num_processes"
MPI_CUSTOM_OPTIONS = "sagemaker_mpi_custom_mpi_options"
SMDATAPARALLEL_CUSTOM_OPTIONS = "sagemaker_distributed_dataparallel_custom_mpi_options"
MASTER_PORT = "7777"  # the PyTorch image's and torch_distributed.py's
TORCHRUN_MODULE = "torch.distributed.run"  # what the image's ``torchrun`` executable runs
FAILURE_EXIT_CODE = 1  # the toolkit exits 1 after a ClientError
MPI_AGENT = str(Path(__file__).resolve().with_name("mpi_agent.py"))  # run by path: the sandbox's python
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")  # mpirun -x when set
MPI_PACKAGES = "an MPI runtime (Debian/Ubuntu: apt-get install openmpi-bin; then pip install mpi4py)"

PROCESS = "process"
TORCHRUN = "torch_distributed"
MPIRUN = "mpi"
SMDDP = "smdataparallel"


class DistributionError(Exception):
    """The job cannot run as asked; the message is its FailureReason."""


@dataclass(frozen=True)
class HostLaunch:
    """What one host of the job runs.

    Attributes:
        runner: ``process``, ``torch_distributed``, ``mpi`` or ``smdataparallel``.
        command: The argv (the default script command for ``process``).
        env: Variables the image's toolkit sets on top of the job's environment.
        processes_per_host: As the toolkit computes it (the raw value when it is not a number).
        launch_agent: The host runs smlocal's MPI launch agent (an MPI job of several hosts): the
            job's hosts need one shared ``mpi_agent.TOKEN_ENV``.
    """

    runner: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    processes_per_host: Any = 1
    launch_agent: bool = False


def runner_for(training_env: Mapping[str, Any]) -> str:
    """The PyTorch image's runner for this host (``training.train``'s choice)."""
    framework = training_env.get("additional_framework_parameters") or {}
    groups = training_env.get("distribution_instance_groups") or []
    if training_env.get("current_instance_group") not in groups:
        return PROCESS
    if framework.get(MPI):
        return MPIRUN
    if framework.get(PYTORCH_DDP, False):
        return SMDDP
    if framework.get(TORCH_DISTRIBUTED, False):
        return TORCHRUN
    if framework.get(SMDATAPARALLEL, False):
        return SMDDP
    return PROCESS


def processes_per_host(training_env: Mapping[str, Any]) -> Any:
    """``sagemaker_mpi_num_of_processes_per_host`` or the GPUs, Neuron cores or 1 (not checked)."""
    framework = training_env.get("additional_framework_parameters") or {}
    gpus, neurons = int(training_env.get("num_gpus") or 0), int(training_env.get("num_neurons") or 0)
    default = gpus if gpus > 0 else neurons if neurons > 0 else 1
    return framework.get(PROCESSES_PER_HOST, default)


def image_environment(training_env: Mapping[str, Any]) -> dict[str, str]:
    """What the PyTorch image's ``train`` puts in its environment before running any runner."""
    hosts = training_env.get("hosts") or ["algo-1"]
    return {
        "MASTER_ADDR": str(training_env.get("master_hostname") or hosts[0]),
        "MASTER_PORT": MASTER_PORT,
        "NCCL_SOCKET_IFNAME": str(training_env.get("network_interface_name") or "eth0"),
        "NCCL_IB_DISABLE": "1",
        "NCCL_DEBUG": "WARN",
    }


def entry_point_kind(program: str, *, package: bool) -> str:
    """``_entry_point_type.get``: ``package`` (a setup.py), ``program`` (``*.py``) or ``command``."""
    if program.endswith(".sh"):
        return "command"
    if package:
        return "package"
    return "program" if program.endswith(".py") else "command"


def plan(training_env: Mapping[str, Any], default_command: Sequence[str], *, program: str,
         args: Sequence[str], python: str, package: bool, mpirun: str | None,
         env_names: Sequence[str] = ()) -> HostLaunch:
    """What this host of a PyTorch script-mode job runs.

    Args:
        training_env: The host's SM_TRAINING_ENV (contract.training_layout), decoded.
        default_command: The plain script command (contract.script_command), kept for ``process``.
        program: ``sagemaker_program``.
        args: The user arguments.
        python: The job's interpreter.
        package: The code directory holds a setup.py.
        mpirun: Path of this machine's ``mpirun``, or None when there is none.
        env_names: The names in the host's environment; the toolkit's own (``SM_*``) and the AWS
            credentials are passed to every rank with ``mpirun -x``, as the toolkit passes them.

    Raises:
        DistributionError: The toolkit's ClientError (torch_distributed with a package or a
            command entry point), or an MPI runner smlocal cannot run (no ``mpirun``).
    """
    runner = runner_for(training_env)
    env = image_environment(training_env)
    per_host = processes_per_host(training_env)
    if runner == PROCESS:
        return HostLaunch(PROCESS, tuple(default_command), env, per_host)
    kind = entry_point_kind(program, package=package)
    if runner == TORCHRUN:
        if kind == "package":
            raise DistributionError(_client_error(
                "Python packages are not supported for torch_distributed. "
                "Please use a python script as the entry-point"))
        if kind != "program":
            raise DistributionError(_client_error("Unsupported entry point type for torch_distributed"))
        env["NCCL_PROTO"] = "simple"
        return HostLaunch(TORCHRUN, torchrun_command(training_env, per_host, program, args, python),
                          env, per_host)
    hosts = list(training_env.get("distribution_hosts") or training_env.get("hosts") or [])
    name = "mpi" if runner == MPIRUN else "pytorchddp / smdistributed dataparallel"
    if mpirun is None:
        raise DistributionError(
            f"AlgorithmError: smlocal: distribution {name} runs its script with mpirun, and this "
            f"machine has no mpirun: install {MPI_PACKAGES} and run the job again, or use "
            "distribution={'torch_distributed': {'enabled': True}} (torchrun, no MPI needed).")
    command = mpirun_command(training_env, per_host, mpirun, runner=runner, env_names=env_names) + \
        _mpi_python_command(kind, program, args, python)
    if len(hosts) <= 1:
        return HostLaunch(runner, tuple(command), env, per_host)
    master = str(training_env.get("master_hostname") or hosts[0])
    if training_env.get("current_host") == master:  # mpi.MasterRunner: waits for the workers, runs mpirun
        workers = ",".join(h for h in hosts if h != master)
        return HostLaunch(runner, (python, MPI_AGENT, "master", workers, "--", *command), env, per_host, True)
    # mpi.WorkerRunner: serves the master's mpirun (sshd's part) until the run is over
    return HostLaunch(runner, (python, MPI_AGENT, "worker", master), env, per_host, True)


def torchrun_command(training_env: Mapping[str, Any], per_host: Any, program: str, args: Sequence[str],
                     python: str) -> tuple[str, ...]:
    """``torchrun --nnodes N --nproc_per_node P [--master_addr M --master_port 7777 --node_rank I]
    program args`` (``torch_distributed.TorchDistributedRunner._create_command``)."""
    hosts = list(training_env.get("distribution_hosts") or [])
    current = training_env.get("current_host")
    command = [python, "-m", TORCHRUN_MODULE, "--nnodes", str(len(hosts)), "--nproc_per_node", str(per_host)]
    if len(hosts) > 1:
        command += ["--master_addr", str(training_env.get("master_hostname")), "--master_port", MASTER_PORT,
                    "--node_rank", str(hosts.index(current))]
    return (*command, program, *args)


def mpirun_command(training_env: Mapping[str, Any], per_host: Any, mpirun: str, *, runner: str,
                   env_names: Sequence[str] = ()) -> list[str]:
    """The ``mpirun`` part of ``mpi.MasterRunner`` / ``smdataparallel.SMDataParallelRunner`` (no
    ``-x LD_PRELOAD`` of the toolkit's gethostname shim: each host's name is its own)."""
    framework = training_env.get("additional_framework_parameters") or {}
    hosts = list(training_env.get("distribution_hosts") or training_env.get("hosts") or [])
    interface = str(training_env.get("network_interface_name") or "eth0")
    try:
        count = int(per_host)
    except (TypeError, ValueError) as exc:
        raise DistributionError(_client_error(
            f"{PROCESSES_PER_HOST} must be an integer, got {per_host!r}")) from exc
    options_key = MPI_CUSTOM_OPTIONS if runner == MPIRUN else SMDATAPARALLEL_CUSTOM_OPTIONS
    custom = shlex.split(str(framework.get(options_key) or ""))
    nccl_debug, extra = _nccl_debug(custom)
    total = (framework.get(NUM_PROCESSES) if runner == MPIRUN else None) or count * len(hosts)
    plain = count == 1 if runner == MPIRUN else len(hosts) == 1  # the SMDDP runner counts slots on several
    host_list = hosts if plain else [f"{h}:{count}" for h in hosts]
    command = [mpirun, "--host", ",".join(host_list), "-np", str(total), "--allow-run-as-root"]
    command += ["--display-map", "--tag-output"] if runner == MPIRUN else ["--tag-output", "--oversubscribe"]
    command += ["-mca", "btl_tcp_if_include", interface, "-mca", "oob_tcp_if_include", interface,
                "-mca", "plm_rsh_no_tree_spawn", "1"]
    if runner == MPIRUN:
        command += ["-bind-to", "none", "-map-by", "slot"]
    command += ["-mca", "pml", "ob1", "-mca", "btl", "^openib", "-mca", "orte_abort_on_non_zero_status", "1",
                "-mca", "btl_vader_single_copy_mechanism", "none"]
    if runner == MPIRUN:
        command += ["-x", "NCCL_MIN_NRINGS=4"]
    else:
        command += ["-mca", "plm_rsh_num_concurrent", str(len(hosts))]
    command += ["-x", f"NCCL_SOCKET_IFNAME={interface}", "-x", f"NCCL_DEBUG={nccl_debug}",
                "-x", "LD_LIBRARY_PATH", "-x", "PATH"]
    if runner == SMDDP:
        many = len(hosts) > 1
        command += ["-x", "SMDATAPARALLEL_USE_HOMOGENEOUS=1" if many else "SMDATAPARALLEL_USE_SINGLENODE=1"]
        command += extra
        if many:  # the server the toolkit names for a multi-node run
            command += ["-x", f"SMDATAPARALLEL_SERVER_ADDR={training_env.get('master_hostname') or hosts[0]}",
                        "-x", "SMDATAPARALLEL_SERVER_PORT=7592",
                        "-x", f"SAGEMAKER_INSTANCE_TYPE={training_env.get('current_instance_type') or ''}"]
        return command
    command += extra
    names = set(env_names)  # mpi.MasterRunner passes the credentials and its own variables to every rank
    for name in (*CREDENTIALS, *sorted(n for n in names if n.startswith("SM_"))):
        if name in names:
            command += ["-x", name]
    return command


def _mpi_python_command(kind: str, program: str, args: Sequence[str], python: str) -> list[str]:
    """``ProcessRunner._create_command`` with the MPI runners' ``python -m mpi4py``."""
    if kind == "package":
        return [python, "-m", "mpi4py", "-m", re.sub(r"\.py$", "", program), *args]
    if kind == "program":
        return [python, "-m", "mpi4py", program, *args]
    return ["/bin/sh", "-c", "./%s %s" % (shlex.quote(program), " ".join(shlex.quote(a) for a in args))]


def _nccl_debug(options: list[str]) -> tuple[str, list[str]]:
    """``_parse_custom_mpi_options``: ``--NCCL_DEBUG X`` overrides INFO; the rest is passed on."""
    value, rest, i = "INFO", [], 0
    while i < len(options):
        option = options[i]
        if option == "--NCCL_DEBUG" and i + 1 < len(options):
            value, i = options[i + 1], i + 2
            continue
        if option.startswith("--NCCL_DEBUG="):
            value = option.split("=", 1)[1]
        else:
            rest.append(option)
        i += 1
    return value, rest


def _client_error(message: str) -> str:
    """FailureReason of a toolkit ClientError: its text in the failure file, exit code 1."""
    return f"AlgorithmError: {message}, exit code: {FAILURE_EXIT_CODE}"
