"""The launch plan of a PyTorch script-mode host, from the SM_TRAINING_ENV the contract computes."""

from __future__ import annotations

import json

import pytest

from smlocal.runtime import contract, distribution

PYTHON = "/venv/bin/python"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311"


def _env(framework: dict, *, host: str = "algo-1", count: int = 1, num_gpus: int = 0) -> dict:
    hps = {"sagemaker_program": json.dumps("train.py"), "sagemaker_submit_directory": json.dumps("s3://b/c.tar.gz"),
           "epochs": "3", **{k: json.dumps(v) for k, v in framework.items()}}
    request = {"AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
               "HyperParameters": hps, "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": count}}
    hosts = tuple(f"algo-{i}" for i in range(1, count + 1))
    layout = contract.training_layout(request, job_name="j", region="us-east-1", current_host=host, hosts=hosts,
                                      num_cpus=4, num_gpus=num_gpus)
    return json.loads(layout.env["SM_TRAINING_ENV"])


def _plan(env: dict, program: str = "train.py", *, package: bool = False, mpirun: str | None = None):
    return distribution.plan(env, (PYTHON, program, "--epochs", "3"), program=program, args=("--epochs", "3"),
                             python=PYTHON, package=package, mpirun=mpirun)


def test_no_distribution_runs_the_script_with_the_image_environment():
    plan = _plan(_env({}))
    assert plan.runner == "process" and plan.command == (PYTHON, "train.py", "--epochs", "3")
    assert plan.env == {"MASTER_ADDR": "algo-1", "MASTER_PORT": "7777", "NCCL_SOCKET_IFNAME": "eth0",
                        "NCCL_IB_DISABLE": "1", "NCCL_DEBUG": "WARN"}


def test_torch_distributed_one_host_is_torchrun_without_master_options():
    plan = _plan(_env({"sagemaker_torch_distributed_enabled": True}))
    assert plan.runner == "torch_distributed" and plan.processes_per_host == 1  # CPU: one process
    assert plan.command == (PYTHON, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "1",
                            "train.py", "--epochs", "3")
    assert plan.env["NCCL_PROTO"] == "simple"


def test_torch_distributed_second_host_has_its_node_rank_and_the_processes_asked_for():
    env = _env({"sagemaker_torch_distributed_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2},
               host="algo-2", count=2)
    assert _plan(env).command == (
        PYTHON, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "2", "--master_addr", "algo-1",
        "--master_port", "7777", "--node_rank", "1", "train.py", "--epochs", "3")


def test_processes_per_host_defaults_to_the_gpus_and_keeps_a_bad_value_for_torchrun():
    assert distribution.processes_per_host(_env({}, num_gpus=4)) == 4
    env = _env({"sagemaker_torch_distributed_enabled": True, "sagemaker_mpi_num_of_processes_per_host": "two"})
    assert "--nproc_per_node" in (command := _plan(env).command) and command[command.index("--nproc_per_node") + 1] == "two"


@pytest.mark.parametrize(("program", "package", "message"), [
    ("train.py", True, "Python packages are not supported for torch_distributed"),
    ("train.sh", False, "Unsupported entry point type for torch_distributed"),
])
def test_torch_distributed_refuses_what_the_toolkit_refuses(program, package, message):
    with pytest.raises(distribution.DistributionError) as caught:
        _plan(_env({"sagemaker_torch_distributed_enabled": True}), program, package=package)
    assert str(caught.value).startswith(f"AlgorithmError: {message}") and str(caught.value).endswith(", exit code: 1")


def test_precedence_is_mpi_then_pytorchddp_then_torch_distributed():
    both = {"sagemaker_torch_distributed_enabled": True, "sagemaker_pytorch_ddp_enabled": True}
    assert distribution.runner_for(_env(both)) == "smdataparallel"
    assert distribution.runner_for(_env({**both, "sagemaker_mpi_enabled": True})) == "mpi"
    assert distribution.runner_for(_env({"sagemaker_distributed_dataparallel_enabled": True})) == "smdataparallel"


@pytest.mark.parametrize("flag", ["sagemaker_mpi_enabled", "sagemaker_pytorch_ddp_enabled"])
def test_mpi_modes_without_mpirun_name_what_to_install(flag):
    with pytest.raises(distribution.DistributionError) as caught:
        _plan(_env({flag: True}))
    assert "no mpirun" in str(caught.value) and "openmpi-bin" in str(caught.value)


def test_mpi_on_several_hosts_runs_mpirun_on_the_master_through_the_launch_agent():
    framework = {"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2}
    names = ("PATH", "SM_CURRENT_HOST", "SM_HP_EPOCHS", "AWS_ACCESS_KEY_ID", "OTHER")
    master = distribution.plan(_env(framework, count=3), (PYTHON, "train.py"), program="train.py", args=(),
                               python=PYTHON, package=False, mpirun="/usr/bin/mpirun", env_names=names)
    assert master.launch_agent and master.command[:5] == (PYTHON, distribution.MPI_AGENT, "master",
                                                          "algo-2,algo-3", "--")
    mpirun = list(master.command[5:])
    assert mpirun[:5] == ["/usr/bin/mpirun", "--host", "algo-1:2,algo-2:2,algo-3:2", "-np", "6"]
    # mpi.MasterRunner passes the credentials, then its own variables, to every rank
    exported = [mpirun[i + 1] for i, arg in enumerate(mpirun) if arg == "-x"]
    assert exported[-3:] == ["AWS_ACCESS_KEY_ID", "SM_CURRENT_HOST", "SM_HP_EPOCHS"] and "OTHER" not in exported
    worker = _plan(_env(framework, host="algo-3", count=3), mpirun="/usr/bin/mpirun")
    assert worker.launch_agent and worker.command == (PYTHON, distribution.MPI_AGENT, "worker", "algo-1")


def test_the_launch_agent_runs_by_path_from_the_standard_library_only():
    import ast

    tree = ast.parse(open(distribution.MPI_AGENT).read())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "smlocal" not in imported and imported <= set(__import__("sys").stdlib_module_names) | {"__future__"}


def test_pytorchddp_on_several_hosts_is_the_toolkit_homogeneous_mode():
    env = _env({"sagemaker_pytorch_ddp_enabled": True}, count=2, num_gpus=8)
    mpirun = list(_plan(env, mpirun="/usr/bin/mpirun").command[5:])
    assert mpirun[mpirun.index("--host") + 1] == "algo-1:8,algo-2:8" and mpirun[mpirun.index("-np") + 1] == "16"
    assert "SMDATAPARALLEL_USE_HOMOGENEOUS=1" in mpirun and "SMDATAPARALLEL_SERVER_ADDR=algo-1" in mpirun
    assert mpirun[mpirun.index("plm_rsh_num_concurrent") + 1] == "2"
    one = list(_plan(_env({"sagemaker_pytorch_ddp_enabled": True}, num_gpus=8), mpirun="/usr/bin/mpirun").command)
    assert one[one.index("--host") + 1] == "algo-1" and "SMDATAPARALLEL_USE_SINGLENODE=1" in one


def test_mpi_one_host_is_the_toolkit_mpirun_with_mpi4py():
    env = _env({"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2,
                "sagemaker_mpi_custom_mpi_options": "--NCCL_DEBUG WARN -x FOO=1"})
    command = list(_plan(env, mpirun="/usr/bin/mpirun").command)
    assert command[:6] == ["/usr/bin/mpirun", "--host", "algo-1:2", "-np", "2", "--allow-run-as-root"]
    assert "NCCL_DEBUG=WARN" in command and "NCCL_DEBUG=INFO" not in command
    assert command[-6:] == [PYTHON, "-m", "mpi4py", "train.py", "--epochs", "3"]
    assert command[command.index("-x", command.index("PATH")) + 1] == "FOO=1"  # custom options after the toolkit's


def test_mpi_rejects_a_non_integer_processes_per_host():
    env = _env({"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": "two"})
    with pytest.raises(distribution.DistributionError, match="must be an integer"):
        _plan(env, mpirun="/usr/bin/mpirun")


def test_a_host_outside_the_distribution_group_runs_the_plain_process():
    env = _env({"sagemaker_torch_distributed_enabled": True})
    env["distribution_instance_groups"] = ["other"]
    assert _plan(env).runner == "process"
