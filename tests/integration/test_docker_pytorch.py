"""PyTorch torch_distributed on the Docker backend: one container of smlocal's PyTorch image per host.

A real SDK v2 PyTorch estimator (``distribution={"torch_distributed": {"enabled": True}}``, two
instances, two processes per host) runs in ``smlocal/sagemaker-pytorch`` containers on the job's
private Docker network. Nothing of smlocal launches the ranks: the image's ``train`` (the real
``sagemaker-training`` 5.1.4) calls ``sagemaker_pytorch_container.training:main`` (the real
``sagemaker-pytorch-training`` 3.0.0), which waits for ``algo-1``/``algo-2`` to resolve and starts
``torchrun --nnodes 2 --nproc_per_node 2 --master_addr algo-1 --master_port 7777 --node_rank N``.
On CPU the toolkit takes the processes per host from ``sagemaker_mpi_num_of_processes_per_host``
(else the GPU count, else 1: runner._get_by_runner_type). The training script and its checks are
the process backend's (test_distributed_torch.py): a gloo all-reduce and a tiny DDP training, the
ranks and world size in the two hosts' log streams, the model from rank 0 in model.tar.gz.

The ``mpi`` distribution runs there as on AWS, with nothing of smlocal in between: the toolkit's
workers start the image's sshd, its master waits for their port 22 and runs mpirun, which starts
Open MPI's daemons over SSH; the ranks are the process backend's test script (an allreduce, the
hosts' names, the master's ``SM_*`` variables at every rank, rank 0's model).

The image is built (or rebuilt when stale) by docker_images.current_images. Without an engine the
test skips with the reason; under ``SMLOCAL_CI=1`` it fails instead.
"""

from __future__ import annotations

import re

import pytest

from docker_images import current_images, unavailable
from smlocal.config import load_settings
from test_distributed_mpi import MPI_LINE
from test_distributed_mpi import TRAIN as MPI_TRAIN
from test_distributed_mpi import _model as _mpi_model
from test_distributed_torch import TRAIN, _check_run, _model, torch_module  # noqa: F401 - a fixture

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def pytorch_emulator(tmp_path_factory):
    from smlocal.runtime import image_build
    from smlocal.server import Emulator

    try:
        engine = image_build.docker_client()
    except image_build.ImageBuildError as exc:
        unavailable(str(exc))
    current_images(engine, tmp_path_factory, names=("pytorch",))
    with Emulator(load_settings(data_dir=tmp_path_factory.mktemp("smlocal-dtorch"), port=0, backend="docker")) as emu:
        yield emu


@pytest.fixture(scope="module")
def pytorch_client_env(pytorch_emulator):
    from conftest import point_environment_at

    from smlocal import compat

    patch = pytest.MonkeyPatch()
    point_environment_at(patch, pytorch_emulator.client_env())
    compat.install()
    yield pytorch_emulator.client_env()
    patch.undo()


def test_torch_distributed_two_containers_two_processes_each(pytorch_client_env, torch_module, tmp_path, capsys):
    import sagemaker
    from sagemaker import image_uris
    from sagemaker.pytorch import PyTorch

    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN + "\nimport sys\nprint(f'python={sys.executable}', flush=True)\n")
    session = sagemaker.Session()
    # the SDK refuses torch_distributed on CPU instance types unless image_uri is given
    image = image_uris.retrieve("pytorch", session.boto_region_name, version="2.5", py_version="py311",
                                instance_type="ml.m5.xlarge", image_scope="training")
    estimator = PyTorch(
        entry_point="train.py", source_dir=str(source), image_uri=image,
        instance_type="ml.m5.xlarge", instance_count=2, distribution={"torch_distributed": {"enabled": True}},
        hyperparameters={"sagemaker_mpi_num_of_processes_per_host": 2}, max_run=300,  # a hang fails
        role=sagemaker.get_execution_role(), sagemaker_session=session,
    )
    estimator.fit(wait=True, logs=True)
    job = estimator.latest_training_job.describe()
    out = capsys.readouterr().out
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    # the real toolkits chose torchrun, each host with its node rank (their "Invoking script" lines)
    assert "Invoking TorchDistributed..." in out
    for rank in (0, 1):
        assert ("Invoking script with the following command:\ntorchrun --nnodes 2 --nproc_per_node 2 "
                f"--master_addr algo-1 --master_port 7777 --node_rank {rank} train.py") in out
    assert out.count("python=/opt/venv/bin/python") == 4  # the image's interpreter: every rank ran in a container
    # A host's two ranks share torchrun's stdout and print() writes the text and its newline apart
    # (PYTHONUNBUFFERED=1, as the contract sets it), so two records can share a log line: split them.
    records = re.sub(r"(?<=\S)(?=(?:dist|ddp): |python=)", "\n", out)
    _check_run(records, _model(estimator), torch_module, hosts=["algo-1", "algo-2"], per_host=2)


def test_mpi_two_containers_two_ranks_each_over_the_images_ssh(pytorch_client_env, tmp_path, capsys):
    import sagemaker
    from sagemaker.pytorch import PyTorch

    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(MPI_TRAIN)
    estimator = PyTorch(
        entry_point="train.py", source_dir=str(source), framework_version="2.5", py_version="py311",
        instance_type="ml.m5.xlarge", instance_count=2,
        distribution={"mpi": {"enabled": True, "processes_per_host": 2}}, hyperparameters={"epochs": 3},
        max_run=300, role=sagemaker.get_execution_role(), sagemaker_session=sagemaker.Session(),
    )
    estimator.fit(wait=True, logs=True)
    job = estimator.latest_training_job.describe()
    out = capsys.readouterr().out
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    # the real toolkit's steps on each side (sagemaker_training.mpi's log lines)
    assert "Worker algo-2 available for communication" in out and "MPI process finished." in out
    names = ["algo-1", "algo-1", "algo-2", "algo-2"]
    seen = {int(m[0]): m for m in MPI_LINE.findall(out)}
    assert sorted(seen) == [0, 1, 2, 3], out
    for rank, (_, size, host, total, sm_host, epochs) in seen.items():
        # the toolkit's gethostname shim names each rank's host; mpirun -x gives every rank the master's SM_*
        assert (int(size), host, int(total), sm_host, epochs) == (4, names[rank], 10, "algo-1", "3")
    assert _mpi_model(estimator) == {"size": 4, "sum": 10, "hosts": names}
