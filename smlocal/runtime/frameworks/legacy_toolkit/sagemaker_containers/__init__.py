"""smlocal's ``sagemaker_containers``: the legacy SageMaker container toolkit's public interface.

The XGBoost and scikit-learn images ship ``sagemaker-containers`` 2.8.6.post2, and script-mode
code written for them imports it (``sagemaker_containers.training_env()``,
``sagemaker_containers.beta.framework``). This package offers the parts user code uses, with the
same module paths, names, signatures, return values and error types; the container-side
machinery (web server, MPI, trainer) is the emulator's own and is not offered here.
"""

from __future__ import annotations

__version__ = "2.8.6.post2"


def training_env():
    """The training environment of this job, read from ``/opt/ml/input/config``.

    Returns:
        sagemaker_containers._env.TrainingEnv: hyperparameters, channels, hosts, paths ...
    """
    from sagemaker_containers import _env

    return _env.TrainingEnv(
        resource_config=_env.read_resource_config(),
        input_data_config=_env.read_input_data_config(),
        hyperparameters=_env.read_hyperparameters(),
    )
