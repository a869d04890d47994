"""Processing jobs through the real SageMaker SDK v2, unchanged, against the emulator (via client_env)."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from conftest import SKLEARN_IMAGE, read_s3, unique

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "abalone"
SKLEARN_023_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:0.23-1-cpu-py3"
ALGORITHM_ERROR = "AlgorithmError: See job logs for more information"


def _sdk():
    import sagemaker

    session = sagemaker.Session()
    return session, sagemaker.get_execution_role()


def _csv_rows(text: bytes) -> list[list[float]]:
    return [[float(v) for v in line.split(",")] for line in text.decode().splitlines() if line]


@pytest.fixture(scope="module")
def abalone_split(client_env):
    """The abalone fixture preprocessed by SKLearnProcessor (the example's first step), once."""
    import contextlib
    import io

    from sagemaker.processing import ProcessingInput, ProcessingOutput
    from sagemaker.sklearn.processing import SKLearnProcessor

    session, role = _sdk()
    bucket = session.default_bucket()
    source = session.upload_data(str(FIXTURES / "data" / "abalone.csv"), bucket=bucket,
                                 key_prefix=unique("abalone"))
    dataset = source.rsplit("/", 1)[0] + "/abalone-dataset.csv"
    session.boto_session.client("s3").copy_object(
        Bucket=bucket, Key=dataset.split("/", 3)[3], CopySource={"Bucket": bucket, "Key": source.split("/", 3)[3]})
    processor = SKLearnProcessor(framework_version="0.23-1", instance_type="ml.m5.xlarge", instance_count=1,
                                 role=role, sagemaker_session=session)
    printed = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stdout(printed):
        processor.run(code=str(FIXTURES / "code" / "preprocessing.py"),
                      inputs=[ProcessingInput(source=dataset, destination="/opt/ml/processing/input")],
                      outputs=[ProcessingOutput(output_name=n, source=f"/opt/ml/processing/{n}")
                               for n in ("train", "validation", "test")],
                      wait=True, logs=True)
    elapsed = time.monotonic() - started
    print(f"SKLearnProcessor.run(wait=True, logs=True) took {elapsed:.1f}s")
    outputs = {o.output_name: o.destination for o in processor.latest_job.outputs}
    return {"processor": processor, "outputs": outputs, "printed": printed.getvalue(), "bucket": bucket}


def test_sklearn_processor_preprocesses_abalone(abalone_split, s3):
    job = abalone_split["processor"].latest_job.describe()
    assert job["ProcessingJobStatus"] == "Completed"
    assert job["AppSpecification"]["ImageUri"] == SKLEARN_023_IMAGE
    assert "Wrote 2923 rows to /opt/ml/processing/train/train.csv" in abalone_split["printed"]
    counts = {}
    for name, prefix in abalone_split["outputs"].items():
        rows = _csv_rows(read_s3(s3, f"{prefix}/{name}.csv"))
        counts[name] = len(rows)
        assert all(len(row) == 11 for row in rows)
        assert all(1 <= row[0] <= 29 and row[0] == int(row[0]) for row in rows)  # rings first
        assert all(sum(row[8:]) == 1.0 for row in rows)  # one-hot sex last
    assert counts == {"train": 2923, "validation": 627, "test": 627}


def test_evaluation_script_scores_a_builtin_xgboost_model(abalone_split, s3):
    from sagemaker import image_uris
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.processing import ProcessingInput, ProcessingOutput, ScriptProcessor

    session, role = _sdk()
    image = image_uris.retrieve("xgboost", session.boto_region_name, "1.0-1")
    estimator = Estimator(image_uri=image, instance_type="ml.m5.xlarge", instance_count=1, role=role,
                          sagemaker_session=session,
                          output_path=f"s3://{abalone_split['bucket']}/{unique('abalone-model')}")
    estimator.set_hyperparameters(objective="reg:linear", num_round=50, max_depth=5, eta=0.2, gamma=4,
                                  min_child_weight=6, subsample=0.7)
    outputs = abalone_split["outputs"]
    estimator.fit({"train": TrainingInput(outputs["train"], content_type="text/csv"),
                   "validation": TrainingInput(outputs["validation"], content_type="text/csv")}, logs=False)
    evaluator = ScriptProcessor(command=["python3"], image_uri=image, instance_type="ml.m5.xlarge",
                                instance_count=1, role=role, sagemaker_session=session)
    evaluator.run(code=str(FIXTURES / "code" / "evaluation.py"),
                  inputs=[ProcessingInput(source=estimator.model_data, destination="/opt/ml/processing/model"),
                          ProcessingInput(source=outputs["test"], destination="/opt/ml/processing/test")],
                  outputs=[ProcessingOutput(output_name="evaluation", source="/opt/ml/processing/evaluation")],
                  wait=True, logs=False)
    report = json.loads(read_s3(s3, evaluator.latest_job.outputs[0].destination + "/evaluation.json"))
    mse = report["regression_metrics"]["mse"]
    assert set(mse) == {"value", "standard_deviation"}
    assert 0 < mse["value"] < 10  # predicting the mean alone scores about 10.4 on abalone
    assert mse["standard_deviation"] > 0


def test_script_processor_runs_code_with_arguments(client_env, s3, tmp_path):
    from sagemaker.processing import ProcessingOutput, ScriptProcessor

    session, role = _sdk()
    script = tmp_path / "double.py"
    script.write_text("import sys\nopen('/opt/ml/processing/out/r.txt', 'w').write(str(2 * int(sys.argv[2])))\n")
    processor = ScriptProcessor(command=["python3"], image_uri=SKLEARN_IMAGE, instance_type="ml.m5.large",
                                instance_count=1, role=role, sagemaker_session=session)
    processor.run(code=str(script), arguments=["--n", "21"],
                  outputs=[ProcessingOutput(output_name="out", source="/opt/ml/processing/out")],
                  wait=True, logs=False)
    assert read_s3(s3, processor.latest_job.outputs[0].destination + "/r.txt") == b"42"


def test_framework_processor_runs_a_source_dir_with_requirements(client_env, s3, tmp_path):
    from sagemaker.processing import FrameworkProcessor, ProcessingOutput
    from sagemaker.sklearn import SKLearn

    session, role = _sdk()
    source = tmp_path / "src"
    files = {
        "process.py": "import sys, helper, smlocal_procdep\n"
                      "text = helper.greet(sys.argv[1]) + smlocal_procdep.MAGIC\n"
                      "open('/opt/ml/processing/out/r.txt', 'w').write(text)\n",
        "helper.py": "def greet(who):\n    return f'hello {who} '\n",
        "requirements.txt": "./procdep\n",
        "procdep/pyproject.toml": textwrap.dedent("""
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "smlocal-procdep"
            version = "1.0"
            """),
        "procdep/smlocal_procdep/__init__.py": "MAGIC = 'from requirements.txt'\n",
    }
    for name, text in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text)
    processor = FrameworkProcessor(estimator_cls=SKLearn, framework_version="1.2-1", instance_type="ml.m5.large",
                                   instance_count=1, role=role, sagemaker_session=session)
    processor.run(code="process.py", source_dir=str(source), arguments=["world"],
                  outputs=[ProcessingOutput(output_name="out", source="/opt/ml/processing/out")],
                  wait=True, logs=False)
    job = processor.latest_job.describe()
    assert job["AppSpecification"]["ContainerEntrypoint"][0] == "/bin/bash"
    result = read_s3(s3, processor.latest_job.outputs[0].destination + "/r.txt")
    assert result == b"hello world from requirements.txt"


def test_sdk_sees_a_failed_processing_job(client_env, tmp_path):
    from sagemaker.exceptions import UnexpectedStatusException
    from sagemaker.processing import ScriptProcessor

    session, role = _sdk()
    script = tmp_path / "fail.py"
    script.write_text("raise RuntimeError('the data is wrong')\n")
    processor = ScriptProcessor(command=["python3"], image_uri=SKLEARN_IMAGE, instance_type="ml.m5.large",
                                instance_count=1, role=role, sagemaker_session=session)
    with pytest.raises(UnexpectedStatusException) as exc:
        processor.run(code=str(script), wait=True, logs=False)
    assert ALGORITHM_ERROR in str(exc.value)
    assert processor.latest_job.describe()["FailureReason"] == ALGORITHM_ERROR
