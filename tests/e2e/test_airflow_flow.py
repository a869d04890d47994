"""The Airflow iris DAG (S3Hook, SageMaker training/model/transform operators) run with ``dag.test()``.

Airflow's metadata DB is a SQLite file in a temporary AIRFLOW_HOME; the ``aws_default`` connection
(``AIRFLOW_CONN_AWS_DEFAULT``) points at this session's emulator. The checks read what the DAG left
in S3 and in SageMaker, not just exit codes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def airflow_env(client_env, tmp_path_factory):
    """A migrated Airflow home for this module, with the connection to the emulator."""
    from smlocal.workflows.airflow_iris import airflow_environment, dags_dir

    home = tmp_path_factory.mktemp("airflow-home")
    env = airflow_environment(home, dags_dir(), {**os.environ, "IRIS_CHECK_INTERVAL": "1"})
    migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    return env


def test_connection_points_at_the_emulator(airflow_env, client_env):
    conn = json.loads(airflow_env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert conn["extra"]["endpoint_url"] == client_env["AWS_ENDPOINT_URL"]
    assert conn["conn_type"] == "aws" and conn["login"] == client_env["AWS_ACCESS_KEY_ID"]


def test_dag_test_trains_knn_and_writes_predictions(airflow_env, s3, sm, bucket):
    from smlocal.workflows.airflow_iris import DAG_FILE, dags_dir

    result = subprocess.run([sys.executable, str(dags_dir() / DAG_FILE)], env={**airflow_env, "IRIS_BUCKET": bucket},
                            capture_output=True, text=True, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-8000:]
    assert "state=success" in log

    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="iris/")["Contents"]}
    models = [k for k in keys if k.startswith("iris/output/") and k.endswith("/output/model.tar.gz")]
    assert len(models) == 1, sorted(keys)
    job_name = models[0].split("/")[2]

    # SageMaker records: the built-in KNN training job, the model, the transform job
    job = sm.describe_training_job(TrainingJobName=job_name)
    assert job["TrainingJobStatus"] == "Completed"
    assert job["AlgorithmSpecification"]["TrainingImage"] == "382416733822.dkr.ecr.us-east-1.amazonaws.com/knn:1"
    assert job["HyperParameters"] == {"feature_dim": "4", "k": "3", "predictor_type": "classifier",
                                      "sample_size": "120"}
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{bucket}/{models[0]}"
    model = sm.describe_model(ModelName=job_name)
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{bucket}/{models[0]}"
    transform = sm.describe_transform_job(TransformJobName=job_name)
    assert transform["TransformJobStatus"] == "Completed"
    assert transform["ModelName"] == job_name

    # the artefact is a real archive with the algorithm's model file
    body = s3.get_object(Bucket=bucket, Key=models[0])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        assert any(name.endswith("model_algo-1") for name in archive.getnames())

    # one prediction per batch row, in order, and k-NN (k=3) gets iris nearly right
    out = s3.get_object(Bucket=bucket, Key="iris/predictions/iris_batch.csv.out")["Body"].read().decode()
    predicted = [json.loads(line)["predicted_label"] for line in out.splitlines()]
    batch = s3.get_object(Bucket=bucket, Key="iris/batch/iris_batch.csv")["Body"].read().decode()
    labels = s3.get_object(Bucket=bucket, Key="iris/batch-labels/iris_batch_labels.csv")["Body"].read().decode()
    truth = [float(x) for x in labels.split()]
    assert len(predicted) == len(batch.splitlines()) == len(truth) == 30
    assert set(predicted) <= {0.0, 1.0, 2.0}
    accuracy = np.mean(np.array(predicted) == np.array(truth))
    assert accuracy >= 0.9, (predicted, truth)


def test_smlocal_run_airflow_iris(client_env, bucket):
    result = subprocess.run([sys.executable, "-m", "smlocal.cli", "run", "airflow-iris", "--param", f"bucket={bucket}"],
                            env=dict(os.environ), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    assert f"Predictions: s3://{bucket}/iris/predictions/iris_batch.csv.out (30 records)" in result.stdout
    assert f"s3://{bucket}/iris/output/iris-knn-" in result.stdout
