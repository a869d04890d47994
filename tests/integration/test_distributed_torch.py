"""PyTorch distribution modes through the real SDK v2 PyTorch estimator, on the process backend.

torch_distributed runs torchrun on each host as the PyTorch image does (processes per host from
``sagemaker_mpi_num_of_processes_per_host``, the toolkit's only knob on CPU instances); gloo
all-reduce and a tiny DDP training run across the ranks, and only rank 0 writes the model. The
SDK refuses torch_distributed on CPU instance types unless ``image_uri`` is given (fw_utils
``validate_torch_distributed_distribution``), so the tests name the CPU image, as AWS allows.
Without torch the tests skip with the reason; under ``SMLOCAL_CI=1`` they fail.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import textwrap

import pytest

from docker_images import unavailable

pytestmark = pytest.mark.slow

TRAIN = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist


    def say(line):  # one write per record: a host's ranks share one stdout (print writes text and newline apart)
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()


    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.tensor([float(rank + 1)])
    dist.all_reduce(total)
    say(f"dist: rank={rank} world={world} local_rank={os.environ['LOCAL_RANK']} "
        f"host={os.environ['SM_CURRENT_HOST']} sum={total.item():.0f} "
        f"master={os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}")

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
    inputs = torch.randn(64, 4, generator=torch.Generator().manual_seed(rank))
    target = inputs @ torch.tensor([[1.0], [2.0], [-1.0], [0.5]])
    for _ in range(100):
        optimizer.zero_grad()
        loss = ((ddp(inputs) - target) ** 2).mean()
        loss.backward()
        optimizer.step()
    weights = model.weight.detach().clone()
    gathered = [torch.zeros_like(weights) for _ in range(world)]
    dist.all_gather(gathered, weights)
    same = all(torch.equal(gathered[0], other) for other in gathered)
    say(f"ddp: rank={rank} loss={loss.item():.4f} replicas_equal={same}")
    if rank == 0:
        model_dir = os.environ["SM_MODEL_DIR"]
        torch.save(model.state_dict(), os.path.join(model_dir, "model.pt"))
        with open(os.path.join(model_dir, "written_by.json"), "w") as f:
            json.dump({"rank": rank, "host": os.environ["SM_CURRENT_HOST"], "world": world}, f)
    dist.destroy_process_group()
    """
)
DIST_LINE = re.compile(r"dist: rank=(\d+) world=(\d+) local_rank=(\d+) host=(\S+) sum=(\d+) master=(\S+)")
DDP_LINE = re.compile(r"ddp: rank=(\d+) loss=([\d.]+) replicas_equal=(\w+)")


@pytest.fixture(scope="module")
def torch_module():
    try:
        import torch
    except ImportError:
        unavailable("torch is not installed (pip install torch==2.13.0, the CPU build)")
    return torch


def _estimator(tmp_path, *, instance_count: int, distribution: dict, hyperparameters: dict | None = None):
    import sagemaker
    from sagemaker import image_uris
    from sagemaker.pytorch import PyTorch

    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "train.py").write_text(TRAIN)
    session = sagemaker.Session()
    image = image_uris.retrieve("pytorch", session.boto_region_name, version="2.5", py_version="py311",
                                instance_type="ml.m5.xlarge", image_scope="training")
    return PyTorch(
        entry_point="train.py", source_dir=str(source), image_uri=image,
        instance_type="ml.m5.xlarge", instance_count=instance_count,
        distribution=distribution, hyperparameters=hyperparameters or {}, max_run=300,  # a hang fails
        role=sagemaker.get_execution_role(), sagemaker_session=session,
    )


def _run(estimator, capsys) -> tuple[dict, str]:
    estimator.fit(wait=True, logs=True)
    return estimator.latest_training_job.describe(), capsys.readouterr().out


def _model(estimator) -> dict[str, bytes]:
    import boto3

    bucket, key = estimator.model_data[5:].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return {m.name.removeprefix("./"): archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


def _check_run(out: str, model: dict[str, bytes], torch_module, *, hosts: list[str], per_host: int) -> None:
    world = len(hosts) * per_host
    seen = {int(m[0]): m for m in DIST_LINE.findall(out)}
    assert sorted(seen) == list(range(world)), out
    for rank, (_, world_seen, local_rank, host, total, master) in seen.items():
        assert int(world_seen) == world
        assert host == hosts[rank // per_host] and int(local_rank) == rank % per_host
        assert int(total) == world * (world + 1) // 2  # the all-reduce summed every rank's rank+1
        if len(hosts) > 1:
            assert master == "algo-1:7777"  # torchrun's --master_addr/--master_port, as the toolkit sets
    trained = {int(r): (float(loss), equal) for r, loss, equal in DDP_LINE.findall(out)}
    assert sorted(trained) == list(range(world)) and all(eq == "True" for _, eq in trained.values())
    assert sorted(model) == ["model.pt", "written_by.json"]  # only rank 0 wrote /opt/ml/model
    assert json.loads(model["written_by.json"]) == {"rank": 0, "host": "algo-1", "world": world}
    state = torch_module.load(io.BytesIO(model["model.pt"]))
    assert set(state) == {"weight", "bias"} and tuple(state["weight"].shape) == (1, 4)
    assert trained[0][0] < 0.05  # DDP trained the model that was written


def test_torch_distributed_one_host_two_processes(client_env, torch_module, tmp_path, capsys):
    estimator = _estimator(tmp_path, instance_count=1, distribution={"torch_distributed": {"enabled": True}},
                           hyperparameters={"sagemaker_mpi_num_of_processes_per_host": 2})
    job, out = _run(estimator, capsys)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert "torch_distributed runs" in out and "--nproc_per_node 2" in out
    _check_run(out, _model(estimator), torch_module, hosts=["algo-1"], per_host=2)


def test_torch_distributed_two_hosts_two_processes(client_env, torch_module, tmp_path, capsys):
    estimator = _estimator(tmp_path, instance_count=2, distribution={"torch_distributed": {"enabled": True}},
                           hyperparameters={"sagemaker_mpi_num_of_processes_per_host": 2})
    job, out = _run(estimator, capsys)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert "--nnodes 2 --nproc_per_node 2 --master_addr algo-1 --master_port 7777 --node_rank 1" in out
    _check_run(out, _model(estimator), torch_module, hosts=["algo-1", "algo-2"], per_host=2)


def test_torch_distributed_bad_processes_per_host_fails_as_torchrun(client_env, torch_module, tmp_path):
    estimator = _estimator(tmp_path, instance_count=1, distribution={"torch_distributed": {"enabled": True}},
                           hyperparameters={"sagemaker_mpi_num_of_processes_per_host": "two"})
    with pytest.raises(Exception):
        estimator.fit(wait=True, logs=False)
    job = estimator.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Failed"
    # torchrun itself rejects --nproc_per_node two, as in the image (the toolkit passes it as given)
    assert "ValueError" in job["FailureReason"] and "torch/distributed/run.py" in job["FailureReason"]
    assert job["FailureReason"].startswith("AlgorithmError: ExecuteUserScriptError")
