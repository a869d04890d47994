"""Training in the scikit-learn image: the user's script through the real ``sagemaker-training``."""

from __future__ import annotations

from sagemaker_training import environment

from smlocal_container.script_mode import run_user_script

def train(env: environment.Environment) -> None:
    """Runs the job's entry point (the image has no built-in algorithm)."""
    run_user_script(env)


def main() -> None:
    """``SAGEMAKER_TRAINING_MODULE`` entry, called by ``train``."""
    train(environment.Environment())
