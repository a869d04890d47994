"""The built-in XGBoost emulation, with the real xgboost (no mocks)."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost

from smlocal.runtime.algorithms import common, metrics
from smlocal.runtime.algorithms import xgboost_algo as xa

ABALONE = Path("/work/shared/data/abalone/abalone.csv")
ABALONE_LIBSVM = Path("/work/shared/data/abalone/abalone-batch.csv")
# The container's own definition of validation:rmse (sagemaker-xgboost-container algorithm_mode/metrics.py).
VALIDATION_RMSE = re.compile(r".*\[[0-9]+\].*#011validation-rmse:(\S+)")
CSV = {"ContentType": "text/csv", "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}


def abalone() -> tuple[np.ndarray, np.ndarray]:
    """(X, y): numeric features (sex one-hot + 7 measurements) and rings."""
    if ABALONE.exists():
        rows = [line.strip().split(",") for line in ABALONE.read_text().splitlines() if line.strip()]
        sex = np.array([[r[0] == s for s in "MFI"] for r in rows], dtype=float)
        meas = np.array([[float(v) for v in r[1:8]] for r in rows])
        return np.hstack([sex, meas]), np.array([float(r[8]) for r in rows])
    rng = np.random.default_rng(0)  # an abalone-like synthetic stand-in
    meas = rng.uniform(0.05, 0.8, size=(1500, 7))
    sex = np.eye(3)[rng.integers(0, 3, 1500)]
    return np.hstack([sex, meas]), np.round(3 + 20 * meas[:, 0] + rng.normal(0, 1, 1500))


def csv_text(y: np.ndarray | None, X: np.ndarray) -> str:
    data = X if y is None else np.column_stack([y, X])
    return "\n".join(",".join(f"{v:.6g}" for v in row) for row in data) + "\n"


def make_opt_ml(root: Path, hps: dict, channels: dict[str, tuple[dict, dict[str, str]]]) -> Path:
    cfg = root / "input" / "config"
    cfg.mkdir(parents=True)
    (cfg / "hyperparameters.json").write_text(json.dumps(hps))
    (cfg / "inputdataconfig.json").write_text(json.dumps({name: c for name, (c, _) in channels.items()}))
    for name, (_, files) in channels.items():
        d = root / "input" / "data" / name
        d.mkdir(parents=True)
        for fname, text in files.items():
            (d / fname).parent.mkdir(parents=True, exist_ok=True)
            (d / fname).write_text(text)
    return root


@pytest.fixture(scope="module")
def data():
    X, y = abalone()
    split = int(len(y) * 0.75)
    return X[:split], y[:split], X[split:], y[split:]


@pytest.fixture(scope="module")
def trained_1_0(tmp_path_factory, data):
    Xt, yt, Xv, yv = data
    root = make_opt_ml(tmp_path_factory.mktemp("xgb10"),
                       {"objective": "reg:linear", "num_round": "50", "max_depth": "5", "eta": "0.2"},
                       {"train": (CSV, {"train.csv": csv_text(yt, Xt)}),
                        "validation": (CSV, {"validation.csv": csv_text(yv, Xv)})})
    xa.train(root, "1.0-1")
    return root


def test_reg_linear_50_rounds_prints_metrics_the_metric_definition_matches(tmp_path, data, capsys):
    Xt, yt, Xv, yv = data
    root = make_opt_ml(tmp_path, {"objective": "reg:linear", "num_round": "50"},
                       {"train": (CSV, {"train.csv": csv_text(yt, Xt)}),
                        "validation": (CSV, {"part/validation.csv": csv_text(yv, Xv)})})
    xa.train(root, "1.0-1")
    lines = capsys.readouterr().out.splitlines()
    values = [float(m.group(1)) for m in map(VALIDATION_RMSE.match, lines) if m]
    assert len(values) == 50
    assert values[-1] < values[0] and values[-1] < 3.5
    assert any(line.startswith("[0]#011train-rmse:") for line in lines)
    # the MetricDefinition the service applies to a built-in XGBoost job finds the same values
    definition = next(d for d in metrics.definitions("xgboost") if d["Name"] == "validation:rmse")
    assert [float(m.group(1)) for m in map(re.compile(definition["Regex"]).search, lines) if m] == values
    assert "reg:linear is now deprecated in favor of reg:squarederror" in "\n".join(lines)


def test_1_0_1_artefact_is_a_pickled_booster(trained_1_0, data):
    Xt, yt, Xv, yv = data
    with open(trained_1_0 / "model" / "xgboost-model", "rb") as f:
        booster = pickle.load(f)
    assert isinstance(booster, xgboost.Booster)
    preds = booster.predict(xgboost.DMatrix(Xv))
    assert preds.shape == (len(yv),)
    assert np.sqrt(np.mean((preds - yv) ** 2)) < 3.5
    assert json.loads(booster.save_config())["learner"]["objective"]["name"] == "reg:squarederror"


@pytest.mark.filterwarnings("ignore::UserWarning")  # xgboost: "Unknown file format ``. Using UBJSON"
def test_1_5_1_artefact_loads_with_booster_load_model(tmp_path, data):
    Xt, yt, Xv, yv = data
    root = make_opt_ml(tmp_path, {"objective": "reg:squarederror", "num_round": "20"},
                       {"train": (CSV, {"train.csv": csv_text(yt, Xt)})})
    xa.train(root, "1.5-1")
    path = root / "model" / "xgboost-model"
    booster = xgboost.Booster()
    booster.load_model(str(path))
    assert booster.num_boosted_rounds() == 20
    assert booster.predict(xgboost.DMatrix(Xv[:10])).shape == (10,)
    with pytest.raises(Exception):
        with open(path, "rb") as f:
            pickle.load(f)


def test_missing_num_round_is_a_client_error_with_the_container_wording(tmp_path, data):
    Xt, yt, _, _ = data
    root = make_opt_ml(tmp_path, {"objective": "reg:squarederror"}, {"train": (CSV, {"t.csv": csv_text(yt, Xt)})})
    with pytest.raises(common.ClientError) as err:
        xa.train(root, "1.7-1")
    assert err.value.message == "Missing required hyperparameter: num_round"


@pytest.mark.parametrize("hps, message", [
    ({"num_round": "5", "silent": "0"}, "Extraneous hyperparameter found: silent"),
    ({"num_round": "ten"}, "Hyperparameter num_round: could not parse value (caused by ValueError)"),
    ({"num_round": "0"}, "Hyperparameter num_round: 0 is not in [1, +inf)"),
    ({"num_round": "5", "eta": "1.5"}, "Hyperparameter eta: 1.5 is not in [0, 1]"),
    ({"num_round": "5", "booster": "tree"}, "Hyperparameter booster: tree is not in ['gbtree', 'gblinear', 'dart']"),
    ({"num_round": "5", "objective": "multi:softmax"},
     "Require input for parameter 'num_class' for multi-classification"),
    ({"num_round": "5", "eval_metric": "auc"},
     "Metric 'auc' can only be applied for classification and ranking problems."),
    ({"num_round": "5", "objective": "reg:absoluteerror"}, "Hyperparameter objective: reg:absoluteerror is not in"),
])
def test_hyperparameter_validation_messages(hps, message):
    with pytest.raises(common.ClientError) as err:
        xa.validate_hyperparameters(hps, "1.5-1")
    assert err.value.message.startswith(message)


def test_hyperparameters_convert_and_alias():
    hps = xa.validate_hyperparameters({"num_round": "10", "learning_rate": "0.1", "eval_metric": "rmse,mae"}, "3.0-5")
    assert hps == {"num_round": 10, "eta": 0.1, "eval_metric": ["rmse", "mae"]}
    assert xa.validate_hyperparameters({"num_round": "1", "silent": "1"}, "1.0-1") == {"num_round": 1, "silent": 1}
    assert xa.validate_hyperparameters({"num_round": "1", "objective": "reg:absoluteerror"}, "1.7-1")


def test_main_writes_the_failure_file_and_exits_non_zero(tmp_path, data, monkeypatch):
    Xt, yt, _, _ = data
    root = make_opt_ml(tmp_path, {"eta": "0.1"}, {"train": (CSV, {"t.csv": csv_text(yt, Xt)})})
    monkeypatch.setenv("SMLOCAL_OPT_ML", str(root))
    monkeypatch.setenv("SMLOCAL_ALGO_VERSION", "1.7-1")
    assert xa.main(["train"]) == 1
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("AlgorithmError: framework error: \nTraceback")
    assert failure.rstrip().endswith("Missing required hyperparameter: num_round")
    assert len(failure) <= 1024  # FailureReason's limit: the message must survive the clip


def test_python_m_train_runs_in_a_subprocess(tmp_path, data):
    Xt, yt, _, _ = data
    root = make_opt_ml(tmp_path, {"num_round": "3"}, {"train": (CSV, {"t.csv": csv_text(yt[:200], Xt[:200])})})
    env = {**os.environ, "SMLOCAL_OPT_ML": str(root), "SMLOCAL_ALGO_VERSION": ""}
    proc = subprocess.run([sys.executable, "-m", "smlocal.runtime.algorithms.xgboost_algo", "train"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "[2]#011train-rmse:" in proc.stdout
    assert (root / "model" / "xgboost-model").is_file()


def test_libsvm_training_default_content_type_and_libsvm_predict(tmp_path):
    if ABALONE_LIBSVM.exists():
        text = ABALONE_LIBSVM.read_text()
    else:
        X, y = abalone()
        text = "\n".join(f"{lab:g} " + " ".join(f"{i + 1}:{v:g}" for i, v in enumerate(row))
                         for lab, row in zip(y, X)) + "\n"
    lines = text.splitlines()
    root = make_opt_ml(tmp_path, {"objective": "reg:squarederror", "num_round": "30"},
                       {"train": ({}, {"train.libsvm": "\n".join(lines[:3000]) + "\n"}),
                        "validation": ({"ContentType": "text/libsvm"}, {"v.libsvm": "\n".join(lines[3000:]) + "\n"})})
    xa.train(root, "1.7-1")
    model = xa.load_model(root / "model")
    assert model.model_format == "xgb_format"
    body = "\n".join(lines[3000:3010]).encode()  # labels present: ignored, as by the container
    out, ctype = xa.predict(model, body, "text/libsvm", None, batch=True)
    preds = [float(v) for v in out.decode().splitlines()]
    labels = [float(line.split()[0]) for line in lines[3000:3010]]
    assert ctype == "text/csv" and len(preds) == 10
    assert np.sqrt(np.mean((np.array(preds) - labels) ** 2)) < 4


def test_csv_data_under_the_default_libsvm_content_type_fails_like_the_container(tmp_path, data):
    Xt, yt, _, _ = data
    root = make_opt_ml(tmp_path, {"num_round": "3"}, {"train": ({}, {"abalone.csv": csv_text(yt, Xt)})})
    with pytest.raises(common.ClientError, match=r"of file 'abalone.csv' is not 'LIBSVM' format"):
        xa.train(root, "1.7-1")


def test_csv_weights_and_custom_metric_with_early_stopping(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 4))
    y = (X[:, 0] + 0.3 * rng.normal(size=600) > 0).astype(float)
    w = np.ones(600)
    train = "\n".join(",".join(f"{v:.5g}" for v in row) for row in np.column_stack([y, w, X])[:400])
    val = "\n".join(",".join(f"{v:.5g}" for v in row) for row in np.column_stack([y, w, X])[400:])
    root = make_opt_ml(tmp_path, {"objective": "binary:logistic", "num_round": "200", "csv_weights": "1",
                                  "eval_metric": "logloss,accuracy", "early_stopping_rounds": "5"},
                       {"train": (CSV, {"t.csv": train}), "validation": (CSV, {"v.csv": val})})
    xa.train(root, "3.0-5")
    out = capsys.readouterr().out
    assert "#011validation-accuracy:" in out and "#011validation-logloss:" in out
    booster = xa.load_model(root / "model").boosters[0]
    assert booster.num_features() == 4  # the weight column is not a feature
    assert booster.num_boosted_rounds() < 200  # early stopping kept the best iteration


def test_hidden_file_and_empty_validation_fail_with_container_messages(tmp_path, data):
    Xt, yt, _, _ = data
    root = make_opt_ml(tmp_path / "a", {"num_round": "3"},
                       {"train": (CSV, {"t.csv": csv_text(yt, Xt), ".DS_Store": "x"})})
    with pytest.raises(common.ClientError, match="Hidden file found in the data path! Remove that before training."):
        xa.train(root, "1.7-1")
    root = make_opt_ml(tmp_path / "b", {"num_round": "3"},
                       {"train": (CSV, {"t.csv": csv_text(yt, Xt)}), "validation": (CSV, {})})
    with pytest.raises(common.ClientError, match="No data in validation channel path .*validation"):
        xa.train(root, "1.7-1")


def test_predict_csv_batch_one_per_line_realtime_comma_separated(trained_1_0, data):
    _, _, Xv, _ = data
    model = xa.load_model(trained_1_0 / "model")
    body = csv_text(None, Xv[:7]).encode()
    out, ctype = xa.predict(model, body, "text/csv", "text/csv", batch=True)
    assert ctype == "text/csv"
    assert out.endswith(b"\n") and len(out.decode().splitlines()) == 7
    out_rt, _ = xa.predict(model, body, "text/csv; charset=utf-8", "application/json", batch=False)
    assert out_rt.decode().split(",") == out.decode().splitlines()
    expected = model.boosters[0].predict(xgboost.DMatrix(Xv[:7].astype(np.float32)))
    np.testing.assert_allclose([float(v) for v in out.decode().splitlines()], expected, rtol=1e-6)


def test_predict_reads_sagemaker_batch_from_the_environment(trained_1_0, data, monkeypatch):
    _, _, Xv, _ = data
    model = xa.load_model(trained_1_0 / "model")
    monkeypatch.setenv("SAGEMAKER_BATCH", "true")
    out, _ = xa.predict(model, csv_text(None, Xv[:3]).encode(), "text/csv", None)
    assert len(out.decode().splitlines()) == 3


@pytest.mark.parametrize("ctype", ["application/json", "application/x-recordio-protobuf", "image/png"])
def test_unsupported_content_type_is_415(trained_1_0, ctype):
    model = xa.load_model(trained_1_0 / "model")
    with pytest.raises(common.UnsupportedMediaType) as err:
        xa.predict(model, b'{"instances": [1, 2]}', ctype, None)
    assert err.value.status_code == 415


def test_bad_payloads(trained_1_0):
    model = xa.load_model(trained_1_0 / "model")
    with pytest.raises(common.UnsupportedMediaType, match="Loading csv data failed with Exception"):
        xa.predict(model, b"1,2,abc\n3,4", "text/csv", None)
    with pytest.raises(common.ClientError, match="Unable to evaluate payload provided: Feature size of csv "
                                                 "inference data 3 is not consistent"):
        xa.predict(model, b"1,2,3\n4,5,6", "text/csv", None)
    with pytest.raises(common.NoContent) as err:
        xa.predict(model, b"", "text/csv", None)
    assert err.value.status_code == 204
