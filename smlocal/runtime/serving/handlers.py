"""What answers ``/invocations`` inside the serving worker, one class per serving contract.

Each handler loads the model once (``__init__``: a failure there means the container never passes
its ping check) and then turns a request (body, Content-Type, Accept) into a :class:`Response`.
The behaviours follow the real images:

* :class:`SklearnHandler` -- ``sagemaker_sklearn_container.serving`` on ``sagemaker-containers``:
  the user module's ``model_fn`` is required; ``input_fn``/``predict_fn``/``output_fn`` default to
  decode-as-float32 / ``model.predict`` / encode-as-Accept (``sagemaker_containers._encoders``,
  smlocal's version of the image's package, on the worker's ``PYTHONPATH``); ``transform_fn``
  replaces the three.
  The toolkit wraps every function so that *any* error (an unsupported content type included)
  becomes Flask's ``500 Internal Server Error`` HTML page; the traceback goes to the log.
* :class:`XGBoostFrameworkHandler` -- the XGBoost image with a user module (MMS): CSV, LIBSVM and
  RecordIO-protobuf are decoded to a DMatrix by ``sagemaker_xgboost_container.encoder``
  (:mod:`smlocal.runtime.frameworks`); an error is MMS's ``503 {"code": 503, ..., "Prediction failed"}``.
* :class:`ToolkitHandler` -- ``sagemaker_inference.transformer.Transformer``: errors are 500 with
  ``"<message>\\n<traceback>"`` (or the status of a ``BaseInferenceToolkitError``).
* :class:`AlgorithmHandler` -- smlocal's built-in XGBoost / k-NN emulations (``status_code`` of
  their errors; an empty body is ``204``).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from smlocal.runtime.serving import codecs, plan

DEFAULT_ACCEPT_ENV = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
ALGORITHM_MODULES = {
    "xgboost": "smlocal.runtime.algorithms.xgboost_algo",
    "knn": "smlocal.runtime.algorithms.knn_algo",
}
FLASK_500 = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n'
    "<title>500 Internal Server Error</title>\n"
    "<h1>Internal Server Error</h1>\n"
    "<p>The server encountered an internal error and was unable to complete your request. Either the "
    "server is overloaded or there is an error in the application.</p>\n"
)
MMS_PREDICTION_FAILED = '{\n  "code": 503,\n  "type": "InternalServerException",\n  "message": "Prediction failed"\n}\n'
_MODEL_FN_MISSING = ("\nPlease provide a model_fn implementation.\n"
                     "See documentation for model_fn at {url}\n")
_PREDICT_FN_MISSING = ("\nPlease provide a predict_fn implementation.\n"
                       "See documentation for predict_fn at https://sagemaker.readthedocs.io/en/stable/\n")


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str | None = None


class Handler:
    """Base class: ``invoke`` answers /invocations, ``execution_parameters`` /execution-parameters."""

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Response:
        raise NotImplementedError

    def execution_parameters(self) -> Response | None:
        return None


def _log_exception(where: str) -> None:
    print(f"ERROR in app: Exception on {where}", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()


def _as_bytes(data: Any) -> bytes:
    if data is None:
        return b""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (list, tuple)) and all(isinstance(p, (bytes, str)) for p in data):
        return b"".join(_as_bytes(p) for p in data)
    return str(data).encode("utf-8")


def import_user_module(env: Mapping[str, str]):
    """Imports the module named by SAGEMAKER_PROGRAM from the code directory."""
    code_dir = env.get(plan.ENV_CODE_DIR, plan.CODE_DIR)
    if code_dir not in sys.path:
        sys.path.insert(0, code_dir)
    return importlib.import_module(plan.module_name(env["SAGEMAKER_PROGRAM"]))


def _flask_view_result(result: Any, default_status: int = 200) -> Response:
    """What Flask makes of a view's return value: tuple (body, mimetype), a Response-like object,
    or a string/bytes (a text/html page)."""
    if isinstance(result, tuple):
        body, mimetype = result[0], result[1] if len(result) > 1 else codecs.JSON
        return Response(default_status, _as_bytes(body), codecs.text_mimetype(mimetype))
    if hasattr(result, "get_data") and hasattr(result, "status_code"):
        return Response(int(result.status_code), bytes(result.get_data()),
                        getattr(result, "content_type", None) or getattr(result, "mimetype", None))
    return Response(default_status, _as_bytes(result), "text/html; charset=utf-8")


class SklearnHandler(Handler):
    """The scikit-learn image's Flask worker (``sagemaker_containers`` Transformer + Worker)."""

    def __init__(self, env: Mapping[str, str]):
        module = import_user_module(env)
        model_fn = getattr(module, "model_fn", None)
        self._transform_fn = getattr(module, "transform_fn", None)
        self._input_fn = getattr(module, "input_fn", None)
        self._predict_fn = getattr(module, "predict_fn", None)
        self._output_fn = getattr(module, "output_fn", None)
        if self._transform_fn and (self._input_fn or self._predict_fn or self._output_fn):
            raise ValueError("Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn")
        self._execution_parameters_fn = getattr(module, "execution_parameters_fn", None)
        self._default_accept = env.get(DEFAULT_ACCEPT_ENV, codecs.JSON)
        if model_fn is None:
            raise NotImplementedError(_MODEL_FN_MISSING.format(url="https://github.com/aws/sagemaker-python-sdk"))
        self.model = model_fn(plan.MODEL_DIR)

    @staticmethod
    def default_input_fn(input_data: Any, content_type: str) -> Any:
        from sagemaker_containers import _encoders  # the image's package, on the worker's path

        array = _encoders.decode(input_data, content_type)
        if content_type in codecs.UTF8_TYPES:
            import numpy as np

            return array.astype(np.float32)
        return array

    @staticmethod
    def default_predict_fn(input_data: Any, model: Any) -> Any:
        return model.predict(input_data)

    @staticmethod
    def default_output_fn(prediction: Any, accept: str) -> Response:
        from sagemaker_containers import _encoders

        return Response(200, _as_bytes(_encoders.encode(prediction, accept)), codecs.text_mimetype(accept))

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Response:
        content_type = content_type or codecs.JSON
        if not accept or accept == codecs.ANY:
            accept = self._default_accept
        content = body.decode("utf-8", "replace") if content_type in codecs.UTF8_TYPES else body
        try:
            if self._transform_fn is not None:
                return _flask_view_result(self._transform_fn(self.model, content, content_type, accept))
            data = (self._input_fn or self.default_input_fn)(content, content_type)
            prediction = (self._predict_fn or self.default_predict_fn)(data, self.model)
            result = (self._output_fn or self.default_output_fn)(prediction, accept)
            return result if isinstance(result, Response) else _flask_view_result(result)
        except Exception:  # noqa: BLE001 - the toolkit turns every error into Flask's 500 page
            _log_exception("/invocations [POST]")
            return Response(500, FLASK_500.encode(), "text/html")

    def execution_parameters(self) -> Response | None:
        if self._execution_parameters_fn is None:
            return None
        try:
            return _flask_view_result(self._execution_parameters_fn())
        except Exception:  # noqa: BLE001
            _log_exception("/execution-parameters [GET]")
            return Response(500, FLASK_500.encode(), "text/html")


def _call_with_optional_context(func: Callable, *args: Any) -> Any:
    """The toolkit passes a ``context`` argument to handler functions that take one more."""
    try:
        count = len(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        count = len(args)
    if count == len(args) + 1:
        return func(*args, None)
    if count != len(args):
        raise TypeError(f"{func.__name__} takes {count} arguments but {len(args)} were given.")
    return func(*args)


class _MMSHandler(Handler):
    """Shared by the MMS-based images: user functions, defaults, Accept/Content-Type handling."""

    model_fn_doc = "https://sagemaker.readthedocs.io/en/stable/"

    def __init__(self, env: Mapping[str, str]):
        module = import_user_module(env)
        self._default_accept = env.get(DEFAULT_ACCEPT_ENV, codecs.JSON)
        model_fn = getattr(module, "model_fn", None)
        transform_fn = getattr(module, "transform_fn", None)
        self._input_fn = getattr(module, "input_fn", None) or self.default_input_fn
        self._predict_fn = getattr(module, "predict_fn", None) or self.default_predict_fn
        self._output_fn = getattr(module, "output_fn", None) or self.default_output_fn
        if transform_fn and any(getattr(module, n, None) for n in ("input_fn", "predict_fn", "output_fn")):
            raise ValueError("Cannot use transform_fn implementation in conjunction with input_fn, predict_fn, "
                             "and/or output_fn implementation")
        self._transform_fn = transform_fn or self._default_transform
        if model_fn is None:
            raise NotImplementedError(_MODEL_FN_MISSING.format(url=self.model_fn_doc))
        self.model = _call_with_optional_context(model_fn, plan.MODEL_DIR)

    def default_input_fn(self, input_data: Any, content_type: str) -> Any:
        return codecs.tk_decode(input_data, content_type)

    def default_predict_fn(self, data: Any, model: Any) -> Any:
        raise NotImplementedError(_PREDICT_FN_MISSING)

    def default_output_fn(self, prediction: Any, accept: str) -> Any:
        return codecs.tk_encode(prediction, accept), accept

    def _default_transform(self, model: Any, input_data: Any, content_type: str, accept: str) -> Any:
        data = _call_with_optional_context(self._input_fn, input_data, content_type)
        prediction = _call_with_optional_context(self._predict_fn, data, model)
        return _call_with_optional_context(self._output_fn, prediction, accept)

    def _transform(self, body: bytes, content_type: str | None, accept: str | None) -> Response:
        if not accept or accept == codecs.ANY:
            accept = self._default_accept
        data: Any = body
        if content_type in codecs.UTF8_TYPES or (content_type or "").startswith("text/"):
            data = body.decode("utf-8", "replace")
        result = _call_with_optional_context(self._transform_fn, self.model, data, content_type, accept)
        if isinstance(result, tuple):
            return Response(200, _as_bytes(result[0]), result[1])
        return Response(200, _as_bytes(result), accept)


class ToolkitHandler(_MMSHandler):
    """``sagemaker_inference.transformer.Transformer`` behind MMS/TorchServe."""

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Response:
        try:
            return self._transform(body, content_type, accept)
        except Exception as exc:  # noqa: BLE001 - the toolkit answers every error with its status
            _log_exception("/invocations [POST]")
            status = getattr(exc, "status_code", None) if hasattr(exc, "phrase") else None
            message = getattr(exc, "message", None) or str(exc)
            return Response(int(status or 500), f"{message}\n{traceback.format_exc()}".encode(), "text/plain")


class XGBoostFrameworkHandler(_MMSHandler):
    """The XGBoost image serving a user module (its MMS handler service)."""

    model_fn_doc = "https://github.com/aws/sagemaker-python-sdk"

    def default_input_fn(self, input_data: Any, content_type: str) -> Any:
        # the image's own decoder (CSV, LIBSVM, RecordIO-protobuf to DMatrix), on the worker's path
        from sagemaker_xgboost_container import encoder

        return encoder.decode(input_data, content_type)

    def default_predict_fn(self, data: Any, model: Any) -> Any:
        return model.predict(data, validate_features=False)

    def default_output_fn(self, prediction: Any, accept: str) -> Any:
        from sagemaker_containers import _encoders

        encoded = _encoders.encode(prediction, accept)
        return encoded.encode("utf-8") if isinstance(encoded, str) else encoded

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Response:
        try:
            return self._transform(body, content_type, accept)
        except Exception:  # noqa: BLE001 - MMS answers a failed handler with 503 "Prediction failed"
            _log_exception("/invocations [POST]")
            return Response(503, MMS_PREDICTION_FAILED.encode(), codecs.JSON)


class AlgorithmHandler(Handler):
    """smlocal's emulation of a built-in algorithm's serving container."""

    def __init__(self, env: Mapping[str, str]):
        self.algorithm = env[plan.ENV_ALGORITHM]
        self._module = importlib.import_module(ALGORITHM_MODULES[self.algorithm])
        self.model = self._module.load_model(Path(plan.MODEL_DIR))
        self._batch = bool(env.get("SAGEMAKER_BATCH"))

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> Response:
        from smlocal.runtime.algorithms import common

        try:
            if self.algorithm == "xgboost":
                data, media = self._module.predict(self.model, body, content_type, accept, batch=self._batch)
            else:
                data, media = self._module.predict(self.model, body, content_type, accept)
            return Response(200, data, codecs.text_mimetype(media))
        except common.NoContent:
            return Response(204, b"", None)
        except common.AlgorithmException as exc:
            if exc.status_code >= 500:
                _log_exception("/invocations [POST]")
            return Response(exc.status_code, exc.message.encode(), "text/html; charset=utf-8")
        except Exception as exc:  # noqa: BLE001
            _log_exception("/invocations [POST]")
            return Response(500, str(exc).encode(), "text/html; charset=utf-8")

    def execution_parameters(self) -> Response | None:
        if self.algorithm != "xgboost":
            return None
        params = {"MaxConcurrentTransforms": os.cpu_count() or 1, "BatchStrategy": "MULTI_RECORD",
                  "MaxPayloadInMB": 6}
        return Response(200, json.dumps(params).encode(), codecs.JSON)


_HANDLERS = {"sklearn": SklearnHandler, "xgboost": XGBoostFrameworkHandler, "toolkit": ToolkitHandler,
             "algorithm": AlgorithmHandler}


def load_handler(env: Mapping[str, str]) -> Handler:
    """Builds the handler named by ``SMLOCAL_SERVING_HANDLER`` (loading the model)."""
    name = env.get(plan.ENV_HANDLER, "")
    if name not in _HANDLERS:
        raise ValueError(f"unknown serving handler {name!r}; expected one of {sorted(_HANDLERS)}")
    return _HANDLERS[name](env)
