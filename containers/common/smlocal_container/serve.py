"""Serving inside smlocal's framework images: the SageMaker hosting contract over TCP.

SageMaker starts the image with ``serve``, model artefacts unpacked in ``/opt/ml/model``, and expects
HTTP on port 8080 (``SAGEMAKER_BIND_TO_PORT`` when set): ``GET /ping`` answers 200 once the model is
loaded and ``POST /invocations`` predicts.

The real images serve user code through their toolkits' model servers (the scikit-learn image's
gunicorn/nginx worker from ``sagemaker-containers``; the XGBoost image's Flask app for the built-in
mode and MMS -- Java -- for script mode). smlocal's images reuse smlocal's own serving worker
handlers instead (``smlocal.runtime.serving.handlers``: the same user-module hooks, defaults and
error statuses the process backend serves with), behind the worker's own server (``worker.run``
with ``worker.serve_tcp``) on TCP.

The inference code comes, as on the real images, from ``SAGEMAKER_SUBMIT_DIRECTORY`` (an ``s3://``
``sourcedir.tar.gz`` fetched with the real ``sagemaker-training`` toolkit's
``files.download_and_extract``, honouring ``S3_ENDPOINT_URL``/``AWS_ENDPOINT_URL*``; a local folder or
tar; or ``/opt/ml/model/code`` of a repacked model) and ``SAGEMAKER_PROGRAM``; without
``SAGEMAKER_SUBMIT_DIRECTORY``, from ``/opt/ml/model/code`` when the model has one, else
``/opt/ml/code``.
"""

from __future__ import annotations

import logging
import os

from smlocal.runtime.serving import handlers, plan, worker

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8080


def code_dir(env: dict[str, str]) -> str:
    """Where the inference code is, fetching ``SAGEMAKER_SUBMIT_DIRECTORY`` first when needed."""
    source = env.get("SAGEMAKER_SUBMIT_DIRECTORY", "").strip()
    repacked = plan.REPACKED_CODE_DIR
    if not source:
        return repacked if os.path.isdir(repacked) else plan.CODE_DIR
    if source.startswith("file://"):
        source = source[len("file://"):]
    if os.path.isdir(source):
        return source.rstrip("/") or "/"
    from sagemaker_training import files  # the real toolkit: s3:// or a local tar

    files.download_and_extract(uri=source, path=plan.CODE_DIR)
    return plan.CODE_DIR


def handler_environment(framework: str, env: dict[str, str]) -> dict[str, str]:
    """The worker handler settings for this image: the framework handler when the model has an
    inference program, else (XGBoost) the built-in algorithm's."""
    env = dict(env)
    if framework == "xgboost" and not env.get("SAGEMAKER_PROGRAM"):
        env[plan.ENV_HANDLER] = "algorithm"
        env[plan.ENV_ALGORITHM] = "xgboost"
        env.setdefault(plan.ENV_ALGO_VERSION, env.get("SAGEMAKER_XGBOOST_VERSION", ""))
        return env
    if not env.get("SAGEMAKER_PROGRAM"):
        raise ValueError("SAGEMAKER_PROGRAM is not set: this image serves a model with the inference "
                         "script it names (model_fn, and optionally input_fn/predict_fn/output_fn)")
    env[plan.ENV_HANDLER] = framework
    env[plan.ENV_CODE_DIR] = code_dir(env)
    return env


def run(framework: str) -> int:
    """Loads the model and serves until SIGTERM/SIGINT. Returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT") or DEFAULT_PORT)

    def load() -> handlers.Handler:
        env = handler_environment(framework, dict(os.environ))
        os.environ.update({k: v for k, v in env.items() if k.startswith("SMLOCAL_")})
        return handlers.load_handler(env)

    def bind(handler: handlers.Handler) -> worker.TCPServer:
        logger.info("serving %s model on port %d", framework, port)
        return worker.serve_tcp(port, handler)

    return worker.run(load, bind)
