"""The metrics of SageMaker's built-in algorithms: what their training jobs report, what can be tuned.

Pure data and lookups (no I/O, no numpy), shared by the algorithm emulations (which print the log
lines), the training runtime (which applies the regexes when a job of a built-in image has no
MetricDefinitions, as the service does) and the tuning service (which knows each built-in
algorithm's objective metrics without MetricDefinitions).

Provenance (facts, not code):
  * XGBoost objective metrics and their directions: AWS docs "Tune an XGBoost Model"
    (docs.aws.amazon.com/sagemaker/latest/dg/xgboost-tuning.html: validation:accuracy, auc, error, f1,
    logloss, mae, map, merror, mlogloss, mse, ndcg, rmse) and the container's wider list
    (aws/sagemaker-xgboost-container ``constants/xgb_constants.py`` XGB_MAXIMIZE_METRICS /
    XGB_MINIMIZE_METRICS, used by ``algorithm_mode/metrics.py`` and by its validation of
    ``_tuning_objective_metric``: ``validation:<metric>`` for each).
  * XGBoost reported metrics: DescribeTrainingJob of built-in XGBoost jobs on AWS lists
    ``train:<m>`` and ``validation:<m>`` definitions with the regex
    ``.*\\[[0-9]+\\].*#011<channel>-<m>:([-+]?[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?).*`` and a
    regression job's FinalMetricDataList holds ``train:rmse`` and ``validation:rmse``.
  * k-NN: AWS docs "Tune a k-NN Model" (kNN-tuning.html): ``test:accuracy`` (classifier, Maximize)
    and ``test:mse`` (regressor, Minimize); the line format is the first-party algorithms'
    ``#quality_metric: host=<host>, test <metric> <score|loss>=<value>``.
"""

from __future__ import annotations

MAXIMIZE, MINIMIZE = "Maximize", "Minimize"
NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

XGBOOST_MAXIMIZE = ("accuracy", "auc", "aucpr", "balanced_accuracy", "f1", "f1_binary", "f1_macro", "map", "ndcg",
                    "precision", "precision_macro", "precision_micro", "r2", "recall", "recall_macro",
                    "recall_micro")
XGBOOST_MINIMIZE = ("aft-nloglik", "cox-nloglik", "error", "gamma-deviance", "gamma-nloglik",
                    "interval-regression-accuracy", "logloss", "mae", "mape", "merror", "mlogloss", "mphe", "mse",
                    "poisson-nloglik", "rmse", "rmsle", "tweedie-nloglik")
XGBOOST_CHANNELS = ("train", "validation")


def xgboost_regex(channel: str, metric: str) -> str:
    """The regex AWS applies to a built-in XGBoost job's log for ``<channel>:<metric>``."""
    return f".*\\[[0-9]+\\].*#011{channel}-{metric}:{NUMBER}.*"


def _xgboost_definitions() -> list[dict]:
    return [{"Name": f"{channel}:{metric}", "Regex": xgboost_regex(channel, metric)}
            for channel in XGBOOST_CHANNELS for metric in XGBOOST_MAXIMIZE + XGBOOST_MINIMIZE]


def _xgboost_objectives() -> dict[str, str]:
    found = {f"validation:{m}": MAXIMIZE for m in XGBOOST_MAXIMIZE}
    found.update({f"validation:{m}": MINIMIZE for m in XGBOOST_MINIMIZE})
    return found


def knn_line(metric: str, value: float, host: str = "algo-1") -> str:
    """The log line a k-NN job prints for ``test:<metric>`` (accuracy is a score, mse a loss)."""
    kind = "score" if metric == "accuracy" else "loss"
    return f"#quality_metric: host={host}, test {metric} <{kind}>={value!r}"


_KNN_DEFINITIONS = [
    {"Name": "test:accuracy", "Regex": r"#quality_metric: host=\S+, test accuracy <score>=(\S+)"},
    {"Name": "test:mse", "Regex": r"#quality_metric: host=\S+, test mse <loss>=(\S+)"},
]
_KNN_OBJECTIVES = {"test:accuracy": MAXIMIZE, "test:mse": MINIMIZE}

_DEFINITIONS = {"xgboost": _xgboost_definitions(), "knn": _KNN_DEFINITIONS}
_OBJECTIVES = {"xgboost": _xgboost_objectives(), "knn": _KNN_OBJECTIVES}


def definitions(algorithm: str) -> list[dict]:
    """MetricDefinitions (Name, Regex) of every metric a built-in algorithm's training job reports."""
    return [dict(d) for d in _DEFINITIONS.get(algorithm, [])]


def objectives(algorithm: str) -> dict[str, str]:
    """The metrics a built-in algorithm can be tuned on, each with the direction its docs give."""
    return dict(_OBJECTIVES.get(algorithm, {}))

