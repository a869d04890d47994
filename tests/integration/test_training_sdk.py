"""The real SageMaker SDK v2, unchanged, against the emulator (in this process, via client_env)."""

from __future__ import annotations

import io
import tarfile
import textwrap

import pytest

pytestmark = pytest.mark.slow

TRAIN = textwrap.dedent(
    """
    import argparse, glob, os
    import joblib, pandas as pd
    from sklearn.linear_model import LogisticRegression

    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        parser.add_argument("-C", type=float, default=1.0)  # one-letter names get one dash
        args = parser.parse_args()
        frame = pd.concat(pd.read_csv(f, header=None) for f in glob.glob(os.environ["SM_CHANNEL_TRAIN"] + "/*.csv"))
        model = LogisticRegression(C=args.C, max_iter=500).fit(frame.iloc[:, 1:], frame.iloc[:, 0])
        print(f"hello from train.py: C={args.C} accuracy={model.score(frame.iloc[:, 1:], frame.iloc[:, 0]):.3f}")
        joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
    """
)


@pytest.fixture
def iris_uri(client_env, tmp_path):
    import pandas as pd
    import sagemaker
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    path = tmp_path / "iris.csv"
    pd.concat([iris.target, iris.data], axis=1).to_csv(path, header=False, index=False)
    session = sagemaker.Session()
    return session.upload_data(str(path), bucket=session.default_bucket(), key_prefix="tests/iris")


def _estimator(tmp_path, files: dict[str, str], **kwargs):
    import sagemaker
    from sagemaker.sklearn import SKLearn

    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    for name, text in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    return SKLearn(
        entry_point="train.py",
        source_dir=str(source),
        framework_version="1.2-1",
        instance_type="ml.m5.large",
        instance_count=1,
        role=sagemaker.get_execution_role(),
        sagemaker_session=sagemaker.Session(),
        **kwargs,
    )


def test_sklearn_estimator_fit_with_logs(client_env, iris_uri, tmp_path, capsys):
    import boto3
    import joblib

    estimator = _estimator(tmp_path, {"train.py": TRAIN}, hyperparameters={"C": 0.5})
    estimator.fit({"train": iris_uri}, wait=True, logs=True)
    out = capsys.readouterr().out
    assert "hello from train.py: C=0.5" in out
    job = estimator.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed"
    bucket, key = estimator.model_data[5:].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        model = joblib.load(archive.extractfile("model.joblib"))
    assert model.C == 0.5


def test_sdk_sees_a_failed_job(client_env, iris_uri, tmp_path):
    from sagemaker.exceptions import UnexpectedStatusException

    estimator = _estimator(tmp_path, {"train.py": "raise RuntimeError('the data is wrong')\n"})
    with pytest.raises(UnexpectedStatusException) as exc:
        estimator.fit({"train": iris_uri}, wait=True, logs=False)
    assert "RuntimeError: the data is wrong" in str(exc.value)


def test_requirements_txt_is_installed(client_env, iris_uri, tmp_path):
    pkg = {
        "requirements.txt": "./localdep\n",
        "localdep/pyproject.toml": textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "smlocal-localdep"
            version = "1.0"
            """
        ),
        "localdep/smlocal_localdep/__init__.py": "MAGIC = 'from requirements.txt'\n",
        "train.py": textwrap.dedent(
            """
            import os
            import smlocal_localdep
            open(os.path.join(os.environ['SM_MODEL_DIR'], 'magic.txt'), 'w').write(smlocal_localdep.MAGIC)
            """
        ),
    }
    estimator = _estimator(tmp_path, pkg)
    estimator.fit({"train": iris_uri}, wait=True, logs=False)
    import boto3

    bucket, key = estimator.model_data[5:].split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        assert archive.extractfile("magic.txt").read() == b"from requirements.txt"
