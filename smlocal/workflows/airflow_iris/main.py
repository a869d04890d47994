"""airflow-iris: `airflow db migrate` in a temporary Airflow home, ``dag.test()`` of the iris KNN DAG, checks.

Parameters (``--param NAME=VALUE``): ``bucket`` (S3 bucket, default ``sagemaker-iris-knn``),
``check_interval`` (seconds between job polls, default 1), ``dags`` (another DAG folder).
Exits 0 when the DAG run succeeded and its model artefact and predictions are in S3.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from smlocal.workflows import configure_logging
from smlocal.workflows.airflow_iris import DAG_FILE, airflow_environment, dags_dir


def check_outputs(bucket: str) -> int:
    """Prints the model artefact, the predictions and their accuracy; 0 when both are there."""
    import boto3

    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="iris/").get("Contents", [])]
    models = [k for k in keys if k.startswith("iris/output/") and k.endswith("/output/model.tar.gz")]
    outputs = [k for k in keys if k == "iris/predictions/iris_batch.csv.out"]
    if not models or not outputs:
        print(f"missing outputs in s3://{bucket}/iris/: model artefacts {models}, predictions {outputs}",
              file=sys.stderr)
        return 1
    lines = s3.get_object(Bucket=bucket, Key=outputs[0])["Body"].read().decode().splitlines()
    predicted = [json.loads(line)["predicted_label"] for line in lines if line.strip()]
    labels_body = s3.get_object(Bucket=bucket, Key="iris/batch-labels/iris_batch_labels.csv")["Body"].read()
    labels = [float(x) for x in labels_body.decode().split()]
    correct = sum(p == t for p, t in zip(predicted, labels))
    print(f"\nModel artefact(s): {', '.join(f's3://{bucket}/{k}' for k in models)}")
    print(f"Predictions: s3://{bucket}/{outputs[0]} ({len(predicted)} records)")
    print(f"Accuracy on the {len(labels)} held-out iris rows: {correct / max(1, len(labels)):.3f}")
    return 0 if len(predicted) == len(labels) else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--param", action="append", default=[])
    params = dict(p.split("=", 1) for p in parser.parse_args().param)
    configure_logging()
    if importlib.util.find_spec("airflow") is None:
        print("smlocal run airflow-iris needs Airflow: pip install 'smlocal[airflow]'", file=sys.stderr)
        return 2
    dags = dags_dir(params.get("dags"))
    bucket = params.get("bucket", "sagemaker-iris-knn")
    home = Path(tempfile.mkdtemp(prefix="smlocal-airflow-"))
    try:
        env = airflow_environment(home, dags)
        env.update(IRIS_BUCKET=bucket, IRIS_CHECK_INTERVAL=params.get("check_interval", "1"))
        migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                                 capture_output=True, text=True)
        if migrate.returncode != 0:
            print(migrate.stdout[-4000:], migrate.stderr[-4000:], sep="\n", file=sys.stderr)
            print("airflow db migrate failed", file=sys.stderr)
            return migrate.returncode
        code = subprocess.call([sys.executable, str(dags / DAG_FILE)], env=env, cwd=home)
        if code != 0:
            print(f"the DAG run failed (exit {code})", file=sys.stderr)
            return code
        return check_outputs(bucket)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
