"""The SageMaker built-in k-nearest-neighbors (k-NN) algorithm, emulated with numpy.

Documented behaviour followed (docs.aws.amazon.com/sagemaker/latest/dg/): kNN_hyperparameters.html,
kNN-in-formats.html, kNN-inference-formats.html, kNN-tuning.html.

Hyperparameters (all validated as documented)
  * required: ``feature_dim``, ``k``, ``predictor_type`` (classifier|regressor), ``sample_size``
    (positive integers). A missing one fails with the first-party algorithms' wording
    ``No value(s) were specified for 'k' which are required hyperparameter(s) (caused by
    ValidationError)``.
  * ``dimension_reduction_type`` (sign|fjlt) with ``dimension_reduction_target`` (required then,
    0 < target < feature_dim): emulated with a seeded random projection -- ``sign`` is a +-1
    (Rademacher) projection, ``fjlt`` is approximated by a dense Gaussian Johnson-Lindenstrauss
    projection (the fast transform's structure is not reproduced).
  * ``index_type`` (faiss.Flat|faiss.IVFFlat|faiss.IVFPQ), ``faiss_index_ivf_nlists`` (auto or a
    positive integer), ``faiss_index_pq_m`` (one of the documented values): validated, then
    IGNORED -- every index is searched exactly (brute force), i.e. faiss.Flat results. IVFPQ with
    INNER_PRODUCT/COSINE is rejected as documented.
  * ``index_metric`` (L2|INNER_PRODUCT|COSINE, default L2): emulated.
  * ``mini_batch_size``: validated, ignored. Names starting with ``_`` (e.g.
    ``_tuning_objective_metric``) are accepted and ignored; any other name is rejected.

Training: channel ``train`` (required) and ``test`` (optional); ``text/csv`` with the label in the
first column (``label_size`` defaults to 1 and must be 1). RecordIO-protobuf is not emulated
(ClientError). ``sample_size`` rows are drawn without replacement (seeded) from the training data.
With a ``test`` channel the job logs ``test:accuracy`` (classifier) or ``test:mse`` (regressor),
both as the documented ``#test_score (algo-1) : ('accuracy', 0.98)`` line and as a
``#quality_metric: host=algo-1, test accuracy <score>=0.98`` line (the form of the first-party
algorithms' MetricDefinitions, see ``metrics.definitions("knn")``).

Prediction: classifier = majority label among the k neighbours (ties go to the label whose nearest
member is closest); regressor = mean label. Verbose output lists ``distances`` and ``labels`` of
the neighbours, nearest first; distances follow faiss: squared L2 for L2, inner product (largest
first) for INNER_PRODUCT and COSINE (cosine similarity).

Artefact (smlocal's own format; only smlocal serves it): ``model/model_algo-1``, a numpy ``.npz``
archive (no pickle) with arrays ``format`` ("smlocal-knn-v1"), ``features`` (float32 [n, d'] --
after projection and, for COSINE, L2 normalisation), ``labels`` (float32 [n]), ``projection``
(float32 [feature_dim, d'] or shape (0, 0)) and ``config`` (a JSON string of the hyperparameters).

Serving: Content-Type ``text/csv`` (``label_size`` default 0), ``application/json``
(``{"instances": [{"features": [...]}, {"data": {"features": {"values": [...]}}}]}``, sparse
``keys``/``shape`` accepted), ``application/jsonlines``; Accept ``application/json`` (default) or
``application/jsonlines``, each with ``; verbose=true``. RecordIO-protobuf is 415 (content) / 406
(accept).
"""

from __future__ import annotations

import io
import json
import pathlib
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from smlocal.runtime.algorithms import common
from smlocal.runtime.algorithms import metrics as builtin_metrics
from smlocal.runtime.algorithms.common import ClientError, AlgorithmError

MODEL_NAME = "model_algo-1"
FORMAT = "smlocal-knn-v1"
FAILURE_STYLE = "prefixed"
DEFAULT_VERSION = "1"
PQ_M_VALUES = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96)
_CHUNK = 2048  # queries per distance block


def _log(msg: str) -> None:
    print(time.strftime("[%m/%d/%Y %H:%M:%S INFO 140000000000000] ") + msg, flush=True)


# ------------------------------------------------------------------------------------------------
# Hyperparameters
# ------------------------------------------------------------------------------------------------
def _invalid(detail: str) -> ClientError:
    return ClientError("Unable to initialize the algorithm. Failed to validate input hyperparameters. "
                       f"(caused by ValidationError)\n\nCaused by: {detail}")


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise _invalid(f"'{raw}' is not of type 'integer' (hyperparameter '{name}')") from None
    if value < 1:
        raise _invalid(f"{value} is less than the minimum of 1 (hyperparameter '{name}')")
    return value


def _one_of(name: str, raw: str, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise _invalid(f"'{raw}' is not one of {list(allowed)} (hyperparameter '{name}')")
    return raw


def validate_hyperparameters(raw: dict[str, str]) -> dict[str, Any]:
    known = {"feature_dim", "k", "predictor_type", "sample_size", "dimension_reduction_target",
             "dimension_reduction_type", "faiss_index_ivf_nlists", "faiss_index_pq_m", "index_metric",
             "index_type", "mini_batch_size"}
    missing = [n for n in ("feature_dim", "k", "predictor_type", "sample_size") if n not in raw]
    if missing:
        names = ", ".join(f"'{n}'" for n in missing)
        raise ClientError(f"No value(s) were specified for {names} which are required hyperparameter(s) "
                          "(caused by ValidationError)")
    extra = sorted(n for n in raw if n not in known and not n.startswith("_"))
    if extra:
        raise _invalid("Additional properties are not allowed (" + ", ".join(f"'{n}'" for n in extra)
                       + (" was" if len(extra) == 1 else " were") + " unexpected)")
    hp: dict[str, Any] = {
        "feature_dim": _positive_int("feature_dim", raw["feature_dim"]),
        "k": _positive_int("k", raw["k"]),
        "predictor_type": _one_of("predictor_type", raw["predictor_type"], ("classifier", "regressor")),
        "sample_size": _positive_int("sample_size", raw["sample_size"]),
        "index_metric": _one_of("index_metric", raw.get("index_metric", "L2"), ("L2", "INNER_PRODUCT", "COSINE")),
        "index_type": _one_of("index_type", raw.get("index_type", "faiss.Flat"),
                              ("faiss.Flat", "faiss.IVFFlat", "faiss.IVFPQ")),
        "mini_batch_size": _positive_int("mini_batch_size", raw.get("mini_batch_size", "5000")),
        "dimension_reduction_type": None, "dimension_reduction_target": None,
    }
    nlists = raw.get("faiss_index_ivf_nlists", "auto")
    hp["faiss_index_ivf_nlists"] = nlists if nlists == "auto" else _positive_int("faiss_index_ivf_nlists", nlists)
    if "faiss_index_pq_m" in raw:
        m = _positive_int("faiss_index_pq_m", raw["faiss_index_pq_m"])
        if m not in PQ_M_VALUES:
            raise _invalid(f"{m} is not one of {list(PQ_M_VALUES)} (hyperparameter 'faiss_index_pq_m')")
        hp["faiss_index_pq_m"] = m
    if "dimension_reduction_type" in raw:
        hp["dimension_reduction_type"] = _one_of("dimension_reduction_type", raw["dimension_reduction_type"],
                                                 ("sign", "fjlt"))
        if "dimension_reduction_target" not in raw:
            raise _invalid("'dimension_reduction_target' is a required property when "
                           "'dimension_reduction_type' is set")
    if "dimension_reduction_target" in raw:
        target = _positive_int("dimension_reduction_target", raw["dimension_reduction_target"])
        if target >= hp["feature_dim"]:
            raise _invalid(f"dimension_reduction_target {target} must be less than feature_dim "
                           f"{hp['feature_dim']}")
        hp["dimension_reduction_target"] = target
    if hp["index_type"] == "faiss.IVFPQ" and hp["index_metric"] in ("INNER_PRODUCT", "COSINE"):
        raise _invalid(f"index_metric {hp['index_metric']} is not supported with index_type faiss.IVFPQ")
    return hp


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------
@dataclass
class KNNModel:
    features: np.ndarray  # float32 [n, d'] (projected; normalised for COSINE)
    labels: np.ndarray  # float32 [n]
    projection: np.ndarray | None  # float32 [feature_dim, d'] or None
    config: dict

    @property
    def feature_dim(self) -> int:
        return int(self.config["feature_dim"])

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.projection is not None:
            x = x @ self.projection
        if self.config["index_metric"] == "COSINE":
            x = _normalise(x)
        return x

    def neighbours(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distances, labels) of the k nearest stored points, nearest first, for each row of x."""
        q = self.transform(x)
        k = min(int(self.config["k"]), len(self.labels))
        metric = self.config["index_metric"]
        sq_norms = np.einsum("ij,ij->i", self.features, self.features) if metric == "L2" else None
        dists, labels = [], []
        for start in range(0, len(q), _CHUNK):
            block = q[start:start + _CHUNK]
            ip = block @ self.features.T
            if metric == "L2":
                score = np.maximum(np.einsum("ij,ij->i", block, block)[:, None] - 2.0 * ip + sq_norms[None, :], 0.0)
            else:
                score = -ip  # larger inner product = nearer
            idx = np.argpartition(score, k - 1, axis=1)[:, :k] if k < score.shape[1] else \
                np.tile(np.arange(score.shape[1]), (len(block), 1))
            part = np.take_along_axis(score, idx, axis=1)
            order = np.argsort(part, axis=1, kind="stable")
            idx = np.take_along_axis(idx, order, axis=1)
            best = np.take_along_axis(part, order, axis=1)
            dists.append(best if metric == "L2" else -best)
            labels.append(self.labels[idx])
        return np.vstack(dists), np.vstack(labels)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dists, labels = self.neighbours(x)
        if self.config["predictor_type"] == "regressor":
            return labels.mean(axis=1, dtype=np.float64).astype(np.float32), dists, labels
        return _vote(labels), dists, labels


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def _vote(labels: np.ndarray) -> np.ndarray:
    """Majority label per row; ties go to the tied label that appears first (nearest)."""
    classes, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    n, k = labels.shape
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, _CHUNK):
        inv = inverse[start:start + _CHUNK]
        match = inv[:, :, None] == np.arange(len(classes))[None, None, :]
        counts = match.sum(axis=1)
        first = np.where(match, np.arange(k)[None, :, None], k).min(axis=1)
        out[start:start + _CHUNK] = classes[np.argmax(counts * (k + 1) + (k - first), axis=1)]
    return out


def _projection(hp: dict, seed: int = 0) -> np.ndarray | None:
    kind, target = hp["dimension_reduction_type"], hp["dimension_reduction_target"]
    if not kind:
        return None
    rng = np.random.default_rng(seed)
    shape = (hp["feature_dim"], target)
    for _ in range(100):  # a projection that collapses dimensions is redrawn (likely only for tiny dims)
        if kind == "sign":
            matrix = rng.choice([-1.0, 1.0], size=shape) / np.sqrt(target)
        else:
            matrix = rng.standard_normal(shape) / np.sqrt(target)
        if np.linalg.matrix_rank(matrix) == min(shape):
            break
    return matrix.astype(np.float32)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def _read_channel(opt_ml: pathlib.Path, name: str, cfg: dict, feature_dim: int) -> tuple[np.ndarray, np.ndarray]:
    media, params = common.parse_content_type(cfg.get("ContentType") or "text/csv")
    if media == "application/x-recordio-protobuf":
        raise ClientError(f"Channel '{name}': application/x-recordio-protobuf is valid for k-NN but smlocal "
                          "does not emulate it; use text/csv with the label in the first column.")
    if media != "text/csv":
        raise ClientError(f"Channel '{name}': content type {cfg.get('ContentType')} is not supported; "
                          "use text/csv or application/x-recordio-protobuf.")
    if params.get("label_size", "1") != "1":
        raise ClientError(f"Channel '{name}': label_size must be 1 for k-NN (got {params['label_size']}).")
    arr = common.read_csv_files(common.list_data_files(common.channel_path(opt_ml, name)))
    if arr.size == 0:
        raise ClientError(f"No training data found in channel '{name}'." if name == "train"
                          else f"No data found in channel '{name}'.")
    if arr.shape[1] - 1 != feature_dim:
        raise ClientError(f"Channel '{name}': the data has {arr.shape[1] - 1} features (after the label column) "
                          f"but feature_dim is {feature_dim}.")
    if np.isnan(arr).any():
        raise ClientError(f"Channel '{name}': the data contains missing or non-numeric values.")
    return arr[:, 1:], arr[:, 0]


def train(opt_ml: pathlib.Path, framework_version: str = DEFAULT_VERSION) -> None:
    opt_ml = pathlib.Path(opt_ml)
    hp = validate_hyperparameters(common.read_hyperparameters(opt_ml))
    channels = common.read_input_data_config(opt_ml)
    if "train" not in channels:
        raise ClientError("Missing required channel: train")
    for name in channels:
        if name not in ("train", "test"):
            raise ClientError(f"Extraneous channel found: {name} (k-NN takes 'train' and 'test')")
    x, y = _read_channel(opt_ml, "train", channels["train"], hp["feature_dim"])
    _log(f"#train_rows (algo-1) : {len(y)}")
    rng = np.random.default_rng(0)
    if hp["sample_size"] < len(y):
        keep = np.sort(rng.choice(len(y), size=hp["sample_size"], replace=False))
        x, y = x[keep], y[keep]
    _log(f"#sample_size (algo-1) : {len(y)}")
    projection = _projection(hp)
    config = {**hp, "version": framework_version or DEFAULT_VERSION}
    model = KNNModel(np.zeros((0, 0), np.float32), y.astype(np.float32), projection, config)
    model.features = np.ascontiguousarray(model.transform(x), dtype=np.float32)
    if "test" in channels:
        tx, ty = _read_channel(opt_ml, "test", channels["test"], hp["feature_dim"])
        pred, _, _ = model.predict(tx)
        if hp["predictor_type"] == "classifier":
            name, value = "accuracy", float(np.mean(pred == ty))
        else:
            name, value = "mse", float(np.mean((pred.astype(np.float64) - ty) ** 2))
        _log(f"#test_score (algo-1) : ('{name}', {value!r})")
        _log(builtin_metrics.knn_line(name, value))
    save_model(model, opt_ml / "model")


def save_model(model: KNNModel, model_dir: pathlib.Path) -> pathlib.Path:
    model_dir = pathlib.Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / MODEL_NAME
    with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
        np.savez(f, format=np.array(FORMAT), features=model.features, labels=model.labels,
                 projection=model.projection if model.projection is not None else np.zeros((0, 0), np.float32),
                 config=np.array(json.dumps(model.config)))
    return path


def load_model(model_dir: pathlib.Path) -> KNNModel:
    path = pathlib.Path(model_dir) / MODEL_NAME
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != FORMAT:
                raise ValueError(f"unknown format {z['format']}")
            projection = z["projection"]
            return KNNModel(z["features"].astype(np.float32), z["labels"].astype(np.float32),
                            projection if projection.size else None, json.loads(str(z["config"])))
    except Exception as e:  # noqa: BLE001
        raise AlgorithmError(f"Unable to load model from {path}: {e}") from e


# ------------------------------------------------------------------------------------------------
# Serving
# ------------------------------------------------------------------------------------------------
def _instance_features(inst: Any, dim: int) -> list[float]:
    if isinstance(inst, dict) and "features" in inst and isinstance(inst["features"], list):
        return inst["features"]
    feats = inst.get("data", {}).get("features") if isinstance(inst, dict) else None
    if isinstance(feats, dict) and "values" in feats:
        if "keys" in feats:
            dense = [0.0] * int((feats.get("shape") or [dim])[0])
            for key, value in zip(feats["keys"], feats["values"]):
                dense[int(key)] = value
            return dense
        return feats["values"]
    raise ClientError('Each instance must be {"features": [...]} or {"data": {"features": {"values": [...]}}}.')


def _parse_body(body: bytes, content_type: str | None, dim: int) -> np.ndarray:
    media, params = common.parse_content_type(content_type)
    try:
        if media == "text/csv":
            text = body.decode("utf-8").strip()
            arr = common.read_csv_array(text, common.sniff_csv_delimiter(text.split("\n", 1)[0]))
            arr = arr[:, int(params.get("label_size", "0")):]
        elif media == "application/json":
            doc = json.loads(body)
            instances = doc.get("instances") if isinstance(doc, dict) else None
            if not isinstance(instances, list):
                raise ClientError('The JSON request must be an object with an "instances" list.')
            arr = np.array([_instance_features(i, dim) for i in instances], dtype=np.float32)
        elif media in ("application/jsonlines", "application/jsonl", "application/x-jsonlines"):
            lines = [ln for ln in body.decode("utf-8").splitlines() if ln.strip()]
            arr = np.array([_instance_features(json.loads(ln), dim) for ln in lines], dtype=np.float32)
        elif media == "application/x-recordio-protobuf":
            raise common.UnsupportedMediaType("Content type application/x-recordio-protobuf is not supported by "
                                              "smlocal's k-NN emulation (RecordIO-protobuf is not emulated).")
        else:
            raise common.UnsupportedMediaType(
                f"Content type {content_type} is not supported. Supported content types: text/csv, "
                "application/json, application/jsonlines, application/x-recordio-protobuf.")
    except ClientError:
        raise
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise ClientError(f"Unable to parse the {media} request payload: {e}") from e
    if arr.ndim != 2 or (arr.size and arr.shape[1] != dim):
        got = arr.shape[1] if arr.ndim == 2 else "an inconsistent number of"
        raise ClientError(f"The request has {got} features per record but the model expects feature_dim={dim}.")
    return arr.reshape(-1, dim)


def _parse_accept(accept: str | None) -> tuple[str, bool]:
    for option in (accept or "").split(","):
        media, params = common.parse_content_type(option)
        if media in ("", "*/*", "application/*"):
            media = "application/json"
        if media in ("application/json", "application/jsonlines"):
            return media, params.get("verbose", "false").lower() == "true"
        if media == "application/x-recordio-protobuf":
            raise common.NotAcceptable("Accept application/x-recordio-protobuf is not supported by smlocal's "
                                       "k-NN emulation (RecordIO-protobuf is not emulated).")
    raise common.NotAcceptable(f"Accept type {accept} is not supported. Supported accept types: "
                               "application/json, application/jsonlines, application/x-recordio-protobuf "
                               "(each optionally with '; verbose=true').")


def predict(model: KNNModel, body: bytes, content_type: str | None, accept: str | None = None) -> tuple[bytes, str]:
    """Score every record of ``body`` in one vectorised pass; returns (payload, content type)."""
    accept_media, verbose = _parse_accept(accept)
    if not body or not body.strip():
        raise common.NoContent("")
    x = _parse_body(body, content_type, model.feature_dim)
    pred, dists, labels = model.predict(x)
    if verbose:
        records = [{"predicted_label": p, "distances": d, "labels": lab}
                   for p, d, lab in zip(pred.tolist(), dists.tolist(), labels.tolist())]
    else:
        records = [{"predicted_label": p} for p in pred.tolist()]
    if accept_media == "application/json":
        return json.dumps({"predictions": records}).encode("utf-8"), "application/json"
    out = io.StringIO()
    for rec in records:
        out.write(json.dumps(rec))
        out.write("\n")
    return out.getvalue().encode("utf-8"), "application/jsonlines"


def main(argv: list[str] | None = None) -> int:
    """``python -m smlocal.runtime.algorithms.knn_algo train``."""
    return common.run_main(argv, train, DEFAULT_VERSION, FAILURE_STYLE, "smlocal.runtime.algorithms.knn_algo")


if __name__ == "__main__":
    sys.exit(main())
