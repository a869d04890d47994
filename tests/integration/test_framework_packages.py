"""What the framework images ship, seen by script-mode code: the XGBoost image's
``sagemaker_xgboost_container`` and the legacy ``sagemaker_containers`` toolkit, and each image's
entry-point rules. Real SDK v2 / boto3 against the running emulator, real job processes."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import read_s3, script_job, unique, upload_sourcedir, wait_for

pytestmark = pytest.mark.slow

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
ABALONE_LIBSVM = Path("/work/shared/data/abalone/abalone-batch.csv")
if not ABALONE_LIBSVM.is_file():  # the fixture copy of the same data
    ABALONE_LIBSVM = Path(__file__).resolve().parents[2] / "fixtures" / "abalone" / "data" / "abalone-batch.csv"

# The pattern of AWS's XGBoost script-mode sample (xgboost_abalone/abalone.py), in our own words:
# data through data_utils.get_dmatrix, rabit_run for several hosts, a pickled booster.
TRAIN = textwrap.dedent(
    """
    import argparse, json, os, pickle, sys

    import xgboost as xgb
    from sagemaker_containers import entry_point
    from sagemaker_xgboost_container import distributed
    from sagemaker_xgboost_container.data_utils import get_dmatrix


    def fit(params, dtrain, evals, num_boost_round, model_dir, is_master):
        booster = xgb.train(params=params, dtrain=dtrain, evals=evals, num_boost_round=num_boost_round)
        if is_master:
            with open(os.path.join(model_dir, "xgboost-model"), "wb") as handle:
                pickle.dump(booster, handle)


    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        for name in ("max_depth", "num_round"):
            parser.add_argument(f"--{name}", type=int)
        parser.add_argument("--eta", type=float)
        parser.add_argument("--objective", type=str)
        parser.add_argument("--model_dir", default=os.environ.get("SM_MODEL_DIR"))
        parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
        parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION"))
        args, _ = parser.parse_known_args()
        hosts = json.loads(os.environ["SM_HOSTS"])
        dtrain = get_dmatrix(args.train, "libsvm")
        dval = get_dmatrix(args.validation, "libsvm")
        print(f"rows train={dtrain.num_row()} validation={dval.num_row()} run_as={__spec__.name}")
        train_args = dict(params={"max_depth": args.max_depth, "eta": args.eta, "objective": args.objective},
                          dtrain=dtrain, evals=[(dtrain, "train"), (dval, "validation")],
                          num_boost_round=args.num_round, model_dir=args.model_dir)
        if len(hosts) > 1:
            entry_point._wait_hostname_resolution()
            distributed.rabit_run(exec_fun=fit, args=train_args, include_in_training=True, hosts=hosts,
                                  current_host=os.environ["SM_CURRENT_HOST"], update_rabit_args=True)
        else:
            fit(**train_args, is_master=True)
    """
)
INFERENCE = textwrap.dedent(
    """
    import json, os, pickle

    import numpy as np
    import xgboost as xgb
    import sagemaker_xgboost_container.encoder as xgb_encoders
    from sagemaker_containers.beta.framework import encoders
    from sagemaker_inference import content_types


    def model_fn(model_dir):
        with open(os.path.join(model_dir, "xgboost-model"), "rb") as handle:
            return pickle.load(handle)


    def input_fn(request_body, request_content_type):
        if request_content_type == content_types.JSON:
            return xgb.DMatrix(np.array(json.loads(request_body), dtype=float))
        return xgb_encoders.decode(request_body, request_content_type)


    def predict_fn(input_data, model):
        return model.predict(input_data)


    def output_fn(prediction, accept):
        return encoders.encode(prediction, accept), accept
    """
)


def _abalone_channels(session, tmp_path) -> dict[str, str]:
    lines = ABALONE_LIBSVM.read_text().splitlines()
    uris = {}
    for channel, part in (("train", lines[:3000]), ("validation", lines[3000:3600])):
        folder = tmp_path / channel
        folder.mkdir()
        (folder / f"abalone.{channel}").write_text("\n".join(part) + "\n")
        uris[channel] = session.upload_data(str(folder), bucket=session.default_bucket(),
                                            key_prefix=f"tests/{unique('abalone')}/{channel}")
    return uris


def _booster(session, model_uri: str):
    bucket, key = model_uri[5:].split("/", 1)
    body = session.boto_session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        return pickle.loads(archive.extractfile("xgboost-model").read())


def test_xgboost_script_mode_sample_trains_with_data_utils_and_serves_with_its_encoder(client_env, tmp_path):
    import sagemaker
    import xgboost as xgb
    from sagemaker.deserializers import CSVDeserializer, JSONDeserializer
    from sagemaker.inputs import TrainingInput
    from sagemaker.serializers import CSVSerializer, JSONSerializer
    from sagemaker.xgboost import XGBoost

    session = sagemaker.Session()
    channels = _abalone_channels(session, tmp_path)
    source = tmp_path / "src"
    source.mkdir()
    (source / "abalone.py").write_text(TRAIN)
    (source / "inference.py").write_text(INFERENCE)
    estimator = XGBoost(entry_point="abalone.py", source_dir=str(source), framework_version="1.7-1",
                        hyperparameters={"max_depth": 5, "eta": 0.2, "objective": "reg:squarederror", "num_round": 20},
                        role=sagemaker.get_execution_role(), instance_count=1, instance_type="ml.m5.2xlarge",
                        sagemaker_session=session)
    estimator.fit({name: TrainingInput(uri, content_type="libsvm") for name, uri in channels.items()}, logs=False)
    job = session.sagemaker_client.describe_training_job(TrainingJobName=estimator.latest_training_job.name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    booster = _booster(session, job["ModelArtifacts"]["S3ModelArtifacts"])
    assert booster.num_features() == 11  # LIBSVM indices 1..10 read by data_utils

    name = unique("xgb-script-ep")
    predictor = estimator.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name,
                                 entry_point="inference.py", source_dir=str(source))
    try:
        rows = np.array([[0.0, -0.57, -0.43, -1.06, -0.64, -0.61, -0.73, -0.64, 0.0, 0.0, 1.0],
                         [0.0, 0.05, 0.12, -0.11, -0.31, -0.46, -0.02, 0.01, 1.0, 0.0, 0.0]])
        expected = booster.predict(xgb.DMatrix(rows))

        predictor.serializer, predictor.deserializer = CSVSerializer(), CSVDeserializer()
        by_csv = predictor.predict(rows)  # text/csv: the image's encoder.decode -> DMatrix
        assert np.allclose([float(r[0]) for r in by_csv], expected, atol=1e-5)

        predictor.serializer, predictor.deserializer = JSONSerializer(), JSONDeserializer()
        by_json = predictor.predict(rows.tolist())  # application/json: the script's own branch
        assert np.allclose(by_json, expected, atol=1e-5)

        runtime = session.sagemaker_runtime_client
        libsvm = ABALONE_LIBSVM.read_text().splitlines()[:2]
        answer = runtime.invoke_endpoint(EndpointName=name, ContentType="text/libsvm", Accept="text/csv",
                                         Body="\n".join(libsvm).encode())
        got = [float(v) for v in answer["Body"].read().decode().split()]
        local = Path(tmp_path / "two.libsvm")
        local.write_text("\n".join(libsvm) + "\n")
        assert np.allclose(got, booster.predict(xgb.DMatrix(f"{local}?format=libsvm")), atol=1e-5)
    finally:
        predictor.delete_endpoint()


LEGACY = textwrap.dedent(
    """
    import importlib.util, json, os, sys

    import sagemaker_containers
    from sagemaker_containers.beta.framework import encoders, env as env_module

    env = sagemaker_containers.training_env()
    seen = {
        "hyperparameters": env.hyperparameters,
        "framework_params": env.additional_framework_parameters,
        "channels": env.channel_input_dirs,
        "hosts": env.hosts, "current_host": env.current_host, "is_master": env.is_master,
        "model_dir": env.model_dir, "module_name": env.module_name, "job_name": env.job_name,
        "cmd_args": env.to_cmd_args(), "sm_channels": env.to_env_vars()["SM_CHANNELS"],
        "argv": sys.argv[1:], "csv": encoders.encode([1, 2], "text/csv"),
        "xgboost_package_visible": importlib.util.find_spec("sagemaker_xgboost_container") is not None,
        "train_files": sorted(os.listdir(env.channel_input_dirs["train"])),
    }
    with open(os.path.join(env.model_dir, "seen.json"), "w") as handle:
        json.dump(seen, handle)
    """
)


def _model_json(s3, job: dict, member: str) -> dict:
    archive = read_s3(s3, job["ModelArtifacts"]["S3ModelArtifacts"])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return json.loads(tar.extractfile(member).read())


def test_legacy_sagemaker_containers_training_env_in_a_script(sm, s3, bucket):
    name = unique("legacy-env")
    code = upload_sourcedir(s3, bucket, {"train.py": LEGACY})
    s3.put_object(Bucket=bucket, Key="legacy/train/data.csv", Body=b"1,2\n")
    sm.create_training_job(**script_job(
        name, bucket, code, hyperparameters={"epochs": "3", "optimizer": '"adam"', "layers": "[64, 32]"},
        channels={"train": f"s3://{bucket}/legacy/train/"}))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    seen = _model_json(s3, job, "seen.json")
    assert seen["hyperparameters"] == {"epochs": 3, "optimizer": "adam", "layers": [64, 32]}
    assert "sagemaker_program" not in seen["framework_params"]
    assert seen["channels"] == {"train": "/opt/ml/input/data/train"}
    assert seen["train_files"] == ["data.csv"]
    assert (seen["hosts"], seen["current_host"], seen["is_master"]) == (["algo-1"], "algo-1", True)
    assert (seen["model_dir"], seen["module_name"], seen["job_name"]) == ("/opt/ml/model", "train", name)
    assert seen["cmd_args"] == ["--epochs", "3", "--layers", "[64, 32]", "--optimizer", "adam"]
    assert seen["sm_channels"] == '["train"]'
    assert seen["csv"] == "1\n2\n"
    assert seen["xgboost_package_visible"] is False  # the scikit-learn image does not ship it


PACKAGE_MAIN = textwrap.dedent(
    """
    import json, os, sys

    with open(os.path.join(os.environ["SM_MODEL_DIR"], "run.json"), "w") as handle:
        json.dump({"spec": __spec__.name, "argv": sys.argv[1:]}, handle)
    """
)


def test_xgboost_entry_point_without_py_runs_as_a_module(sm, s3, bucket):
    name = unique("xgb-module")
    code = upload_sourcedir(s3, bucket, {"dummy1/__init__.py": "", "dummy1/__main__.py": PACKAGE_MAIN})
    request = script_job(name, bucket, code, program="dummy1", hyperparameters={"epochs": "3"})
    request["AlgorithmSpecification"]["TrainingImage"] = XGBOOST_IMAGE
    sm.create_training_job(**request)
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _model_json(s3, job, "run.json") == {"spec": "dummy1.__main__", "argv": ["--epochs", "3"]}


def test_xgboost_entry_point_with_py_also_runs_as_a_module(sm, s3, bucket):
    name = unique("xgb-module-py")
    code = upload_sourcedir(s3, bucket, {"train.py": PACKAGE_MAIN})
    request = script_job(name, bucket, code, program="train.py")
    request["AlgorithmSpecification"]["TrainingImage"] = XGBOOST_IMAGE
    sm.create_training_job(**request)
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _model_json(s3, job, "run.json") == {"spec": "train", "argv": []}


def test_scikit_learn_entry_point_in_a_package_with_setup_py_runs_as_a_module(sm, s3, bucket):
    name = unique("sk-package")
    setup = "from setuptools import setup\nsetup(name='trainer', py_modules=['train'])\n"
    code = upload_sourcedir(s3, bucket, {"train.py": PACKAGE_MAIN, "setup.py": setup})
    sm.create_training_job(**script_job(name, bucket, code, program="train.py"))
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert _model_json(s3, job, "run.json")["spec"] == "train"  # python -m train, not python train.py
