"""The ``mpi`` distribution through the real SDK v2 PyTorch estimator, on the process backend.

On AWS the image's toolkit runs mpirun on the first host and reaches the others over SSH; smlocal's
launch agent (``runtime/mpi_agent.py``) takes SSH's place on the job's private network. These
tests run Open MPI's real ``mpirun`` with mpi4py ranks across hosts: an allreduce and a gather of
every rank's host name, the toolkit's ``SM_*`` variables reaching the ranks (``mpirun -x``), a rank
that raises failing the whole job with its error, a stopped job leaving no process behind, and a
machine without ``mpirun`` failing the job saying what to install. Without Open MPI or mpi4py the tests skip with the reason; under
``SMLOCAL_CI=1`` (which installs both) they fail instead.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
import textwrap
import time
import uuid

import pytest

from docker_images import unavailable

pytestmark = pytest.mark.slow

TRAIN = textwrap.dedent(
    """
    import json, os, socket, sys
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    total = comm.allreduce(rank + 1)
    hosts = comm.allgather(socket.gethostname())
    sys.stdout.write(f"mpi: rank={rank} size={size} host={socket.gethostname()} sum={total} "
                     f"sm_host={os.environ['SM_CURRENT_HOST']} epochs={os.environ.get('SM_HP_EPOCHS')}\\n")
    sys.stdout.flush()
    if os.environ.get("SM_HP_FAIL_RANK") == str(rank):
        raise ValueError(f"rank {rank} was told to fail")
    comm.Barrier()
    if rank == 0:
        with open(os.path.join(os.environ["SM_MODEL_DIR"], "ranks.json"), "w") as f:
            json.dump({"size": size, "sum": total, "hosts": hosts}, f)
    """
)
MPI_LINE = re.compile(r"mpi: rank=(\d+) size=(\d+) host=(\S+) sum=(\d+) sm_host=(\S+) epochs=(\S+)")


@pytest.fixture(scope="module")
def mpi_runtime():
    if shutil.which("mpirun") is None:
        unavailable("Open MPI is not installed (apt-get install openmpi-bin)")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        unavailable("mpi4py is not installed (pip install mpi4py)")


def _estimator(tmp_path, *, instance_count: int, per_host: int, hyperparameters: dict | None = None,
               environment: dict | None = None):
    import sagemaker
    from sagemaker.pytorch import PyTorch

    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "train.py").write_text(TRAIN)
    session = sagemaker.Session()
    return PyTorch(
        entry_point="train.py", source_dir=str(source), framework_version="2.5", py_version="py311",
        instance_type="ml.m5.xlarge", instance_count=instance_count,
        distribution={"mpi": {"enabled": True, "processes_per_host": per_host}},
        hyperparameters={"epochs": 3, **(hyperparameters or {})}, environment=environment, max_run=300,
        role=sagemaker.get_execution_role(), sagemaker_session=session,
    )


def _model(estimator) -> dict:
    import boto3

    bucket, key = estimator.model_data[5:].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        files = {m.name.removeprefix("./"): archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
    assert sorted(files) == ["ranks.json"]  # rank 0 alone wrote the model
    return json.loads(files["ranks.json"])


@pytest.mark.parametrize("hosts, per_host", [(1, 2), (2, 2), (3, 1)], ids=["1x2", "2x2", "3x1"])
def test_mpi_ranks_span_the_hosts(client_env, mpi_runtime, tmp_path, capsys, hosts, per_host):
    estimator = _estimator(tmp_path, instance_count=hosts, per_host=per_host)
    estimator.fit(wait=True, logs=True)
    job = estimator.latest_training_job.describe()
    out = capsys.readouterr().out
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    world = hosts * per_host
    names = [f"algo-{i // per_host + 1}" for i in range(world)]  # -map-by slot: a host's slots in turn
    seen = {int(m[0]): m for m in MPI_LINE.findall(out)}
    assert sorted(seen) == list(range(world)), out
    for rank, (_, size, host, total, sm_host, epochs) in seen.items():
        assert int(size) == world and int(total) == world * (world + 1) // 2
        assert host == names[rank]
        # the toolkit passes its own variables from the master to every rank (mpirun -x SM_...)
        assert sm_host == "algo-1" and epochs == "3"
    assert _model(estimator) == {"size": world, "sum": world * (world + 1) // 2, "hosts": names}
    if hosts > 1:
        assert f"worker algo-{hosts} available for communication" in out  # the master waited for the agents
    else:  # one host: mpirun alone, without the agent, on the host's own eth0 (the job network)
        assert "launch agent" not in out and "mpi_agent.py" not in out
    assert "--host algo-1" in out and f"-np {world}" in out  # the toolkit's mpirun command line


def test_a_failing_rank_on_another_host_fails_the_job_with_its_error(client_env, mpi_runtime, tmp_path):
    estimator = _estimator(tmp_path, instance_count=2, per_host=1, hyperparameters={"fail_rank": 1})
    with pytest.raises(Exception):
        estimator.fit(wait=True, logs=False)
    job = estimator.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Failed"
    assert "rank 1 was told to fail" in job["FailureReason"], job["FailureReason"]
    assert job["FailureReason"].startswith("AlgorithmError: "), job["FailureReason"]


@pytest.mark.parametrize("distribution", [{"mpi": {"enabled": True, "processes_per_host": 2}},
                                          {"pytorchddp": {"enabled": True}}], ids=["mpi", "pytorchddp"])
def test_mpi_modes_without_mpirun_fail_with_the_reason(client_env, tmp_path, distribution):
    import sagemaker
    from sagemaker import image_uris
    from sagemaker.pytorch import PyTorch

    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN)
    session = sagemaker.Session()
    # the SDK checks pytorchddp's framework version only when no image_uri is given
    image = image_uris.retrieve("pytorch", session.boto_region_name, version="2.5", py_version="py311",
                                instance_type="ml.m5.xlarge", image_scope="training")
    # the job's own PATH has no mpirun, so smlocal finds none, as on a machine without Open MPI
    estimator = PyTorch(
        entry_point="train.py", source_dir=str(source), image_uri=image, instance_type="ml.m5.xlarge",
        instance_count=1, distribution=distribution, environment={"PATH": str(tmp_path / "no-mpi")},
        max_run=120, role=sagemaker.get_execution_role(), sagemaker_session=session,
    )
    with pytest.raises(Exception):
        estimator.fit(wait=True, logs=False)
    job = estimator.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Failed"
    assert "no mpirun" in job["FailureReason"] and "openmpi-bin" in job["FailureReason"]


def _processes_with(marker: str) -> list[int]:
    """Processes of this machine with ``marker`` in their environment (the sandboxes' are visible here):
    every rank, Open MPI daemon, mpirun and launch agent of the job has the job's hyperparameter."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:  # it ended meanwhile
        return b""


def test_stopping_a_running_mpi_job_ends_every_rank_daemon_and_agent(client_env, mpi_runtime, tmp_path, sm):
    marker = f"mpi-stop-{uuid.uuid4().hex[:8]}"
    estimator = _estimator(tmp_path, instance_count=2, per_host=1, hyperparameters={"hold": marker})
    (tmp_path / "src" / "train.py").write_text(TRAIN.replace(
        "comm.Barrier()", "import time\ntime.sleep(600) if os.environ.get('SM_HP_HOLD') else None\ncomm.Barrier()"))
    estimator.fit(wait=False)
    name = estimator.latest_training_job.name
    deadline = time.monotonic() + 60
    while len([p for p in _processes_with(marker) if b"mpi4py" in _cmdline(p)]) < 2:
        assert time.monotonic() < deadline, "the ranks did not start"
        assert sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress"
        time.sleep(0.1)
    sm.stop_training_job(TrainingJobName=name)
    deadline = time.monotonic() + 60
    while (job := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] in ("InProgress", "Stopping"):
        assert time.monotonic() < deadline, "the job did not stop"
        time.sleep(0.2)
    assert job["TrainingJobStatus"] == "Stopped"
    time.sleep(0.3)
    assert _processes_with(marker) == []

