"""The Airflow iris / built-in KNN DAG (``smlocal run airflow-iris``).

The DAG is the source tree's ``fixtures/airflow-iris/dags/iris_knn.py``; the workflow runs it once
with ``dag.test()`` against a throw-away Airflow home (SQLite metadata DB) under the emulator's
environment, with an ``aws_default`` connection pointing at the emulator.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

DAG_FILE = "iris_knn.py"


def dags_dir(explicit: str | None = None) -> Path:
    """The folder holding ``iris_knn.py``: ``explicit`` if given, else the source tree's fixture."""
    here = Path(__file__).resolve().parent
    candidates = [Path(explicit)] if explicit else [here / "dags", here.parents[2] / "fixtures" / "airflow-iris" / "dags"]
    for candidate in candidates:
        if (candidate / DAG_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        "Airflow iris DAG not found: expected fixtures/airflow-iris/dags/iris_knn.py in the smlocal source tree "
        "(or pass --param dags=PATH)"
    )


def aws_connection(env: dict[str, str]) -> str:
    """``AIRFLOW_CONN_AWS_DEFAULT`` (JSON form) for the endpoint and credentials in ``env``."""
    extra: dict = {"region_name": env.get("AWS_DEFAULT_REGION", "us-east-1")}
    if env.get("AWS_ENDPOINT_URL"):
        extra["endpoint_url"] = env["AWS_ENDPOINT_URL"]
    if env.get("AWS_ENDPOINT_URL_S3"):
        extra["service_config"] = {"s3": {"endpoint_url": env["AWS_ENDPOINT_URL_S3"]}}
    return json.dumps({"conn_type": "aws", "login": env.get("AWS_ACCESS_KEY_ID", ""),
                       "password": env.get("AWS_SECRET_ACCESS_KEY", ""), "extra": extra})


def airflow_environment(home: Path, dags: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for `airflow db migrate` and ``dag.test()``: a private home, no examples."""
    base = dict(os.environ if env is None else env)
    base.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_AWS_DEFAULT": aws_connection(base),
    })
    return base
