"""``sagemaker_containers.beta.framework``: the toolkit's modules under their public names.

``content_types``, ``encoders``, ``env``, ``errors``, ``mapping``, ``modules``, ``transformer`` and
``worker`` are offered, and ``entry_point`` with its host-name resolution helpers only; the
container machinery (``server``, ``mpi``, ``runner``, ``trainer``, ...) is smlocal's own and
importing it says so.
"""

from __future__ import annotations

from sagemaker_containers import _content_types as content_types
from sagemaker_containers import _encoders as encoders
from sagemaker_containers import _env as env
from sagemaker_containers import _errors as errors
from sagemaker_containers import _mapping as mapping
from sagemaker_containers import _modules as modules
from sagemaker_containers import _transformer as transformer
from sagemaker_containers import _worker as worker
from sagemaker_containers import entry_point

__all__ = ["content_types", "encoders", "entry_point", "env", "errors", "mapping", "modules", "training_env",
           "transformer", "worker"]
_CONTAINER_SIDE = ("files", "functions", "logging", "mpi", "params", "process", "runner", "server", "trainer")


def training_env(resource_config=None, input_data_config=None, hyperparameters=None):
    """The training environment (``sagemaker_containers.training_env()`` with overrides)."""
    return env.TrainingEnv(resource_config=resource_config, input_data_config=input_data_config,
                           hyperparameters=hyperparameters)


def __getattr__(name):
    if name in _CONTAINER_SIDE:
        raise ImportError(f"sagemaker_containers.beta.framework.{name} is part of the container's own machinery; "
                          "smlocal runs the job itself and does not offer it to user code")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
