"""Built-in XGBoost on several instances: every host trains in one XGBoost cluster.

As ``algorithm_mode/train.py`` of aws/sagemaker-xgboost-container does it: with more than one host
the algorithm waits until every host name resolves, then runs its training function through the
image's ``sagemaker_xgboost_container.distributed.rabit_run`` (smlocal's version of that package,
``runtime/frameworks/xgboost_image``), which first tells every host which hosts have data and then
trains the same boosting rounds on those hosts over XGBoost's own collective communication (the
tracker on the first host, ports 9099 and 9100). The first host is the master: it alone saves the
model, and XGBoost prints the evaluation lines on it (rank 0). A host whose shard of the training
data is empty, or that has a validation channel without data, logs the container's warning and
leaves the cluster with exit code 0; no host with data fails the job ("No hosts received training
data.").
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sys
from dataclasses import dataclass
from typing import Callable

from smlocal.runtime import frameworks

DOCS_DIVIDE_DATA = ("https://docs.aws.amazon.com/sagemaker/latest/dg/xgboost.html"
                    "#Instance-XGBoost-distributed-training-divide-data")
_LOG_FORMAT = "[%(asctime)s:%(levelname)s] %(message)s"  # the container's: [2024-01-02:03:04:05:INFO] ...
_LOG_DATE = "%Y-%m-%d:%H:%M:%S"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cluster:
    """The job's hosts (sorted as the tracker ranks them) and this one."""

    hosts: tuple[str, ...]
    current_host: str

    @property
    def distributed(self) -> bool:
        return len(self.hosts) > 1


def read_cluster(opt_ml: pathlib.Path) -> Cluster:
    """The hosts of ``input/config/resourceconfig.json`` (else ``SM_HOSTS``/``SM_CURRENT_HOST``,
    else one host ``algo-1``)."""
    path = pathlib.Path(opt_ml) / "input" / "config" / "resourceconfig.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        config = {}
    if not isinstance(config, dict):
        config = {}
    hosts = config.get("hosts") or _json_env("SM_HOSTS") or ["algo-1"]
    current = config.get("current_host") or os.environ.get("SM_CURRENT_HOST") or hosts[0]
    return Cluster(tuple(sorted(str(h) for h in hosts)), str(current))


def _json_env(name: str) -> list | None:
    try:
        value = json.loads(os.environ.get(name) or "null")
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def exclusion_warning(cluster: Cluster, *, has_train: bool, has_validation: bool,
                      validation_channel: str | None) -> str | None:
    """Why this host takes no part in training (the container's warning), or None."""
    host = cluster.current_host
    if not has_train:
        return (f"Host {host} does not have training data. Will broadcast to cluster and this host {host} will "
                f"not be used in distributed training. Please divide the training data across instances properly. "
                f"See {DOCS_DIVIDE_DATA}. ")
    if validation_channel and not has_validation:
        return (f"Host {host} does not have validation data in the validation channel : {validation_channel}. "
                f"Will broadcast to cluster and this host {host} will not be used in distributed training. "
                f"Please divide the validation data across instances properly. See {DOCS_DIVIDE_DATA}. ")
    return None


def run(train_job: Callable[[bool], None], cluster: Cluster, *, has_train: bool, has_validation: bool,
        validation_channel: str | None) -> None:
    """Runs ``train_job(is_master)`` on this host as one worker of the job's XGBoost cluster.

    Raises:
        RuntimeError: No host of the job has training data (raised on every host).
        SystemExit: This host has no data: it leaves with code 0 once the others know.
    """
    _configure_logging()
    distributed = image_distributed()
    logger.info("Distributed node training with %s hosts: %s", len(cluster.hosts), list(cluster.hosts))
    distributed.wait_hostname_resolution(cluster.hosts)
    warning = exclusion_warning(cluster, has_train=has_train, has_validation=has_validation,
                                validation_channel=validation_channel)
    if warning:
        logger.warning(warning)
    distributed.rabit_run(exec_fun=lambda is_master: train_job(is_master), args={},
                          include_in_training=warning is None, hosts=list(cluster.hosts),
                          current_host=cluster.current_host, update_rabit_args=True)


def image_distributed():
    """The XGBoost image's ``sagemaker_xgboost_container.distributed`` (on ``sys.path`` in the
    image; added here for the process backend, after the entries already there)."""
    for folder in frameworks.package_dirs("xgboost"):
        if folder not in sys.path:
            sys.path.append(folder)
    from sagemaker_xgboost_container import distributed

    return distributed


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(_LOG_FORMAT, _LOG_DATE))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
