"""Training in the scikit-learn image: the user's script through the real ``sagemaker-training``."""

from __future__ import annotations

import logging

from sagemaker_training import entry_point, environment, runner

logger = logging.getLogger(__name__)


def train(env: environment.Environment) -> None:
    """Runs the job's entry point (``sagemaker_program``) from its source dir with the job's
    hyperparameters as command-line arguments and the ``SM_*`` variables."""
    logger.info("Invoking user training script.")
    entry_point.run(
        uri=env.module_dir,
        user_entry_point=env.user_entry_point,
        args=env.to_cmd_args(),
        env_vars=env.to_env_vars(),
        runner_type=runner.ProcessRunnerType,
    )


def main() -> None:
    """``SAGEMAKER_TRAINING_MODULE`` entry, called by ``train``."""
    train(environment.Environment())
