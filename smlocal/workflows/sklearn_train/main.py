"""sklearn-train: iris → SDK v2 SKLearn estimator → model.tar.gz, checked after training.

This is unchanged SageMaker SDK v2 code: on AWS it runs as is (with a real role and bucket).
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
from pathlib import Path

import boto3
import joblib
import pandas as pd
import sagemaker
from sagemaker.sklearn import SKLearn
from sklearn.datasets import load_iris

from smlocal.workflows import configure_logging


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--param", action="append", default=[])
    params = dict(p.split("=", 1) for p in parser.parse_args().param)
    configure_logging()

    session = sagemaker.Session()
    bucket = session.default_bucket()
    role = sagemaker.get_execution_role()
    iris = load_iris(as_frame=True)
    frame = pd.concat([iris.target, iris.data], axis=1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "iris.csv"
        frame.to_csv(path, header=False, index=False)
        train_uri = session.upload_data(str(path), bucket=bucket, key_prefix="sklearn-train/data")

    estimator = SKLearn(
        entry_point="train.py",
        source_dir=str(Path(__file__).parent),
        framework_version="1.2-1",
        instance_type="ml.m5.large",
        instance_count=1,
        role=role,
        sagemaker_session=session,
        hyperparameters={"n-estimators": int(params.get("n-estimators", 50)), "max-depth": 4},
        metric_definitions=[{"Name": "train:accuracy", "Regex": r"train_accuracy=([0-9.]+)"}],
    )
    estimator.fit({"train": train_uri}, wait=True, logs=True)

    artifact = estimator.model_data
    out_bucket, key = artifact[5:].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=out_bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        model = joblib.load(archive.extractfile("model.joblib"))
    accuracy = model.score(iris.data.values, iris.target.values)
    job = estimator.latest_training_job.describe()
    print(f"\nTraining job {job['TrainingJobName']}: {job['TrainingJobStatus']}")
    print(f"Model artefact: {artifact}")
    print(f"Metrics: {[(m['MetricName'], m['Value']) for m in job.get('FinalMetricDataList', [])]}")
    print(f"Accuracy of the downloaded model on iris: {accuracy:.3f}")
    return 0 if job["TrainingJobStatus"] == "Completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
