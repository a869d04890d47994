"""The built-in k-NN emulation on scikit-learn's iris (real numpy search, no mocks)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from smlocal.runtime.algorithms import common
from smlocal.runtime.algorithms import knn_algo as knn
from smlocal.runtime.algorithms import metrics

CSV = {"ContentType": "text/csv", "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}


def rows(y, X) -> str:
    data = X if y is None else np.column_stack([y, X])
    return "\n".join(",".join(f"{v:g}" for v in r) for r in data) + "\n"


def make_opt_ml(root: Path, hps: dict, channels: dict[str, tuple[dict, str]]) -> Path:
    cfg = root / "input" / "config"
    cfg.mkdir(parents=True)
    (cfg / "hyperparameters.json").write_text(json.dumps(hps))
    (cfg / "inputdataconfig.json").write_text(json.dumps({n: c for n, (c, _) in channels.items()}))
    for name, (_, text) in channels.items():
        d = root / "input" / "data" / name
        d.mkdir(parents=True)
        (d / f"{name}.csv").write_text(text)
    return root


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order].astype(float)
    return X[:120], y[:120], X[120:], y[120:]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, iris):
    Xt, yt, Xs, ys = iris
    root = make_opt_ml(tmp_path_factory.mktemp("knn"),
                       {"feature_dim": "4", "k": "5", "predictor_type": "classifier", "sample_size": "120"},
                       {"train": ({"ContentType": "text/csv; label_size=1"}, rows(yt, Xt)),
                        "test": (CSV, rows(ys, Xs))})
    knn.train(root, "1")
    return root


def test_classifier_accuracy_and_test_metric_lines(tmp_path, iris, capsys):
    Xt, yt, Xs, ys = iris
    root = make_opt_ml(tmp_path, {"feature_dim": "4", "k": "5", "predictor_type": "classifier", "sample_size": "500",
                                  "mini_batch_size": "100", "_tuning_objective_metric": "test:accuracy"},
                       {"train": (CSV, rows(yt, Xt)), "test": (CSV, rows(ys, Xs))})
    knn.train(root, "1")
    out = capsys.readouterr().out
    assert re.search(r"#test_score \(algo-1\) : \('accuracy', 0\.9\d*", out) or "('accuracy', 1.0)" in out
    regex = next(d["Regex"] for d in metrics.definitions("knn") if d["Name"] == "test:accuracy")
    score = float(re.search(regex, out).group(1))
    assert score >= 0.9
    model = knn.load_model(root / "model")
    body, ctype = knn.predict(model, rows(None, Xs).encode(), "text/csv", "application/json")
    preds = [p["predicted_label"] for p in json.loads(body)["predictions"]]
    assert ctype == "application/json" and np.mean(np.array(preds) == ys) == score


def test_regressor_predicts_petal_width(tmp_path, iris, capsys):
    Xt, _, Xs, _ = iris
    root = make_opt_ml(tmp_path, {"feature_dim": "3", "k": "7", "predictor_type": "regressor", "sample_size": "100"},
                       {"train": (CSV, rows(Xt[:, 3], Xt[:, :3])), "test": (CSV, rows(Xs[:, 3], Xs[:, :3]))})
    knn.train(root, "1")
    mse = float(re.search(r"#quality_metric: host=algo-1, test mse <loss>=(\S+)", capsys.readouterr().out).group(1))
    assert mse < 0.1
    model = knn.load_model(root / "model")
    assert len(model.labels) == 100  # sample_size rows were kept
    body, _ = knn.predict(model, rows(None, Xs[:3, :3]).encode(), "text/csv", None)
    preds = [p["predicted_label"] for p in json.loads(body)["predictions"]]
    assert np.allclose(preds, Xs[:3, 3], atol=0.5)


@pytest.mark.parametrize("missing", ["feature_dim", "k", "predictor_type", "sample_size"])
def test_missing_required_hyperparameter_is_a_client_error(tmp_path, iris, missing):
    Xt, yt, _, _ = iris
    hps = {"feature_dim": "4", "k": "5", "predictor_type": "classifier", "sample_size": "100"}
    del hps[missing]
    root = make_opt_ml(tmp_path, hps, {"train": (CSV, rows(yt, Xt))})
    with pytest.raises(common.ClientError) as err:
        knn.train(root, "1")
    assert err.value.message == (f"No value(s) were specified for '{missing}' which are required "
                                 "hyperparameter(s) (caused by ValidationError)")


@pytest.mark.parametrize("extra, fragment", [
    ({"predictor_type": "classify"}, "'classify' is not one of ['classifier', 'regressor']"),
    ({"k": "0"}, "0 is less than the minimum of 1"),
    ({"index_metric": "L1"}, "'L1' is not one of"),
    ({"dimension_reduction_type": "sign"}, "'dimension_reduction_target' is a required property"),
    ({"dimension_reduction_type": "fjlt", "dimension_reduction_target": "4"}, "must be less than feature_dim"),
    ({"index_type": "faiss.IVFPQ", "index_metric": "COSINE"}, "not supported with index_type faiss.IVFPQ"),
    ({"faiss_index_pq_m": "5"}, "5 is not one of [1, 2, 3, 4, 8"),
    ({"epochs": "3"}, "Additional properties are not allowed ('epochs' was unexpected)"),
])
def test_invalid_hyperparameters(extra, fragment):
    hps = {"feature_dim": "4", "k": "5", "predictor_type": "classifier", "sample_size": "100", **extra}
    with pytest.raises(common.ClientError) as err:
        knn.validate_hyperparameters(hps)
    assert fragment in err.value.message
    assert err.value.message.startswith("Unable to initialize the algorithm. Failed to validate input hyperparameters.")


def test_json_and_jsonlines_outputs_have_the_documented_shapes(classifier, iris):
    _, _, Xs, _ = iris
    model = knn.load_model(classifier / "model")
    body = json.dumps({"instances": [{"features": Xs[0].tolist()},
                                     {"data": {"features": {"values": Xs[1].tolist()}}}]}).encode()
    out, ctype = knn.predict(model, body, "application/json", "application/json")
    doc = json.loads(out)
    assert ctype == "application/json" and list(doc) == ["predictions"] and len(doc["predictions"]) == 2
    assert all(list(p) == ["predicted_label"] and isinstance(p["predicted_label"], float) for p in doc["predictions"])

    out, ctype = knn.predict(model, body, "application/json", "application/jsonlines")
    lines = out.decode().splitlines()
    assert ctype == "application/jsonlines" and out.endswith(b"\n") and len(lines) == 2
    assert [json.loads(line) for line in lines] == doc["predictions"]

    jsonl = b"\n".join(json.dumps({"features": x.tolist()}).encode() for x in Xs[:4])
    out, _ = knn.predict(model, jsonl, "application/jsonlines", "application/jsonlines")
    assert len(out.decode().splitlines()) == 4


def test_verbose_output_lists_neighbours_nearest_first(classifier, iris):
    _, _, Xs, _ = iris
    model = knn.load_model(classifier / "model")
    out, _ = knn.predict(model, rows(None, Xs[:3]).encode(), "text/csv", "application/json; verbose=true")
    for p in json.loads(out)["predictions"]:
        assert set(p) == {"predicted_label", "distances", "labels"}
        assert len(p["distances"]) == len(p["labels"]) == 5
        assert p["distances"] == sorted(p["distances"])
    out, _ = knn.predict(model, rows(None, Xs[:3]).encode(), "text/csv", "application/jsonlines;verbose=true")
    assert all("distances" in json.loads(line) for line in out.decode().splitlines())


def test_csv_rows_without_label_and_label_size(classifier, iris):
    _, _, Xs, ys = iris
    model = knn.load_model(classifier / "model")
    plain, _ = knn.predict(model, rows(None, Xs).encode(), "text/csv", None)
    labelled, _ = knn.predict(model, rows(ys, Xs).encode(), "text/csv; label_size=1", None)
    assert json.loads(plain) == json.loads(labelled)
    assert len(json.loads(plain)["predictions"]) == len(ys)


def test_serving_errors(classifier):
    model = knn.load_model(classifier / "model")
    with pytest.raises(common.UnsupportedMediaType) as err:
        knn.predict(model, b"\n\x00", "application/x-recordio-protobuf", None)
    assert err.value.status_code == 415
    with pytest.raises(common.UnsupportedMediaType):
        knn.predict(model, b"1,2,3,4", "text/plain", None)
    with pytest.raises(common.NotAcceptable) as err:
        knn.predict(model, b"1,2,3,4", "text/csv", "text/csv")
    assert err.value.status_code == 406
    with pytest.raises(common.ClientError, match="feature_dim=4"):
        knn.predict(model, b"1,2,3", "text/csv", None)
    with pytest.raises(common.ClientError):
        knn.predict(model, b'{"instances": 3}', "application/json", None)
    with pytest.raises(common.NoContent):
        knn.predict(model, b"", "text/csv", None)


@pytest.mark.parametrize("extra", [{"index_metric": "COSINE"}, {"index_metric": "INNER_PRODUCT"},
                                   {"dimension_reduction_type": "sign", "dimension_reduction_target": "3"},
                                   {"dimension_reduction_type": "fjlt", "dimension_reduction_target": "3",
                                    "index_type": "faiss.IVFPQ", "faiss_index_pq_m": "1"}])
def test_metrics_and_dimension_reduction(tmp_path, iris, extra):
    Xt, yt, Xs, ys = iris
    root = make_opt_ml(tmp_path, {"feature_dim": "4", "k": "5", "predictor_type": "classifier",
                                  "sample_size": "120", **extra}, {"train": (CSV, rows(yt, Xt))})
    knn.train(root, "1")
    model = knn.load_model(root / "model")
    out, _ = knn.predict(model, rows(None, Xs).encode(), "text/csv", None)
    preds = np.array([p["predicted_label"] for p in json.loads(out)["predictions"]])
    if extra.get("index_metric") == "INNER_PRODUCT":  # unnormalised inner product: check the search itself
        out, _ = knn.predict(model, rows(None, Xs[:5]).encode(), "text/csv", "application/json;verbose=true")
        for x, p in zip(Xs[:5], json.loads(out)["predictions"]):
            expected = np.sort(Xt @ x)[::-1][:5]
            np.testing.assert_allclose(p["distances"], expected, rtol=1e-4)
    else:
        assert np.mean(preds == ys) >= 0.8


def test_main_writes_a_client_error_failure_file(tmp_path, iris, monkeypatch):
    Xt, yt, _, _ = iris
    root = make_opt_ml(tmp_path, {"feature_dim": "4", "k": "5", "predictor_type": "classifier"},
                       {"train": (CSV, rows(yt, Xt))})
    monkeypatch.setenv("SMLOCAL_OPT_ML", str(root))
    assert knn.main(["train"]) == 1
    assert (root / "output" / "failure").read_text() == (
        "ClientError: No value(s) were specified for 'sample_size' which are required hyperparameter(s) "
        "(caused by ValidationError)")


def test_feature_dim_must_match_the_data_and_foreign_models_do_not_load(tmp_path, iris):
    Xt, yt, _, _ = iris
    root = make_opt_ml(tmp_path, {"feature_dim": "3", "k": "5", "predictor_type": "classifier", "sample_size": "50"},
                       {"train": (CSV, rows(yt, Xt))})
    with pytest.raises(common.ClientError, match="has 4 features .* feature_dim is 3"):
        knn.train(root, "1")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_algo-1").write_bytes(b"not ours")
    with pytest.raises(common.AlgorithmError):
        knn.load_model(tmp_path / "model")
