"""Request decoders and response encoders of the ``sagemaker-inference`` toolkit (pure functions).

Two generations of serving toolkits exist and the framework images differ in which they use:

* ``sagemaker-containers`` (``sagemaker_containers._encoders``), used by the scikit-learn image's
  Flask server and by the XGBoost image's output encoding: the handlers call smlocal's version of
  that package (:mod:`smlocal.runtime.frameworks`), which the worker of those images has on its
  ``PYTHONPATH`` -- it is not repeated here;
* ``sagemaker-inference`` (``sagemaker_inference.decoder``/``encoder``), used by the MMS-based
  images: CSV is parsed with ``numpy.genfromtxt`` and written with ``numpy.savetxt`` (this module).

Both map exactly ``application/json``, ``text/csv`` and ``application/x-npy`` (the inference
toolkit also decodes ``application/x-npz`` sparse matrices); the Content-Type must match exactly
(no parameters), anything else raises :class:`UnsupportedFormatError` with the toolkits' message.
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable

import numpy as np

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
ANY = "*/*"
UTF8_TYPES = (JSON, CSV)


class UnsupportedFormatError(Exception):
    """A content type the default input_fn/output_fn cannot handle (the toolkits' wording)."""

    def __init__(self, content_type: str | None):
        self.message = (
            "Content type %s is not supported by this framework.\n\n"
            "            Please implement input_fn to to deserialize the request data or an output_fn to\n"
            "            serialize the response. For more information, see the SageMaker Python SDK README."
            % content_type
        )
        super().__init__(self.message)


def _to_list(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def array_to_npy(array_like: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array_like)
    return buffer.getvalue()


def npy_to_numpy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=True)


def array_to_json(array_like: Any) -> str:
    return json.dumps(array_like, default=_to_list)


def json_to_numpy(text: str | bytes) -> np.ndarray:
    return np.array(json.loads(text))


def tk_csv_to_numpy(text: str) -> np.ndarray:
    return np.genfromtxt(io.StringIO(text), delimiter=",")


def tk_array_to_csv(array_like: Any) -> str:
    stream = io.StringIO()
    np.savetxt(stream, array_like, delimiter=",", fmt="%s")
    return stream.getvalue()


def npz_to_sparse(data: bytes):
    import scipy.sparse

    return scipy.sparse.load_npz(io.BytesIO(data))


_TK_DECODERS: dict[str, Callable[[Any], Any]] = {NPY: npy_to_numpy, CSV: tk_csv_to_numpy, JSON: json_to_numpy,
                                                 NPZ: npz_to_sparse}
_TK_ENCODERS: dict[str, Callable[[Any], Any]] = {NPY: array_to_npy, CSV: tk_array_to_csv, JSON: array_to_json}


def tk_decode(data: Any, content_type: str | None) -> Any:
    """``sagemaker_inference.decoder.decode``."""
    decoder = _TK_DECODERS.get(content_type or "")
    if decoder is None:
        raise UnsupportedFormatError(content_type)
    return decoder(data)


def tk_encode(array_like: Any, content_type: str | None) -> Any:
    """``sagemaker_inference.encoder.encode``."""
    encoder = _TK_ENCODERS.get(content_type or "")
    if encoder is None:
        raise UnsupportedFormatError(content_type)
    return encoder(array_like)


def text_mimetype(mimetype: str) -> str:
    """The Content-Type Werkzeug/Flask sends for ``mimetype``: text types gain ``; charset=utf-8``."""
    if mimetype.startswith("text/") and "charset" not in mimetype:
        return f"{mimetype}; charset=utf-8"
    return mimetype
