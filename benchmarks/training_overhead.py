"""Per-job overhead of a training job versus running the same trivial script bare.

``BENCH_BASELINE=path/to/an/earlier/training_overhead.json`` adds that run's overhead p50 to the
result as ``baseline_overhead_ms_p50`` (e.g. the numbers before a sandbox change).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import emulator, summary, wait_training, write  # noqa: E402

SCRIPT = "import os\nopen(os.path.join(os.environ.get('SM_MODEL_DIR', '.'), 'm.txt'), 'w').write('x')\n"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
JOBS = 20


def bare_times(runs: int) -> list[float]:
    folder = Path(tempfile.mkdtemp())
    (folder / "train.py").write_text(SCRIPT)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "train.py"], cwd=folder, check=True, env={"SM_MODEL_DIR": str(folder)})
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    with emulator() as emu:
        sm, s3 = emu.client("sagemaker"), emu.client("s3")
        s3.create_bucket(Bucket="bench")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as archive:
            info = tarfile.TarInfo("train.py")
            info.size = len(SCRIPT)
            archive.addfile(info, io.BytesIO(SCRIPT.encode()))
        s3.put_object(Bucket="bench", Key="code/sourcedir.tar.gz", Body=buf.getvalue())
        s3.put_object(Bucket="bench", Key="data/train.csv", Body=b"1,2,3\n")
        walls = []
        for i in range(JOBS + 2):
            name = f"overhead-{i}"
            start = time.perf_counter()
            sm.create_training_job(
                TrainingJobName=name,
                AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
                RoleArn=emu.role_arn,
                HyperParameters={"sagemaker_program": '"train.py"',
                                 "sagemaker_submit_directory": '"s3://bench/code/sourcedir.tar.gz"'},
                InputDataConfig=[{"ChannelName": "train", "DataSource": {"S3DataSource": {
                    "S3DataType": "S3Prefix", "S3Uri": "s3://bench/data/"}}}],
                OutputDataConfig={"S3OutputPath": "s3://bench/out"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
                StoppingCondition={"MaxRuntimeInSeconds": 600},
            )
            wait_training(sm, name)
            if i >= 2:  # the first two warm caches (imports, S3 buckets, log group)
                walls.append(time.perf_counter() - start)
    bare = bare_times(JOBS)
    bare_p50 = summary(bare)["p50"]
    overhead_ms = [(w - bare_p50) * 1000 for w in walls]
    baseline = os.environ.get("BENCH_BASELINE")
    extra = {}
    if baseline:
        before = json.loads(Path(baseline).read_text())
        extra = {"baseline_overhead_ms_p50": before["overhead_ms"]["p50"], "baseline_when": before["when"],
                 "baseline_sandbox": before.get("sandbox", "mount namespace only (user namespace when not root)")}
    write("training_overhead", {
        "sandbox": "user + pid (own /proc, init) + mount namespaces, the host copy-on-write (overlays, pivot_root), "
                   "hidden data dir and credentials [+ net]",
        **extra,
        "jobs": JOBS,
        "job_wall_seconds": summary(walls),
        "bare_script_seconds": summary(bare),
        "overhead_ms": summary(overhead_ms),
        "target": {"overhead_p50_ms": 150},
    })


if __name__ == "__main__":
    main()
