"""The SageMaker SDK v3 tier (``sagemaker>=3``): run in ``.venv-v3`` against the main session's emulator.

tests/integration/test_sdk_v3_tier.py builds that venv and runs this folder with the main suite's
client environment (``SMLOCAL_ENDPOINT``, ``AWS_ENDPOINT_URL``, credentials and smlocal's site hook on
``PYTHONPATH``). SDK v3 cannot share a venv with v2: the main suite never collects this folder
(``norecursedirs`` in pyproject.toml).
"""

from __future__ import annotations

import os
import uuid

import pytest

SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"

TRAIN = '''
import json, os, pathlib
hps = json.loads(pathlib.Path("/opt/ml/input/config/hyperparameters.json").read_text())
rows = pathlib.Path(os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"), "data.csv").read_text()
model_dir = pathlib.Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
(model_dir / "model.json").write_text(json.dumps({"alpha": hps.get("alpha"), "rows": len(rows.splitlines())}))
print("trained with alpha", hps.get("alpha"))
'''


@pytest.fixture(scope="session")
def boto_session():
    import boto3

    if not os.environ.get("SMLOCAL_ENDPOINT"):
        pytest.fail("the SDK v3 tier runs against smlocal: tests/integration/test_sdk_v3_tier.py sets its environment")
    return boto3.Session(region_name=os.environ["AWS_DEFAULT_REGION"])


@pytest.fixture(scope="session")
def session(boto_session):
    from sagemaker.core.helper.session_helper import Session

    return Session(boto_session=boto_session)


@pytest.fixture(scope="session")
def role():
    return os.environ["SMLOCAL_ROLE_ARN"]


@pytest.fixture(scope="session")
def bucket(session):
    return session.default_bucket()


@pytest.fixture
def source_dir(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "train.py").write_text(TRAIN)
    return folder


@pytest.fixture
def train_uri(boto_session, bucket):
    key = f"v3-tier/{uuid.uuid4().hex[:8]}/train/data.csv"
    boto_session.client("s3").put_object(Bucket=bucket, Key=key, Body=b"1,2\n3,4\n5,6\n")
    return f"s3://{bucket}/{key.rsplit('/', 1)[0]}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def model_json(boto_session, model_uri: str) -> dict:
    """The ``model.json`` inside a job's ``model.tar.gz``."""
    import io
    import json
    import tarfile

    bucket, key = model_uri[5:].split("/", 1)
    body = boto_session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return json.load(archive.extractfile("model.json"))
