"""The same two-step pipeline under SDK v2 local mode and under smlocal (process and Docker backends).

Pipeline: a ``SKLearnProcessor`` step (preprocess.py: split a CSV) → an ``SKLearn`` training step
(train.py: fit a LogisticRegression on the split), both scikit-learn 1.2-1, on an iris CSV in S3.

* ``sdk_local``: ``LocalPipelineSession`` (Docker through docker-compose, ``local_code: True``) on
  smlocal's locally built scikit-learn image, tagged with the ECR name for the run only (the tag is
  removed after; nothing is pulled); S3 is a real S3 server on loopback (``rclone serve s3``,
  :class:`smlocal.s3store.DurableS3Store`) given as ``s3_endpoint_url``. Local mode leaves its exited
  containers behind: they are removed after each run.
* ``smlocal_process`` / ``smlocal_docker``: an embedded smlocal (in-memory S3) with that backend;
  ``PipelineSession``, ``upsert`` + ``start`` + wait for Succeeded.

Per-job overhead = (pipeline wall time − the two scripts run bare, each as ``python script.py`` on
local folders) / 2. Ratios: SDK local mode's wall time over smlocal's (goals: docker ≥ 2, process ≥ 10).
Also ``smlocal run abalone --backend process|docker`` wall times (the whole command). Medians of
``BENCH_RUNS`` (2) interleaved runs. Needs the engine, docker-compose and ``smlocal images build sklearn``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "2"))
REGION = "us-east-1"
ECR_URI = f"683313688378.dkr.ecr.{REGION}.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
BUCKET = "smlocal-bench-local-mode"

PREPROCESS = """\
import os, pandas as pd
base = os.environ.get("BENCH_PROCESSING_DIR", "/opt/ml/processing")
frame = pd.read_csv(f"{base}/input/iris.csv")
os.makedirs(f"{base}/train", exist_ok=True)
frame.sample(frac=0.8, random_state=0).to_csv(f"{base}/train/train.csv", index=False)
print("rows", len(frame))
"""

TRAIN = """\
import os, joblib, pandas as pd
from sklearn.linear_model import LogisticRegression
frame = pd.read_csv(os.path.join(os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"), "train.csv"))
model = LogisticRegression(max_iter=500).fit(frame.drop(columns=["species"]), frame["species"])
joblib.dump(model, os.path.join(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"), "model.joblib"))
print("score", model.score(frame.drop(columns=["species"]), frame["species"]))
"""


def _workspace() -> Path:
    from sklearn.datasets import load_iris

    work = Path(tempfile.mkdtemp(prefix="bench-local-mode-"))
    (work / "code").mkdir()
    (work / "code" / "preprocess.py").write_text(PREPROCESS)
    (work / "code" / "train.py").write_text(TRAIN)
    iris = load_iris(as_frame=True)
    iris.data.assign(species=iris.target).to_csv(work / "iris.csv", index=False)
    return work


def bare_seconds(work: Path) -> float:
    """preprocess.py then train.py as plain processes on local folders."""
    proc = work / "bare" / "processing"
    shutil.rmtree(work / "bare", ignore_errors=True)
    (proc / "input").mkdir(parents=True)
    shutil.copyfile(work / "iris.csv", proc / "input" / "iris.csv")
    (work / "bare" / "model").mkdir()
    start = time.perf_counter()
    for script, env in (("preprocess.py", {"BENCH_PROCESSING_DIR": str(proc)}),
                        ("train.py", {"SM_CHANNEL_TRAIN": str(proc / "train"), "SM_MODEL_DIR": str(work / "bare" / "model")})):
        subprocess.run([sys.executable, str(work / "code" / script)], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, **env})
    return time.perf_counter() - start


def build_pipeline(session, input_uri: str, code_dir: Path, name: str):
    from sagemaker.inputs import TrainingInput
    from sagemaker.processing import ProcessingInput, ProcessingOutput
    from sagemaker.sklearn.estimator import SKLearn
    from sagemaker.sklearn.processing import SKLearnProcessor
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.steps import ProcessingStep, TrainingStep

    processor = SKLearnProcessor(framework_version="1.2-1", role=ROLE, instance_type="ml.m5.large", instance_count=1,
                                 sagemaker_session=session)
    prep = ProcessingStep("Prep", step_args=processor.run(
        code=str(code_dir / "preprocess.py"),
        inputs=[ProcessingInput(source=input_uri, destination="/opt/ml/processing/input")],
        outputs=[ProcessingOutput(output_name="train", source="/opt/ml/processing/train")]))
    estimator = SKLearn(entry_point="train.py", source_dir=str(code_dir), framework_version="1.2-1", py_version="py3",
                        role=ROLE, instance_type="ml.m5.large", instance_count=1, sagemaker_session=session,
                        output_path=f"s3://{session.default_bucket()}/{name}/model")
    train = TrainingStep("Train", step_args=estimator.fit(
        {"train": TrainingInput(prep.properties.ProcessingOutputConfig.Outputs["train"].S3Output.S3Uri)}))
    return Pipeline(name=name, steps=[prep, train], sagemaker_session=session)


# ---- SDK v2 local mode
class LocalModeRig:
    """The S3 server, the ECR tag of smlocal's image and a clean engine around SDK local mode runs."""

    def __init__(self, work: Path) -> None:
        import docker

        from smlocal.runtime import image_catalog
        from smlocal.s3store import DurableS3Store

        self.work = work
        self.engine = docker.from_env()
        self.local_tag = image_catalog.local_tag(ECR_URI)
        self.engine.images.get(self.local_tag).tag(ECR_URI)  # for the run only: removed in close()
        self.store = DurableS3Store(work / "s3data", region=REGION).start()
        self.store.client().create_bucket(Bucket=BUCKET)
        self.store.client().upload_file(str(work / "iris.csv"), BUCKET, "input/iris.csv")
        self.networks_before = {n.id for n in self.engine.networks.list()}

    def run(self, index: int) -> float:
        import boto3
        from sagemaker.workflow.pipeline_context import LocalPipelineSession

        key, secret = self.store.credentials
        boto_session = boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION)
        session = LocalPipelineSession(boto_session=boto_session, default_bucket=BUCKET,
                                       s3_endpoint_url=self.store.endpoint)
        session.config = {"local": {"local_code": True}}
        pipeline = build_pipeline(session, f"s3://{BUCKET}/input/iris.csv", self.work / "code", f"bench-local-{index}")
        started = time.perf_counter()
        pipeline.create(ROLE)
        execution = pipeline.start()
        elapsed = time.perf_counter() - started
        status = execution.describe()["PipelineExecutionStatus"]
        self.remove_containers()
        if status != "Succeeded":
            raise SystemExit(f"SDK local mode pipeline ended {status}: {execution.list_steps()}")
        return elapsed

    def remove_containers(self) -> int:
        """Local mode's exited containers (of the ECR-tagged image) and the network it made."""
        removed = 0
        for container in self.engine.containers.list(all=True, filters={"ancestor": ECR_URI}):
            container.remove(force=True)
            removed += 1
        for network in self.engine.networks.list(names=["sagemaker-local"]):
            if network.id not in self.networks_before:
                network.remove()
        return removed

    def close(self) -> None:
        self.remove_containers()
        self.store.stop()
        if ECR_URI != self.local_tag:
            self.engine.images.remove(ECR_URI, noprune=True)  # the tag only; smlocal's image stays


# ---- smlocal
def smlocal_seconds(work: Path, backend: str, index: int) -> float:
    import boto3
    import pytest
    import sagemaker
    from sagemaker.workflow.pipeline_context import PipelineSession

    from smlocal import compat
    from smlocal.auth import client_environment
    from smlocal.config import load_settings
    from smlocal.pytest_plugin import point_environment_at
    from smlocal.server import Emulator

    emulator = Emulator(load_settings(data_dir=Path(tempfile.mkdtemp(prefix=f"bench-{backend}-")), port=0,
                                      backend=backend)).start()
    patch = pytest.MonkeyPatch()
    try:
        point_environment_at(patch, client_environment(emulator.endpoint, emulator.settings))
        compat.install()
        session = PipelineSession(boto_session=boto3.Session(region_name=REGION))
        uri = sagemaker.Session(boto_session=boto3.Session(region_name=REGION)).upload_data(
            str(work / "iris.csv"), bucket=session.default_bucket(), key_prefix="input")
        pipeline = build_pipeline(session, uri, work / "code", f"bench-{backend}-{index}")
        started = time.perf_counter()
        pipeline.upsert(ROLE)
        execution = pipeline.start()
        sm = session.sagemaker_client
        while (status := sm.describe_pipeline_execution(PipelineExecutionArn=execution.arn)[
                "PipelineExecutionStatus"]) == "Executing":
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        if status != "Succeeded":
            raise SystemExit(f"smlocal ({backend}) pipeline ended {status}: {execution.list_steps()}")
        return elapsed
    finally:
        patch.undo()
        emulator.stop()


def abalone_seconds(backend: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_", "SAGEMAKER_"))}
    env["SMLOCAL_AUTODETECT"] = "0"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "smlocal.cli", "run", "abalone", "--backend", backend],
                          capture_output=True, text=True, env=env, check=False)
    status = "Succeeded" if "Pipeline execution Succeeded" in done.stdout else "Failed"
    return {"seconds": time.perf_counter() - started, "status": status}


def main() -> None:
    work = _workspace()
    bare_seconds(work)  # warm imports and the page cache
    rows: dict[str, list[float]] = {"bare": [], "sdk_local": [], "smlocal_process": [], "smlocal_docker": []}
    rig = LocalModeRig(work)
    try:
        for index in range(RUNS):
            rows["bare"].append(bare_seconds(work))
            rows["sdk_local"].append(rig.run(index))
            rows["smlocal_process"].append(smlocal_seconds(work, "process", index))
            rows["smlocal_docker"].append(smlocal_seconds(work, "docker", index))
    finally:
        rig.close()
    median = {key: statistics.median(values) for key, values in rows.items()}
    overhead = {key: (median[key] - median["bare"]) / 2 for key in ("sdk_local", "smlocal_process", "smlocal_docker")}
    abalone = {backend: abalone_seconds(backend) for backend in ("process", "docker")}
    write("sdk_local_mode", {
        "runs": RUNS,
        "pipeline_seconds": median,
        "per_job_overhead_seconds": overhead,
        "ratio_sdk_local_over_smlocal_docker": median["sdk_local"] / median["smlocal_docker"],
        "ratio_sdk_local_over_smlocal_process": median["sdk_local"] / median["smlocal_process"],
        "goals": {"docker": 2.0, "process": 10.0},
        "abalone_run": abalone,
        "raw": rows,
        "load_average_1m": os.getloadavg()[0],
    })


if __name__ == "__main__":
    main()
