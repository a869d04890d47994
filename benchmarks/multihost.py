"""Multi-host jobs: start-up cost of an N-host job against a one-host job, and all-reduce bandwidth
between two hosts on the job network against the same all-reduce on loopback.

* Start-up, N = 1, 2, 4 hosts of a trivial script-mode job, ``BENCH_RUNS`` (3) interleaved runs:
  ``first_line`` = CreateTrainingJob → the last host's first line of user code (each host prints
  ``time.time()`` first thing; the latest counts), and ``completed`` = CreateTrainingJob →
  Completed seen by a 5 ms poll. Medians, and each N's extra over N = 1.
* All-reduce: ``torch.distributed`` gloo ``all_reduce`` (SUM) of ``BENCH_MB`` (64) MB float32
  tensors, 3 warm-up then ``BENCH_ITERS`` (10) timed, as a 2-host job (rank = host index,
  MASTER_ADDR algo-1) and as a one-host job whose script starts two processes on 127.0.0.1.
  Bandwidth = tensor bytes / seconds per all-reduce (GB/s, 1e9 bytes; for 2 ranks the "bus"
  bandwidth is the same figure).

* MPI (the ``mpi`` distribution of a PyTorch job, Open MPI's ``mpirun`` through smlocal's launch
  agent): mpi4py ``Allreduce`` (SUM) of the same float32 buffers, 3 warm-up then ``BENCH_ITERS``
  timed, 2 hosts x 1 rank against 1 host x 2 ranks (Open MPI's shared memory), and the job's
  CreateTrainingJob → Completed (the agent's wait for the workers and mpirun's start included).
  Needs Open MPI and mpi4py; skipped (said in the results) without them.

``BENCH_BACKEND=docker`` runs the start-up part on the Docker backend instead (results in
``multihost_docker.json``; smlocal's scikit-learn image must be built). The all-reduce part needs
torch in the job, which that image lacks, so it runs on the process backend only.
"""

from __future__ import annotations

import io
import json
import os
import re
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import wait_training, write  # noqa: E402

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
START = "import os, time\nprint('first-line', os.environ['SM_CURRENT_HOST'], repr(time.time()), flush=True)\n" \
        "open(os.path.join(os.environ['SM_MODEL_DIR'], os.environ['SM_CURRENT_HOST']), 'w').write('x')\n"
ALLREDUCE = r'''
import json, os, sys, time
import torch, torch.distributed as dist

def run(rank, world, addr, mb, iters):
    os.environ.update(MASTER_ADDR=addr, MASTER_PORT="29531")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    tensor = torch.ones(mb * 1024 * 1024 // 4, dtype=torch.float32)
    for _ in range(3):
        dist.all_reduce(tensor)
    dist.barrier()
    start = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(tensor)
    seconds = (time.perf_counter() - start) / iters
    if rank == 0:
        rate = tensor.numel() * 4 / seconds / 1e9
        print("allreduce " + json.dumps({"seconds": seconds, "gb_per_s": rate}), flush=True)
    dist.destroy_process_group()

if __name__ == "__main__":
    mb, iters = int(os.environ["BENCH_MB"]), int(os.environ["BENCH_ITERS"])
    hosts = json.loads(os.environ["SM_HOSTS"])
    if len(hosts) > 1:  # one rank per host, over the job network
        run(hosts.index(os.environ["SM_CURRENT_HOST"]), len(hosts), hosts[0], mb, iters)
    else:  # two processes on this host, over loopback
        import multiprocessing
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=run, args=(r, 2, "127.0.0.1", mb, iters)) for r in range(2)]
        [p.start() for p in procs]
        [p.join() for p in procs]
        sys.exit(max(p.exitcode for p in procs))
'''

PYTORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311"
MPI_ALLREDUCE = r'''
import json, os, time
import numpy
from mpi4py import MPI

comm = MPI.COMM_WORLD
mb, iters = int(os.environ["BENCH_MB"]), int(os.environ["BENCH_ITERS"])
send = numpy.ones(mb * 1024 * 1024 // 4, dtype=numpy.float32)
receive = numpy.empty_like(send)
for _ in range(3):
    comm.Allreduce(send, receive, op=MPI.SUM)
comm.Barrier()
start = time.perf_counter()
for _ in range(iters):
    comm.Allreduce(send, receive, op=MPI.SUM)
seconds = (time.perf_counter() - start) / iters
if comm.Get_rank() == 0:
    print("allreduce " + json.dumps({"seconds": seconds, "gb_per_s": send.nbytes / seconds / 1e9}), flush=True)
'''


def _bundle(script: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        info = tarfile.TarInfo("train.py")
        info.size = len(script)
        archive.addfile(info, io.BytesIO(script.encode()))
    return buf.getvalue()


def _job(sm, emu, name: str, code: str, hosts: int, env: dict | None = None, *, image: str = IMAGE,
         hyperparameters: dict | None = None) -> tuple[float, dict]:
    created = time.time()
    sm.create_training_job(
        TrainingJobName=name, RoleArn=emu.role_arn,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        HyperParameters={"sagemaker_program": '"train.py"', "sagemaker_submit_directory": f'"{code}"',
                         **(hyperparameters or {})},
        Environment=env or {},
        OutputDataConfig={"S3OutputPath": "s3://bench/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": hosts, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 600})
    return created, wait_training(sm, name)


def _log_lines(emu, name: str) -> list[str]:
    logs, group = emu.client("logs"), "/aws/sagemaker/TrainingJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    return [e["message"] for s in streams for e in logs.get_log_events(
        logGroupName=group, logStreamName=s["logStreamName"], startFromHead=True)["events"]]


def startup(sm, emu, runs: int) -> dict:
    code = "s3://bench/code/start.tar.gz"
    emu.client("s3").put_object(Bucket="bench", Key="code/start.tar.gz", Body=_bundle(START))
    _job(sm, emu, "warm-1", code, 1)
    _job(sm, emu, "warm-2", code, 2)
    first: dict[int, list[float]] = {1: [], 2: [], 4: []}
    done: dict[int, list[float]] = {1: [], 2: [], 4: []}
    for run in range(runs):
        for hosts in first:
            name = f"start-{hosts}-{run}"
            created, job = _job(sm, emu, name, code, hosts)
            ended = time.time()
            stamps = {line.split()[1]: float(line.split()[2]) for line in _log_lines(emu, name)
                      if line.startswith("first-line ")}
            assert len(stamps) == hosts, f"{name}: first lines of {sorted(stamps)}"
            first[hosts].append(max(stamps.values()) - created)
            done[hosts].append(ended - created)
    result = {}
    for hosts in first:
        result[f"hosts_{hosts}"] = {
            "first_line_s_median": statistics.median(first[hosts]),
            "completed_s_median": statistics.median(done[hosts]),
            "first_line_extra_over_1_host_s": statistics.median(first[hosts]) - statistics.median(first[1]),
            "completed_extra_over_1_host_s": statistics.median(done[hosts]) - statistics.median(done[1]),
            "first_line_s": first[hosts], "completed_s": done[hosts]}
    return result


def allreduce(sm, emu, mb: int, iters: int) -> dict:
    code = "s3://bench/code/allreduce.tar.gz"
    emu.client("s3").put_object(Bucket="bench", Key="code/allreduce.tar.gz", Body=_bundle(ALLREDUCE))
    env = {"BENCH_MB": str(mb), "BENCH_ITERS": str(iters)}
    result = {}
    for label, hosts in (("loopback_1_host_2_processes", 1), ("job_network_2_hosts", 2)):
        name = f"allreduce-{hosts}-{int(time.time())}"
        _job(sm, emu, name, code, hosts, env)
        lines = [json.loads(line.split(" ", 1)[1]) for line in _log_lines(emu, name) if line.startswith("allreduce ")]
        assert len(lines) == 1, lines
        result[label] = lines[0]
    result["ratio_network_over_loopback"] = (result["job_network_2_hosts"]["gb_per_s"]
                                             / result["loopback_1_host_2_processes"]["gb_per_s"])
    return result


def mpi(sm, emu, mb: int, iters: int) -> dict:
    import shutil

    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return {"skipped": "mpi4py is not installed"}
    if shutil.which("mpirun") is None:
        return {"skipped": "Open MPI is not installed (mpirun)"}
    code = "s3://bench/code/mpi.tar.gz"
    emu.client("s3").put_object(Bucket="bench", Key="code/mpi.tar.gz", Body=_bundle(MPI_ALLREDUCE))
    env = {"BENCH_MB": str(mb), "BENCH_ITERS": str(iters)}
    result = {}
    for label, hosts, per_host in (("one_host_2_ranks", 1, 2), ("job_network_2_hosts", 2, 1)):
        name = f"mpi-{hosts}-{int(time.time())}"
        created, job = _job(sm, emu, name, code, hosts, env, image=PYTORCH_IMAGE, hyperparameters={
            "sagemaker_mpi_enabled": "true", "sagemaker_mpi_num_of_processes_per_host": str(per_host)})
        ended = time.time()
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        # mpirun --tag-output prefixes rank 0's line with [1,0]<stdout>:
        found = (re.search(r"allreduce (\{.*\})", line) for line in _log_lines(emu, name))
        lines = [json.loads(match.group(1)) for match in found if match]
        assert len(lines) == 1, lines
        result[label] = {**lines[0], "job_completed_s": ended - created}
    result["ratio_network_over_one_host"] = (result["job_network_2_hosts"]["gb_per_s"]
                                             / result["one_host_2_ranks"]["gb_per_s"])
    return result


def main() -> None:
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    backend = os.environ.get("BENCH_BACKEND", "process")
    runs, mb, iters = (int(os.environ.get(k, d)) for k, d in (("BENCH_RUNS", 3), ("BENCH_MB", 64), ("BENCH_ITERS", 10)))
    settings = load_settings(data_dir=Path(tempfile.mkdtemp(prefix="smlocal-bench-")), backend=backend)
    with Emulator(settings) as emu:
        sm = emu.client("sagemaker")
        emu.client("s3").create_bucket(Bucket="bench")
        data = {"backend": backend, "runs": runs, "startup": startup(sm, emu, runs)}
        if backend == "process":
            data["allreduce"] = {"tensor_mb": mb, "iterations": iters, **allreduce(sm, emu, mb, iters)}
            data["mpi_allreduce"] = {"tensor_mb": mb, "iterations": iters, **mpi(sm, emu, mb, iters)}
    write("multihost" if backend == "process" else f"multihost_{backend}", data)


if __name__ == "__main__":
    main()
