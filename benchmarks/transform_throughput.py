"""Batch transform throughput (records/s) versus the same model predicting in a bare Python loop.

100,000 CSV lines (8 features) go through a CreateTransformJob on a built-in XGBoost model trained
by the emulator, once per batch strategy. The bare baseline loads the same model.tar.gz in a fresh
interpreter and calls the same ``predict`` (CSV parsing included) on exactly the batches the job
sends (``transform_records.plan_object`` with the job's settings), one after the other.

Throughput of a job = records / (TransformEndTime - TransformStartTime): from the model server
answering its health check to the last ``.out`` written (S3 download, every request, joins, S3
upload). Model server start-up and teardown are reported separately (``job_wall_seconds``). Jobs
and bare loops alternate, three of each per case, and the best of each is kept: the host is shared.
SingleRecord cases run on the first 5,000 lines: each request costs what one ``predict`` call costs,
in the job and bare alike, so 100,000 of them would only make the run long.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import emulator, write  # noqa: E402

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
RECORDS = 100_000
SINGLE_RECORDS = 5_000  # SingleRecord pays xgboost's per-call cost (~4 ms here, bare too): a subset keeps it short
FEATURES = 8
ROUNDS = 3  # job and bare loop alternate; the best of each counts (the host is shared and noisy)
CASES = [
    {"case": "MultiRecord", "BatchStrategy": "MultiRecord"},  # AWS defaults: 6 MB, 1 request in flight
    {"case": "MultiRecord, 1 MB x 4 in flight", "BatchStrategy": "MultiRecord", "MaxPayloadInMB": 1,
     "MaxConcurrentTransforms": 4},
    {"case": "SingleRecord", "BatchStrategy": "SingleRecord"},
    {"case": "SingleRecord, 4 in flight", "BatchStrategy": "SingleRecord", "MaxConcurrentTransforms": 4},
]


def _csv(rows: np.ndarray) -> bytes:
    return "".join(",".join(f"{v:.4f}" for v in row) + "\n" for row in rows).encode()


def _train(sm, s3, role: str) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, FEATURES))
    y = x @ rng.normal(size=FEATURES) + rng.normal(scale=0.1, size=len(x))
    s3.put_object(Bucket="bench", Key="train/train.csv", Body=_csv(np.column_stack([y, x])))
    sm.create_training_job(
        TrainingJobName="xgb", RoleArn=role,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"num_round": "100", "max_depth": "6", "objective": "reg:squarederror"},
        InputDataConfig=[{"ChannelName": "train", "ContentType": "text/csv", "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bench/train/"}}}],
        OutputDataConfig={"S3OutputPath": "s3://bench/models"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )
    while (job := sm.describe_training_job(TrainingJobName="xgb"))["TrainingJobStatus"] == "InProgress":
        time.sleep(0.05)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    return job["ModelArtifacts"]["S3ModelArtifacts"]


def _records(case: dict) -> int:
    return SINGLE_RECORDS if case["BatchStrategy"] == "SingleRecord" else RECORDS


def _run_job(sm, name: str, case: dict) -> dict:
    extra = {k: v for k, v in case.items() if k != "case"}
    prefix = "batch-single" if case["BatchStrategy"] == "SingleRecord" else "batch"
    start = time.perf_counter()
    sm.create_transform_job(
        TransformJobName=name, ModelName="xgb-model",
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://bench/{prefix}/"}},
                        "ContentType": "text/csv", "SplitType": "Line"},
        TransformOutput={"S3OutputPath": f"s3://bench/out/{name}", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1}, **extra)
    while (job := sm.describe_transform_job(TransformJobName=name))["TransformJobStatus"] == "InProgress":
        time.sleep(0.005)
    wall = time.perf_counter() - start
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    busy = (job["TransformEndTime"] - job["TransformStartTime"]).total_seconds()
    startup = (job["TransformStartTime"] - job["CreationTime"]).total_seconds()
    return {"job_wall_seconds": wall, "model_server_startup_seconds": startup, "transform_seconds": busy,
            "records_per_second": _records(case) / busy}


_BARE = """
import json, sys, time
from pathlib import Path
from smlocal.runtime.algorithms import xgboost_algo
from smlocal.runtime.transform_records import TransformSpec, plan_object

model_dir, data_path, request, records = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
model = xgboost_algo.load_model(Path(model_dir))
batches = plan_object(Path(data_path).read_bytes(), TransformSpec.from_job(request)).batches
start = time.perf_counter()
lines = 0
for batch in batches:
    body, _ = xgboost_algo.predict(model, batch.payload, "text/csv", batch=True)
    lines += body.count(b"\\n")
seconds = time.perf_counter() - start
assert lines == records, lines
print(json.dumps({"requests": len(batches), "bare_seconds": seconds}))
"""


def _bare(model_dir: Path, data: bytes, case: dict) -> dict:
    """The same model and batches in a fresh interpreter (nothing else running in it)."""
    request = {"TransformInput": {"SplitType": "Line", "ContentType": "text/csv"},
               "TransformOutput": {"AssembleWith": "Line"},
               **{k: v for k, v in case.items() if k in ("BatchStrategy", "MaxPayloadInMB")}}
    data_path = model_dir.parent / "bare-input.csv"
    data_path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", _BARE, str(model_dir), str(data_path), json.dumps(request),
                          str(_records(case))], check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {"records": _records(case), **result, "bare_records_per_second": _records(case) / result["bare_seconds"]}


def main() -> None:
    data = _csv(np.random.default_rng(1).normal(size=(RECORDS, FEATURES)))
    results = []
    with emulator() as emu:
        sm, s3 = emu.client("sagemaker"), emu.client("s3")
        s3.create_bucket(Bucket="bench")
        artifacts = _train(sm, s3, emu.role_arn)
        sm.create_model(ModelName="xgb-model", ExecutionRoleArn=emu.role_arn,
                        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": artifacts})
        single = b"".join(data.splitlines(keepends=True)[:SINGLE_RECORDS])
        s3.put_object(Bucket="bench", Key="batch/data.csv", Body=data)
        s3.put_object(Bucket="bench", Key="batch-single/data.csv", Body=single)
        model_dir = Path(tempfile.mkdtemp()) / "model"
        archive = s3.get_object(Bucket="bench", Key=artifacts.split("/", 3)[3])["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(model_dir, filter="data")
        _run_job(sm, "warmup", CASES[0])
        for index, case in enumerate(CASES):
            jobs, bares = [], []
            for round_ in range(ROUNDS):
                jobs.append(_run_job(sm, f"bench-{index}-{round_}", case))
                bares.append(_bare(model_dir, single if case["BatchStrategy"] == "SingleRecord" else data, case))
            job = max(jobs, key=lambda r: r["records_per_second"])
            bare = max(bares, key=lambda r: r["bare_records_per_second"])
            out = s3.get_object(Bucket="bench", Key=f"out/bench-{index}-0/data.csv.out")["Body"].read()
            assert out.count(b"\n") == _records(case)
            row = {**case, **job, **bare, "ratio_to_bare": job["records_per_second"] / bare["bare_records_per_second"]}
            results.append(row)
            print(f"{case['case']:<34} transform {row['records_per_second']:>10.0f} rec/s   bare "
                  f"{row['bare_records_per_second']:>10.0f} rec/s   ratio {row['ratio_to_bare']:.2f}", flush=True)
    write("transform_throughput", {
        "records": RECORDS, "single_record_records": SINGLE_RECORDS, "features": FEATURES,
        "input_bytes": len(data), "model": "built-in XGBoost 1.0-1",
        "cases": results,
        "target": {"multi_record_ratio_to_bare": 0.7},
    })


if __name__ == "__main__":
    main()
