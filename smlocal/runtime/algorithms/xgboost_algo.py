"""The SageMaker built-in XGBoost algorithm ("algorithm mode"), run with the real ``xgboost``.

Behaviour follows aws/sagemaker-xgboost-container (``algorithm_mode/train.py``,
``hyperparameter_validation.py``, ``data_utils.py``, ``serve.py``/``serve_utils.py``) and the
sagemaker-algorithm-toolkit it bundles:

Training
  * hyperparameters are validated with the toolkit's rules and wording ("Missing required
    hyperparameter: num_round", "Extraneous hyperparameter found: x", "Hyperparameter eta: 2.0 is
    not in [0, 1]", ...). ``reg:linear`` is accepted and trained as ``reg:squarederror`` (XGBoost
    itself treats it as a deprecated alias). Aliases learning_rate/min_split_loss/reg_lambda/
    reg_alpha map to eta/gamma/lambda/alpha.
  * channels: ``train`` (required), ``validation``, ``code``; ContentType defaults to
    ``text/libsvm``; ``text/csv`` files are headerless with the label in column 0 (and the instance
    weight in column 1 when ``csv_weights=1``); LIBSVM lines are ``<label>[:<weight>] i:v ...``.
    A hidden file in a channel fails the job, as in the container. Parquet and RecordIO-protobuf
    channels are not emulated (ClientError saying so). Pipe mode channels are read from the channel
    directory like File mode.
  * one evaluation line per round on stdout, the XGBoost EvaluationMonitor format with the tab
    rendered as ``#011`` (how CloudWatch shows it, and what the service's MetricDefinitions for
    the built-in image -- ``metrics.definitions("xgboost")`` -- expect):
    ``[0]#011train-rmse:9.12345#011validation-rmse:9.23456``.
  * custom metrics computed by the container in Python (accuracy, f1, mse, r2, precision, recall,
    ...) are computed here too; early stopping uses the last tuning/eval metric on ``validation``
    and keeps the best iteration (``save_best``), as the current container does.
  * several instances (``resourceconfig.json``): every host trains the same rounds over its own
    data in one XGBoost cluster (the tracker on algo-1; ShardedByS3Key channels hold the host's
    shard), hosts without data leave it, and only algo-1 writes the model and prints the
    evaluation lines (:mod:`~smlocal.runtime.algorithms.xgboost_distributed`).
  * the artefact is ``model/xgboost-model``: a pickled ``Booster`` for 0.90-x/1.0-1/1.2-x,
    ``Booster.save_model`` output (UBJSON with today's xgboost) for 1.3-1 and later.

Serving (``load_model`` / ``predict``)
  * Content-Type ``text/csv`` (no label column) and ``text/libsvm``/``text/x-libsvm``; a missing
    Content-Type is read as LIBSVM (the container's ``get_content_type(None)``). Anything else,
    including ``application/x-recordio-protobuf`` (not emulated), is 415. A payload that does not
    parse is 415 with the container's "Loading csv data failed with Exception, ..." text; a
    prediction failure (e.g. feature count) is 400 "Unable to evaluate payload provided: ...".
  * the response is always ``text/csv`` whatever the Accept: predictions joined by "," for a
    real-time request, one per line with a trailing newline for batch transform (the container
    switches on the ``SAGEMAKER_BATCH`` environment variable; ``predict(..., batch=True)``).
  * an empty body raises ``common.NoContent`` (the container answers 204 with no body).
  Selectable inference output (``SAGEMAKER_INFERENCE_OUTPUT``) is not emulated.

Failures: ``train`` raises ClientError for the user's mistakes and AlgorithmError otherwise, but
``main`` writes the failure file the way the real image does: the XGBoost container runs under
sagemaker-containers, which reports *every* exception as ``framework error`` with its traceback, and
the service shows it as ``AlgorithmError: framework error: \n<traceback>\n<message>`` (also for a
missing num_round). Set ``FAILURE_STYLE = "prefixed"`` for ``ClientError: <message>`` instead.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from smlocal.runtime.algorithms import common
from smlocal.runtime.algorithms import metrics as builtin_metrics
from smlocal.runtime.algorithms import xgboost_distributed
from smlocal.runtime.algorithms.common import HP, ClientError, AlgorithmError, Interval

SUPPORTED_VERSIONS = ("1", "0.90-1", "0.90-2", "1.0-1", "1.2-1", "1.2-2", "1.3-1", "1.5-1", "1.7-1", "3.0-5")
DEFAULT_VERSION = "3.0-5"
PICKLE_VERSIONS = frozenset({"1", "0.90-1", "0.90-2", "1.0-1", "1.2-1", "1.2-2"})
MODEL_NAME = "xgboost-model"
LOG_TAB = "#011"  # a tab as CloudWatch renders it; the MetricDefinitions regexes contain it
FAILURE_STYLE = "framework"  # see common.failure_text

# the metric names and tunable objectives live in the pure table module (metrics.py)
MAXIMIZE_METRICS = list(builtin_metrics.XGBOOST_MAXIMIZE)
MINIMIZE_METRICS = list(builtin_metrics.XGBOOST_MINIMIZE)
TUNING_OBJECTIVES = sorted(builtin_metrics.objectives("xgboost"))

_OBJECTIVES = ["aft_loss_distribution", "binary:logistic", "binary:logitraw", "binary:hinge", "count:poisson",
               "multi:softmax", "multi:softprob", "rank:pairwise", "rank:ndcg", "rank:map", "reg:linear",
               "reg:squarederror", "reg:logistic", "reg:gamma", "reg:pseudohubererror", "reg:squaredlogerror",
               "reg:tweedie", "survival:aft", "survival:cox"]
_CUSTOMER_ERRORS = ["label must be in [0,1] for logistic regression", "label must be in [0, num_class)",
                    "Target is multiclass but average='binary'", "feature_names mismatch",
                    "Check failed: preds.size() == info.labels_.size()", "the dataset only contains pos or neg",
                    "base_score must be in (0,1) for logistic loss", "label must be nonnegative",
                    "Parameter reg_lambda should be greater equal to 0"]
_TRAIN_CONTENT_TYPES = ["csv", "libsvm", "parquet", "recordio-protobuf", "text/csv", "text/libsvm",
                        "text/x-libsvm", "application/x-parquet", "application/x-recordio-protobuf"]
_ALIASES = {"learning_rate": "eta", "min_split_loss": "gamma", "reg_lambda": "lambda", "reg_alpha": "alpha"}
# Accepted for compatibility but no longer meaningful to today's xgboost: not passed on.
_OBSOLETE = {"silent", "predictor", "dsplit", "lambda_bias", "deterministic_histogram",
             "single_precision_histogram"}
_CONTAINER_ONLY = {"num_round", "csv_weights", "early_stopping_rounds", "_tuning_objective_metric", "eval_metric",
                   "save_model_on_termination", "use_dask_gpu_training"}


def normalize_version(version: str | None) -> str:
    """'' / None / 'latest' -> DEFAULT_VERSION; unknown versions raise AlgorithmError."""
    version = (version or "").strip()
    if version in ("", "latest"):
        return DEFAULT_VERSION
    if version not in SUPPORTED_VERSIONS:
        raise AlgorithmError(f"smlocal does not emulate XGBoost algorithm version {version!r}; emulated "
                             f"versions: {', '.join(SUPPORTED_VERSIONS)}")
    return version


def _log(msg: str) -> None:
    print(time.strftime("[%Y-%m-%d:%H:%M:%S:INFO] ") + msg, flush=True)


# ------------------------------------------------------------------------------------------------
# Hyperparameters
# ------------------------------------------------------------------------------------------------
def _eval_metric_ok(metric: str) -> bool:
    if "<function" in metric:
        raise ClientError(f"User defined evaluation metric {metric} is not supported yet.")
    if "@" in metric:
        name, threshold = (p.strip() for p in metric.split("@", 1))
        if name not in ("error", "ndcg", "map"):
            raise ClientError(f"Metric '{metric}' is not supported. Parameter 'eval_metric' with customized "
                              "threshold should be one of these options: 'error', 'ndcg', 'map'.")
        try:
            float(threshold)
        except ValueError:
            raise ClientError(f"Threshold value 't' in '{name}@t' expects float input.") from None
        return True
    return metric in MAXIMIZE_METRICS + MINIMIZE_METRICS


def hyperparameter_table(version: str) -> list[HP]:
    """The container's hyperparameter definitions (algorithm_mode/hyperparameter_validation.py)."""
    pos = Interval(min_closed=0)
    unit = Interval(min_closed=0, max_closed=1)
    frac = Interval(min_open=0, max_closed=1)
    bit = Interval(min_closed=0, max_closed=1)
    objectives = _OBJECTIVES + (["reg:absoluteerror"] if version in ("1.7-1", "3.0-5") else [])
    updaters = ["grow_colmaker", "distcol", "grow_histmaker", "grow_local_histmaker", "grow_skmaker", "sync",
                "refresh", "prune", "shotgun", "coord_descent", "grow_quantile_histmaker"]
    table = [
        HP("num_round", "int", Interval(min_closed=1), required=True),
        HP("csv_weights", "int", bit), HP("early_stopping_rounds", "int", Interval(min_closed=1)),
        HP("booster", "str", ["gbtree", "gblinear", "dart"]),
        HP("verbosity", "int", Interval(min_closed=0, max_closed=3)), HP("nthread", "int", Interval(min_closed=1)),
        HP("eta", "float", unit), HP("gamma", "float", pos), HP("max_depth", "int", pos),
        HP("min_child_weight", "float", pos), HP("max_delta_step", "float", pos), HP("subsample", "float", frac),
        HP("sampling_method", "str", ["uniform", "gradient_based"]),
        HP("colsample_bytree", "float", frac), HP("colsample_bylevel", "float", frac),
        HP("colsample_bynode", "float", frac), HP("lambda", "float", pos), HP("alpha", "float", pos),
        HP("tree_method", "str", ["auto", "exact", "approx", "hist", "gpu_hist"]),
        HP("sketch_eps", "float", Interval(min_open=0, max_open=1)),
        HP("scale_pos_weight", "float", Interval(min_open=0)), HP("updater", "list", updaters),
        HP("dsplit", "str", ["row", "col"]), HP("refresh_leaf", "int", bit),
        HP("process_type", "str", ["default", "update"]), HP("grow_policy", "str", ["depthwise", "lossguide"]),
        HP("max_leaves", "int", pos), HP("max_bin", "int", pos),
        HP("predictor", "str", ["auto", "cpu_predictor", "gpu_predictor"]),
        HP("num_parallel_tree", "int", Interval(min_closed=1)),
        HP("monotone_constraints", "tuple", [-1, 0, 1]),
        HP("interaction_constraints", "nested", Interval(min_closed=0)),
        HP("sample_type", "str", ["uniform", "weighted"]), HP("normalize_type", "str", ["tree", "forest"]),
        HP("rate_drop", "float", unit), HP("one_drop", "int", bit), HP("skip_drop", "float", unit),
        HP("lambda_bias", "float", unit), HP("tweedie_variance_power", "float", Interval(min_open=1, max_open=2)),
        HP("objective", "str", objectives), HP("num_class", "int", Interval(min_closed=2)),
        HP("base_score", "float", pos), HP("huber_slope", "float", Interval(min_open=0)),
        HP("aft_loss_distribution", "str", ["normal", "logistic", "extreme"]),
        HP("aft_loss_distribution_scale", "float", Interval(min_open=0)),
        HP("_tuning_objective_metric", "str", TUNING_OBJECTIVES),
        HP("eval_metric", "list", _eval_metric_ok, shown=str(MAXIMIZE_METRICS + MINIMIZE_METRICS)),
        HP("seed", "int", Interval(min_open=-2 ** 31, max_open=2 ** 31 - 1)),
        HP("deterministic_histogram", "str", ["true", "false"]),
        HP("single_precision_histogram", "str", ["true", "false"]),
        HP("max_cached_hist_node", "int", Interval(min_closed=1)),
        HP("save_model_on_termination", "str", ["true", "false"]),
        HP("use_dask_gpu_training", "str", ["true", "false"]),
    ]
    if version in ("1", "0.90-1", "0.90-2", "1.0-1"):
        table.append(HP("silent", "int", bit))
    return table


def validate_hyperparameters(raw: dict[str, str], version: str = DEFAULT_VERSION) -> dict[str, Any]:
    """Validate and convert the string hyperparameters like the container's toolkit does."""
    parsed = common.validate_toolkit_hyperparameters(raw, hyperparameter_table(version), _ALIASES)
    _validate_dependencies(parsed)
    return parsed


def _validate_dependencies(hps: dict[str, Any]) -> None:
    objective = hps.get("objective")
    if objective in ("multi:softmax", "multi:softprob") and "num_class" not in hps:
        raise ClientError("Require input for parameter 'num_class' for multi-classification")
    if "auc" in hps.get("eval_metric", []):
        if not str(objective or "reg:squarederror").startswith(("binary:", "rank:")):
            raise ClientError("Metric 'auc' can only be applied for classification and ranking problems.")
    tree_method = hps.get("tree_method")
    if "monotone_constraints" in hps and tree_method not in ("exact", "hist"):
        raise ClientError("monotone_constraints can be used only when the tree_method parameter is set to "
                          "either 'exact' or 'hist'.")
    if "interaction_constraints" in hps and tree_method not in ("exact", "hist", "approx"):
        raise ClientError("interaction_constraints can be used only when the tree_method parameter is set to "
                          "either 'exact', 'hist' or 'approx'.")
    updater = hps.get("updater")
    if updater:
        if hps.get("booster") == "gblinear":
            if not (len(updater) == 1 and updater[0] in ("shotgun", "coord_descent")):
                raise ClientError("Linear updater should be one of these options: 'shotgun', 'coord_descent'.")
        elif hps.get("process_type") == "update":
            if not all(u in ("refresh", "prune") for u in updater):
                raise ClientError("process_type 'update' can only be used with updater 'refresh' and 'prune'")


# ------------------------------------------------------------------------------------------------
# Custom (container-computed) metrics
# ------------------------------------------------------------------------------------------------
def _class_labels(preds: np.ndarray, objective: str) -> np.ndarray:
    if preds.ndim == 2:
        return np.argmax(preds, axis=1)
    if objective in ("binary:logitraw",):
        return (preds > 0.0).astype(int)
    if objective in ("multi:softmax", "binary:hinge"):
        return preds.astype(int)
    return (preds > 0.5).astype(int)


def _make_custom_metric(names: list[str], objective: str):
    from sklearn import metrics as skm

    cls = {"accuracy": skm.accuracy_score, "balanced_accuracy": skm.balanced_accuracy_score,
           "f1": lambda y, p: skm.f1_score(y, p, average="macro"),
           "f1_binary": lambda y, p: skm.f1_score(y, p, average="binary"),
           "f1_macro": lambda y, p: skm.f1_score(y, p, average="macro"),
           "precision": skm.precision_score, "precision_macro": lambda y, p: skm.precision_score(y, p, average="macro"),
           "precision_micro": lambda y, p: skm.precision_score(y, p, average="micro"),
           "recall": skm.recall_score, "recall_macro": lambda y, p: skm.recall_score(y, p, average="macro"),
           "recall_micro": lambda y, p: skm.recall_score(y, p, average="micro")}
    reg = {"mse": skm.mean_squared_error, "r2": skm.r2_score}

    def custom_metric(preds: np.ndarray, dmatrix) -> list[tuple[str, float]]:
        labels = dmatrix.get_label()
        out = []
        for name in names:
            if name in reg:
                out.append((name, float(reg[name](labels, preds))))
            else:
                out.append((name, float(cls[name](labels, _class_labels(preds, objective))) if preds.size else 0.0))
        return out

    return custom_metric


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------
def _validate_channels(data_config: dict[str, dict]) -> dict[str, dict]:
    if "train" not in data_config:
        raise ClientError("Missing required channel: train")
    out = {}
    for name, cfg in data_config.items():
        if name not in ("train", "validation", "code"):
            raise ClientError(f"Extraneous channel found: {name}")
        cfg = dict(cfg)
        cfg.setdefault("ContentType", "text/libsvm")
        mode = cfg.get("TrainingInputMode", "File")
        dist = cfg.get("S3DistributionType", "FullyReplicated")
        media, _ = common.parse_content_type(cfg["ContentType"])
        ok_types = ["text/python"] if name == "code" else _TRAIN_CONTENT_TYPES
        if (cfg["ContentType"] not in ok_types and media not in ok_types) or mode not in ("File", "Pipe", "FastFile") \
                or dist not in ("FullyReplicated", "ShardedByS3Key") \
                or (mode == "Pipe" and media in ("libsvm", "text/libsvm", "text/x-libsvm")):
            raise ClientError(f"Channel configuration for '{name}' channel is not supported: {cfg}")
        out[name] = cfg
    return out


def _file_type(content_type: str) -> str:
    media, params = common.parse_content_type(content_type)
    if media in ("csv", "text/csv"):
        if params.get("label_size", "1") != "1":
            raise ClientError(f"{content_type} is not an accepted csv ContentType. "
                              "Optional parameter label_size must be equal to 1")
        return "csv"
    if media in ("libsvm", "text/libsvm", "text/x-libsvm"):
        return "libsvm"
    if media in ("parquet", "application/x-parquet", "recordio-protobuf", "application/x-recordio-protobuf"):
        raise ClientError(f"ContentType {content_type} is valid for the XGBoost algorithm but smlocal does not "
                          "emulate it; use text/csv or text/libsvm.")
    raise ClientError(f"{content_type} is not an accepted ContentType: " + ", ".join(_TRAIN_CONTENT_TYPES) + ".")


def _load_dmatrix(path: pathlib.Path, file_type: str, csv_weights: int):
    import xgboost as xgb

    files = common.list_data_files(path, skip_prefixes=(".", "_"))
    files = [f for f in files if f.stat().st_size > 0]
    if not files:
        return None
    if file_type == "csv":
        arr = common.read_csv_files(files)
        if arr.size == 0:
            return None
        if csv_weights == 1:
            return xgb.DMatrix(arr[:, 2:], label=arr[:, 0], weight=arr[:, 1], missing=np.nan)
        return xgb.DMatrix(arr[:, 1:], label=arr[:, 0], missing=np.nan)
    for f in files:
        common.check_libsvm_first_line(f)
    data = common.read_libsvm_files(files)
    if data.features is None:
        return None
    return xgb.DMatrix(data.features, label=data.labels, weight=data.weights)


def _xgb_params(hps: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for k, v in hps.items():
        if k in _CONTAINER_ONLY or k in _OBSOLETE:
            continue
        if k == "updater":
            v = ",".join(v)
        elif k in ("monotone_constraints", "interaction_constraints"):
            v = str(tuple(v) if k == "monotone_constraints" else v)
        elif k == "tree_method" and v == "gpu_hist":
            _log("tree_method gpu_hist: smlocal trains on CPU with tree_method hist")
            v = "hist"
        elif k == "objective" and v == "reg:linear":
            _log("WARNING: reg:linear is now deprecated in favor of reg:squarederror.")
            v = "reg:squarederror"
        params[k] = v
    return params


def train(opt_ml: pathlib.Path, framework_version: str = DEFAULT_VERSION) -> None:
    """Run a training job from the SageMaker layout under ``opt_ml``; see the module docstring.

    With several hosts (``resourceconfig.json``) every host trains in one XGBoost cluster over its
    own data (its shard under ShardedByS3Key) and only the first host saves the model: see
    :mod:`~smlocal.runtime.algorithms.xgboost_distributed`.
    """
    opt_ml = pathlib.Path(opt_ml)
    framework_version = normalize_version(framework_version)
    _log("Running XGBoost Sagemaker in algorithm mode")
    hps = validate_hyperparameters(common.read_hyperparameters(opt_ml), framework_version)
    channels = _validate_channels(common.read_input_data_config(opt_ml))
    file_type = _file_type(channels["train"]["ContentType"])
    csv_weights = hps.get("csv_weights", 0)
    train_path = common.channel_path(opt_ml, "train")
    val_path = common.channel_path(opt_ml, "validation") if "validation" in channels else None
    for p in (train_path, val_path):
        if p is not None and common.hidden_files(p):
            raise ClientError("Hidden file found in the data path! Remove that before training.")
    dtrain = _load_dmatrix(train_path, file_type, csv_weights)
    dval = _load_dmatrix(val_path, file_type, csv_weights) if val_path is not None else None
    cluster = xgboost_distributed.read_cluster(opt_ml)

    def train_job(is_master: bool) -> None:
        _train_job(hps, dtrain, dval, opt_ml / "model", framework_version, is_master=is_master)

    if cluster.distributed:
        xgboost_distributed.run(train_job, cluster, has_train=dtrain is not None, has_validation=dval is not None,
                                validation_channel="validation" if val_path is not None else None)
        return
    if dtrain is None:
        raise ClientError(f"No data in training channel path {train_path}")
    if val_path is not None and dval is None:
        raise ClientError(f"No data in validation channel path {val_path}")
    _log("Single node training.")
    train_job(True)


def _train_job(hps: dict[str, Any], dtrain, dval, model_dir: pathlib.Path, framework_version: str, *,
               is_master: bool) -> None:
    """Trains on this host's matrices (in a cluster: the same rounds on every host, synchronised by
    XGBoost) and, on the master only, saves the model."""
    import xgboost as xgb

    _log(f"Train matrix has {dtrain.num_row()} rows and {dtrain.num_col()} columns")
    if dval is not None:
        _log(f"Validation matrix has {dval.num_row()} rows")

    params = _xgb_params(hps)
    tuning = hps.get("_tuning_objective_metric")
    tuning_metrics = tuning.split(":", 1)[1].split(",") if tuning else None
    eval_metric = hps.get("eval_metric")
    if tuning_metrics and eval_metric:
        union = sorted(set(tuning_metrics) | set(eval_metric))
    else:
        union = tuning_metrics or eval_metric
    custom_names = [m for m in (union or []) if m in ("accuracy", "balanced_accuracy", "f1", "f1_binary", "f1_macro",
                                                       "mse", "precision", "precision_macro", "precision_micro",
                                                       "r2", "recall", "recall_macro", "recall_micro")]
    native = [m for m in (union or []) if m not in custom_names]
    if native:
        params["eval_metric"] = native
    custom = _make_custom_metric(custom_names, params.get("objective", "reg:squarederror")) if custom_names else None

    evals = [(dtrain, "train")] + ([(dval, "validation")] if dval is not None else [])
    # XGBoost's monitor prints on rank 0 only: in a cluster, the master's log has the evaluation lines
    callbacks: list[Any] = [xgb.callback.EvaluationMonitor(
        logger=lambda msg: print(msg.rstrip("\n").replace("\t", LOG_TAB), flush=True))]
    rounds = hps.get("early_stopping_rounds")
    stop_metric = (tuning_metrics or eval_metric or [None])[-1]
    if rounds and dval is not None and stop_metric:
        callbacks.append(xgb.callback.EarlyStopping(
            rounds=rounds, data_name="validation", metric_name=stop_metric,
            maximize=stop_metric.split("@")[0] in MAXIMIZE_METRICS, save_best=is_master))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            booster = xgb.train(params, dtrain, num_boost_round=hps["num_round"], evals=evals,
                                custom_metric=custom, callbacks=callbacks, verbose_eval=False)
    except Exception as e:  # xgboost.core.XGBoostError and friends
        if any(msg in str(e) for msg in _CUSTOMER_ERRORS):
            raise ClientError(str(e)) from e
        raise AlgorithmError(f"XGB train call failed with exception:\n {e}") from e

    model_dir.mkdir(parents=True, exist_ok=True)
    if not is_master:
        return
    location = model_dir / MODEL_NAME
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if framework_version in PICKLE_VERSIONS:
            with open(location, "wb") as f:
                pickle.dump(booster, f)
        else:
            booster.save_model(str(location))


# ------------------------------------------------------------------------------------------------
# Serving
# ------------------------------------------------------------------------------------------------
@dataclass
class XGBoostModel:
    boosters: list  # xgboost.Booster, one per model file (more than one = k-fold ensemble, averaged)
    model_format: str  # "pkl_format" | "xgb_format", as the container names them


def load_model(model_dir: pathlib.Path) -> XGBoostModel:
    """Load every model file in ``model_dir``: pickle first, then ``Booster.load_model``."""
    import xgboost as xgb

    files = common.list_data_files(pathlib.Path(model_dir))
    if not files:
        raise AlgorithmError(f"Unable to load model: no model file in {model_dir}")
    boosters, fmt = [], "xgb_format"
    for path in files:
        try:
            with open(path, "rb") as f:
                booster = pickle.load(f)
            if not isinstance(booster, xgb.Booster):
                raise TypeError(f"pickled object is a {type(booster).__name__}, not a Booster")
            fmt = "pkl_format"
        except Exception as exp_pkl:  # noqa: BLE001 - fall back exactly like the container
            try:
                booster = xgb.Booster()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    booster.load_model(str(path))
            except Exception as exp_xgb:  # noqa: BLE001
                raise AlgorithmError(f"Model at {path} cannot be loaded:\n{exp_pkl}\n{exp_xgb}") from exp_xgb
        boosters.append(booster)
    return XGBoostModel(boosters, fmt)


def _to_dmatrix(body: bytes, media: str):
    import xgboost as xgb

    if media == "text/csv":
        try:
            text = body.strip().decode("utf-8")
            delimiter = common.sniff_csv_delimiter(text.split("\n", 1)[0])
            return xgb.DMatrix(common.read_csv_array(text, delimiter), missing=np.nan)
        except Exception as e:  # noqa: BLE001
            raise common.UnsupportedMediaType("Loading csv data failed with Exception, please ensure data is in "
                                              f"csv format:\n {type(e)}\n {e}") from e
    try:
        data = common.parse_libsvm_lines(body.strip().decode("utf-8").split("\n"), with_label=False)
        return xgb.DMatrix(data.features)
    except Exception as e:  # noqa: BLE001
        raise common.UnsupportedMediaType("Loading libsvm data failed with Exception, please ensure data is in "
                                          f"libsvm format:\n {type(e)}\n {e}") from e


def predict(model: XGBoostModel, body: bytes, content_type: str | None, accept: str | None = None, *,
            batch: bool | None = None) -> tuple[bytes, str]:
    """Score a whole payload in one DMatrix. ``accept`` is ignored (the container always answers
    text/csv). ``batch=None`` reads ``SAGEMAKER_BATCH`` from the environment."""
    if not body:
        raise common.NoContent("")
    media, params = common.parse_content_type(content_type)
    media = {"": "text/libsvm", "libsvm": "text/libsvm", "text/x-libsvm": "text/libsvm", "csv": "text/csv"}.get(
        media, media)
    if media not in ("text/csv", "text/libsvm"):
        why = ("RecordIO-protobuf is not emulated" if "recordio" in media else "use text/csv or text/libsvm")
        raise common.UnsupportedMediaType(f"Content-type {content_type} is not supported by smlocal's XGBoost "
                                          f"emulation ({why}).")
    if media == "text/csv" and params.get("label_size", "1") != "1":
        raise common.UnsupportedMediaType(f"{content_type} is not an accepted csv ContentType. "
                                          "Optional parameter label_size must be equal to 1")
    dtest = _to_dmatrix(body, media)
    try:
        if model.model_format == "pkl_format":
            x, y = model.boosters[0].num_features(), dtest.num_col()
            if media == "text/libsvm" and y > x + 1:
                raise ValueError(f"Feature size of libsvm inference data {y} is larger than feature size of "
                                 f"trained model {x}.")
            if media == "text/libsvm" and y > x:
                # the xgboost of these images ignores feature indices past the model's; today's refuses
                import xgboost

                dtest = xgboost.DMatrix(dtest.get_data()[:, :x])
            if media == "text/csv" and not (x == y or x == y + 1):
                raise ValueError(f"Feature size of csv inference data {y} is not consistent with feature size "
                                 f"of trained model {x}.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preds = [b.predict(dtest, validate_features=False) for b in model.boosters]
    except Exception as e:  # noqa: BLE001
        raise ClientError(f"Unable to evaluate payload provided: {e}") from e
    result = preds[0] if len(preds) == 1 else np.mean(preds, axis=0)
    if batch is None:
        batch = bool(os.environ.get("SAGEMAKER_BATCH"))
    values = result.tolist()
    text = "\n".join(map(str, values)) + "\n" if batch else ",".join(map(str, values))
    return text.encode("utf-8"), "text/csv"


def main(argv: list[str] | None = None) -> int:
    """``python -m smlocal.runtime.algorithms.xgboost_algo train``."""
    return common.run_main(argv, train, DEFAULT_VERSION, FAILURE_STYLE,
                           "smlocal.runtime.algorithms.xgboost_algo")


if __name__ == "__main__":
    sys.exit(main())
