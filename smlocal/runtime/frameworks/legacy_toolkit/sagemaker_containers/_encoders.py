"""Decoders and encoders between request/response bodies and NumPy arrays.

CSV is read with :mod:`csv` (the array is squeezed: one row becomes 1-D) and written one row a
line (a 1-D array as one column); JSON through ``json`` with ``tolist`` for arrays; NPY through
``numpy.save``/``numpy.load``. Only the exact content types of :mod:`._content_types` map.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from sagemaker_containers import _content_types, _errors


def array_to_npy(array_like):
    """An array-like as the bytes of an ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, array_like)
    return buffer.getvalue()


def npy_to_numpy(npy_array):
    """The array in the bytes of an ``.npy`` file."""
    return np.load(io.BytesIO(npy_array), allow_pickle=True)


def array_to_json(array_like):
    """An array-like (or anything with ``tolist``) as a JSON string."""

    def default(value):
        if hasattr(value, "tolist"):
            return value.tolist()
        return json.JSONEncoder().default(value)

    return json.dumps(array_like, default=default)


def json_to_numpy(string_like, dtype=None):
    """A JSON string as an array (``dtype`` casts it)."""
    return np.array(json.loads(string_like), dtype=dtype)


def csv_to_numpy(string_like, dtype=None):
    """A CSV string as an array; cells stay strings unless they all parse (or ``dtype`` says).

    Raises:
        ClientError: The text is not CSV, or does not cast to ``dtype``.
    """
    try:
        rows = csv.reader(io.StringIO(string_like), delimiter=",", quotechar='"', doublequote=True, strict=True)
        array = np.array([row for row in rows]).squeeze()
    except Exception as exc:  # noqa: BLE001 - every parse failure is reported this way
        raise _errors.ClientError(f"Error while decoding csv: {exc}") from exc
    try:
        return array.astype(dtype)
    except ValueError as exc:
        if dtype is not None:
            raise _errors.ClientError(f"Error while writing numpy array: {exc}. dtype is: {dtype}") from exc
        return array


def array_to_csv(array_like):
    """An array-like as CSV text, one row a line."""
    array = np.array(array_like)
    if array.ndim == 1:
        array = np.reshape(array, (array.shape[0], 1))
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n", delimiter=",", quotechar='"', doublequote=True, strict=True)
    try:
        writer.writerows(array)
    except csv.Error as exc:
        raise _errors.ClientError(f"Error while encoding csv: {exc}") from exc
    return stream.getvalue()


_encoders_map = {
    _content_types.NPY: array_to_npy,
    _content_types.CSV: array_to_csv,
    _content_types.JSON: array_to_json,
}
_decoders_map = {
    _content_types.NPY: npy_to_numpy,
    _content_types.CSV: csv_to_numpy,
    _content_types.JSON: json_to_numpy,
}


def decode(obj, content_type):
    """A request body of ``content_type`` as an array.

    Raises:
        UnsupportedFormatError: ``content_type`` is none of JSON, CSV, NPY (exactly).
    """
    try:
        decoder = _decoders_map[content_type]
    except KeyError:
        raise _errors.UnsupportedFormatError(content_type) from None
    return decoder(obj)


def encode(array_like, content_type):
    """An array-like as a response body of ``content_type`` (str for JSON/CSV, bytes for NPY).

    Raises:
        UnsupportedFormatError: ``content_type`` is none of JSON, CSV, NPY (exactly).
    """
    try:
        encoder = _encoders_map[content_type]
    except KeyError:
        raise _errors.UnsupportedFormatError(content_type) from None
    return encoder(array_like)
