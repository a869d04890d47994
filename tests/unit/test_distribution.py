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


def test_mpi_on_several_hosts_is_refused_with_the_reason():
    with pytest.raises(distribution.DistributionError) as caught:
        _plan(_env({"sagemaker_mpi_enabled": True}, count=2), mpirun="/usr/bin/mpirun")
    assert "SSH" in str(caught.value) and "instance_count=1" in str(caught.value)


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
