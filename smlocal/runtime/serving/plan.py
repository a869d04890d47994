"""How each container of a SageMaker Model is served locally (pure: no I/O).

A Model names one ``PrimaryContainer`` or a list of ``Containers`` (an inference pipeline). Each
container is an image URI plus model data and environment. Without Docker, smlocal serves it with
its own worker process (:mod:`smlocal.runtime.serving.worker`), choosing a *handler* that behaves
like the real image's model server:

* ``sklearn``: the scikit-learn image (``sagemaker_sklearn_container.serving`` on the legacy
  ``sagemaker-containers`` toolkit) running the user module named by ``SAGEMAKER_PROGRAM``;
* ``xgboost``: the XGBoost image in framework (script) mode (its MMS handler service);
* ``toolkit``: other Python framework images (PyTorch, MXNet, Hugging Face) and images mapped with
  ``kind = "script"``: the ``sagemaker-inference`` toolkit's handler contract;
* ``algorithm``: built-in XGBoost (no entry point) and k-NN, served by smlocal's emulations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from smlocal.runtime.images import Runtime

WORKER_MODULE = "smlocal.runtime.serving.worker"
SOCKET_NAME = "serving.sock"
SANDBOX_ROOT = "/opt/ml"
SANDBOX_SOCKET = f"{SANDBOX_ROOT}/{SOCKET_NAME}"
MODEL_DIR = f"{SANDBOX_ROOT}/model"
CODE_DIR = f"{SANDBOX_ROOT}/code"
REPACKED_CODE_DIR = f"{MODEL_DIR}/code"  # where the SDK's repacked model.tar.gz puts the code

# what the host tells the worker
ENV_SOCKET = "SMLOCAL_SERVING_SOCKET"
ENV_HANDLER = "SMLOCAL_SERVING_HANDLER"
ENV_ALGORITHM = "SMLOCAL_ALGORITHM"
ENV_ALGO_VERSION = "SMLOCAL_ALGO_VERSION"
ENV_CODE_DIR = "SMLOCAL_CODE_DIR"
ENV_CONTAINER = "SMLOCAL_CONTAINER_HOSTNAME"

HANDLERS = ("sklearn", "xgboost", "toolkit", "algorithm")
_FRAMEWORK_HANDLERS = {"sklearn": "sklearn", "xgboost": "xgboost", "pytorch": "toolkit", "mxnet": "toolkit",
                       "huggingface": "toolkit"}


class PlanError(Exception):
    """The model cannot be served locally; the message says why and what to do."""


@dataclass(frozen=True)
class ModelData:
    """Where a container's model artefacts come from.

    Attributes:
        uri: S3 URI (an object for ``compressed``, a prefix otherwise).
        compressed: True for a ``model.tar.gz`` (ModelDataUrl, or CompressionType Gzip).
    """

    uri: str
    compressed: bool = True


@dataclass(frozen=True)
class ContainerPlan:
    """One container of a Model, resolved to a local handler.

    Attributes:
        hostname: The container's name in errors and pipelines: ``primary`` for a single container,
            else its ContainerHostname or ``container-<n>``.
        image: The image URI as given.
        handler: One of :data:`HANDLERS`.
        algorithm, version: For ``algorithm``: ``xgboost``/``knn`` and the image version.
        framework: For framework images: ``sklearn``, ``xgboost``, ``pytorch`` ...
        program: ``SAGEMAKER_PROGRAM`` (the entry point file), if any.
        submit_directory: ``SAGEMAKER_SUBMIT_DIRECTORY`` (S3 URI, ``file://`` path or
            ``/opt/ml/model/code``), if any.
        model_data: The model artefacts, or None when the container has none.
        environment: The container's Environment as given.
    """

    hostname: str
    image: str
    handler: str
    algorithm: str | None = None
    version: str | None = None
    framework: str | None = None
    program: str | None = None
    submit_directory: str | None = None
    model_data: ModelData | None = None
    environment: Mapping[str, str] = field(default_factory=dict)


def container_hostnames(containers: list[Mapping]) -> list[str]:
    """``primary`` for a lone container; ContainerHostname or ``container-<n>`` in a pipeline."""
    if len(containers) == 1 and not containers[0].get("ContainerHostname"):
        return ["primary"]
    return [c.get("ContainerHostname") or f"container-{i}" for i, c in enumerate(containers, 1)]


def model_data(container: Mapping) -> ModelData | None:
    """The container's artefacts from ModelDataUrl or ModelDataSource.S3DataSource."""
    if container.get("ModelDataUrl"):
        return ModelData(container["ModelDataUrl"], compressed=True)
    source = (container.get("ModelDataSource") or {}).get("S3DataSource")
    if source:
        gzip = source.get("CompressionType", "None") == "Gzip"
        if not gzip and source.get("S3DataType") == "S3Object":
            raise PlanError("ModelDataSource with S3DataType S3Object must use CompressionType Gzip.")
        return ModelData(source["S3Uri"], compressed=gzip)
    return None


def plan_containers(
    containers: list[Mapping], resolve: Callable[[str, bool], Runtime]
) -> list[ContainerPlan]:
    """Resolves every container of a Model, or raises PlanError naming the first that cannot run.

    Args:
        containers: PrimaryContainer (as a one-element list) or Containers, as in CreateModel.
        resolve: ``(image, has_entry_point) -> Runtime``: images.resolve_runtime plus the
            configured ``[tool.smlocal.images]`` mappings; raises ``UnresolvableImage``.
    """
    if not containers:
        raise PlanError("The model has no container to serve.")
    plans = []
    for hostname, container in zip(container_hostnames(containers), containers):
        plans.append(_plan_one(hostname, container, resolve))
    return plans


def _plan_one(hostname: str, container: Mapping, resolve: Callable[[str, bool], Runtime]) -> ContainerPlan:
    if container.get("Mode") == "MultiModel" or container.get("MultiModelConfig"):
        raise PlanError(f"Container {hostname}: multi-model endpoints (Mode MultiModel) are not emulated by "
                        "smlocal; deploy one model per endpoint.")
    image = container.get("Image")
    if not image:  # CreateModel checks for one, and resolves a ModelPackageName to the package's containers
        if container.get("ModelPackageName"):
            raise PlanError(f"Container {hostname}: its ModelPackageName {container['ModelPackageName']} was "
                            "not resolved to the package's containers when the model was created (a model "
                            "stored by an earlier smlocal): create the model again.")
        raise PlanError(f"Container {hostname}: no Image to serve.")
    env = dict(container.get("Environment") or {})
    program = env.get("SAGEMAKER_PROGRAM") or None
    runtime = resolve(image, bool(program))
    data = model_data(container)
    common = dict(hostname=hostname, image=image, environment=env, model_data=data, program=program,
                  submit_directory=env.get("SAGEMAKER_SUBMIT_DIRECTORY") or None)
    if runtime.kind == "algorithm":
        if data is None:
            raise PlanError(f"Container {hostname}: built-in algorithm {runtime.algorithm} needs model data "
                            "(ModelDataUrl).")
        return ContainerPlan(handler="algorithm", algorithm=runtime.algorithm, version=runtime.version, **common)
    if runtime.kind == "framework":
        handler = _FRAMEWORK_HANDLERS.get(runtime.framework or "")
        if handler is None:
            raise PlanError(f"Container {hostname}: smlocal does not emulate the {runtime.framework} serving "
                            f"container ({image}); it serves scikit-learn, XGBoost, PyTorch, MXNet and "
                            "Hugging Face script-mode models.")
        framework = runtime.framework
    elif runtime.kind == "script":
        handler, framework = "toolkit", None
    elif runtime.kind == "python":
        raise PlanError(f"Container {hostname}: image {image} is a SageMaker Python image (base Python or "
                        "SageMaker Distribution) with no model server: SageMaker runs the container with "
                        "'serve', which it does not have. Serve the model with a framework inference image "
                        "(scikit-learn, XGBoost, PyTorch, MXNet, Hugging Face) or map the image with "
                        "kind = \"script\" in [tool.smlocal.images].")
    else:
        raise PlanError(f"Container {hostname}: image {image} is mapped to a custom command; smlocal serves "
                        "custom images only when mapped with kind = \"script\" (a Python inference script "
                        "with model_fn/input_fn/predict_fn/output_fn named by SAGEMAKER_PROGRAM).")
    if not program:
        raise PlanError(f"Container {hostname}: the {framework or 'script'} serving container needs an inference "
                        "script: set SAGEMAKER_PROGRAM (and SAGEMAKER_SUBMIT_DIRECTORY) in the container "
                        "Environment, as the SageMaker SDK's framework models do.")
    return ContainerPlan(handler=handler, framework=framework, **common)


def module_name(program: str) -> str:
    """The user module the serving toolkits import for ``SAGEMAKER_PROGRAM`` (``inference.py`` ->
    ``inference``)."""
    name = program.rsplit("/", 1)[-1]
    return name[:-3] if name.endswith(".py") else name


def worker_environment(plan: ContainerPlan, *, batch: bool, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The serving-specific environment of the worker (the caller adds PATH, AWS settings ...).

    The container's own Environment is included (user code reads it), then the toolkit variables
    the real images set, then smlocal's own ``SMLOCAL_*`` settings, which win.
    """
    env = {
        "SM_MODEL_DIR": MODEL_DIR,
        "SAGEMAKER_BIND_TO_PORT": "8080",
    }
    env.update({str(k): str(v) for k, v in plan.environment.items()})
    env.update(extra or {})
    if batch:
        env["SAGEMAKER_BATCH"] = "true"
    env.update({
        ENV_SOCKET: SANDBOX_SOCKET,
        ENV_HANDLER: plan.handler,
        ENV_CODE_DIR: CODE_DIR,
        ENV_CONTAINER: plan.hostname,
    })
    if plan.handler == "algorithm":
        env[ENV_ALGORITHM] = plan.algorithm or ""
        env[ENV_ALGO_VERSION] = plan.version or ""
    return env
