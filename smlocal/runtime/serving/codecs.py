"""Request decoders and response encoders of the SageMaker serving toolkits (pure functions).

Two generations exist and the framework images differ in which they use:

* ``sagemaker-containers`` (``sagemaker_containers._encoders``), used by the scikit-learn image's
  Flask server and by the XGBoost image's output encoding: CSV is parsed with :mod:`csv` and
  squeezed, written with ``csv.writer`` (one row per line, a 1-D array as one column);
* ``sagemaker-inference`` (``sagemaker_inference.decoder``/``encoder``), used by the MMS-based
  images: CSV is parsed with ``numpy.genfromtxt`` and written with ``numpy.savetxt``.

Both map exactly ``application/json``, ``text/csv`` and ``application/x-npy`` (the toolkit also
decodes ``application/x-npz`` sparse matrices); the Content-Type must match exactly (no
parameters), anything else raises :class:`UnsupportedFormatError` with the toolkits' message.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Callable

import numpy as np

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
LIBSVM = "text/libsvm"
X_LIBSVM = "text/x-libsvm"
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


class DecodeError(Exception):
    """The payload does not parse as its content type (``sagemaker_containers`` ClientError)."""


def _to_list(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# ---- sagemaker-containers (scikit-learn image, XGBoost output)
def sc_csv_to_numpy(text: str) -> np.ndarray:
    """``csv.reader`` rows -> array, squeezed, cast to float when every cell is numeric (else the
    string array is returned, as the toolkit swallows the cast error when no dtype is asked)."""
    try:
        reader = csv.reader(io.StringIO(text), delimiter=",", quotechar='"', doublequote=True, strict=True)
        array = np.array([row for row in reader]).squeeze()
    except Exception as exc:  # noqa: BLE001 - the toolkit reports any parse failure this way
        raise DecodeError(f"Error while decoding csv: {exc}") from exc
    try:
        return array.astype(None)
    except ValueError:
        return array


def sc_array_to_csv(array_like: Any) -> str:
    array = np.array(array_like)
    if array.ndim == 1:
        array = np.reshape(array, (array.shape[0], 1))
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n", delimiter=",", quotechar='"', doublequote=True, strict=True)
    try:
        writer.writerows(array)
    except csv.Error as exc:
        raise DecodeError(f"Error while encoding csv: {exc}") from exc
    return stream.getvalue()


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


_SC_DECODERS: dict[str, Callable[[Any], Any]] = {NPY: npy_to_numpy, CSV: sc_csv_to_numpy, JSON: json_to_numpy}
_SC_ENCODERS: dict[str, Callable[[Any], Any]] = {NPY: array_to_npy, CSV: sc_array_to_csv, JSON: array_to_json}


def sc_decode(data: Any, content_type: str | None) -> Any:
    """``sagemaker_containers._encoders.decode``."""
    decoder = _SC_DECODERS.get(content_type or "")
    if decoder is None:
        raise UnsupportedFormatError(content_type)
    return decoder(data)


def sc_encode(array_like: Any, content_type: str | None) -> Any:
    """``sagemaker_containers._encoders.encode`` (str for CSV/JSON, bytes for NPY)."""
    encoder = _SC_ENCODERS.get(content_type or "")
    if encoder is None:
        raise UnsupportedFormatError(content_type)
    return encoder(array_like)


# ---- sagemaker-inference toolkit (MMS-based images)
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


# ---- XGBoost framework mode (sagemaker_xgboost_container.encoder)
def xgb_decode(data: str, content_type: str | None):
    """CSV or LIBSVM text -> ``xgboost.DMatrix``, as the XGBoost image's default input_fn."""
    if content_type == CSV:
        return _csv_to_dmatrix(data)
    if content_type in (LIBSVM, X_LIBSVM):
        return _libsvm_to_dmatrix(data)
    raise UnsupportedFormatError(content_type)


def _csv_to_dmatrix(text: str):
    import xgboost as xgb

    first = text.split("\n")[0][:512]
    try:
        sniffed = csv.Sniffer().sniff(first).delimiter
    except csv.Error:
        sniffed = ","
    delimiter = "," if sniffed.isalnum() else sniffed
    rows = [["nan" if cell == "" else cell for cell in line.split(delimiter)] for line in text.split("\n")]
    return xgb.DMatrix(np.array(rows).astype(None))


def _libsvm_to_dmatrix(text: str):
    import os
    import tempfile

    import xgboost as xgb

    with tempfile.NamedTemporaryFile("w", suffix=".libsvm", delete=False) as handle:
        handle.write(text)
        path = handle.name
    try:
        return xgb.DMatrix(f"{path}?format=libsvm")
    finally:
        os.unlink(path)


def text_mimetype(mimetype: str) -> str:
    """The Content-Type Werkzeug/Flask sends for ``mimetype``: text types gain ``; charset=utf-8``."""
    if mimetype.startswith("text/") and "charset" not in mimetype:
        return f"{mimetype}; charset=utf-8"
    return mimetype
