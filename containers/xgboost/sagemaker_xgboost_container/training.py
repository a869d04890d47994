"""Training in the XGBoost image: script mode or the built-in algorithm.

As in AWS's image, a job with an entry point (``sagemaker_program``) runs it through the real
``sagemaker-training`` toolkit; a job without one runs the built-in XGBoost algorithm, here
smlocal's emulation (``smlocal.runtime.algorithms.xgboost_algo``) on the image's ``xgboost``.
"""

from __future__ import annotations

import logging
import os
import sys

from sagemaker_training import environment

from smlocal_container.script_mode import run_user_script

logger = logging.getLogger(__name__)


def train(env: environment.Environment) -> int:
    """Runs the job; returns the exit code of the built-in algorithm (script mode raises on
    failure, as the toolkit expects)."""
    if env.user_entry_point:
        run_user_script(env)
        return 0
    logger.info("Running the built-in XGBoost algorithm.")
    from smlocal.runtime.algorithms import xgboost_algo

    # the artefact format follows the version the job's image names (the runner may pass it)
    if not os.environ.get("SMLOCAL_ALGO_VERSION"):
        os.environ["SMLOCAL_ALGO_VERSION"] = os.environ.get("SAGEMAKER_XGBOOST_VERSION") or "3.0-5"
    return xgboost_algo.main(["train"])


def main() -> None:
    """``SAGEMAKER_TRAINING_MODULE`` entry, called by ``train``."""
    code = train(environment.Environment())
    if code:
        # the algorithm wrote /opt/ml/output/failure itself; exit without the toolkit adding its own
        sys.stdout.flush()
        os._exit(code)
