"""Script mode in smlocal's framework images: the job's entry point run by the real ``sagemaker-training``."""

from __future__ import annotations

import logging

from sagemaker_training import entry_point, environment, runner

logger = logging.getLogger(__name__)


def run_user_script(env: environment.Environment) -> None:
    """Runs the job's entry point (``sagemaker_program``) from its source dir with the job's
    hyperparameters as command-line arguments and the ``SM_*`` variables; raises on failure, as
    the toolkit expects."""
    logger.info("Invoking user training script.")
    entry_point.run(
        uri=env.module_dir,
        user_entry_point=env.user_entry_point,
        args=env.to_cmd_args(),
        env_vars=env.to_env_vars(),
        runner_type=runner.ProcessRunnerType,
    )
