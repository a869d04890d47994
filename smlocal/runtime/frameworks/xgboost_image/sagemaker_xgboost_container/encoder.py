"""Request bodies as ``xgboost.DMatrix``: the XGBoost image's decoders for its default input_fn
and for user ``input_fn`` code (``sagemaker_xgboost_container.encoder``)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import tempfile
from typing import Union

import numpy as np
import xgboost as xgb
from sagemaker_containers import _content_types, _errors

from sagemaker_xgboost_container import recordio_protobuf
from sagemaker_xgboost_container.constants import xgb_content_types


def _media_type(content_type):
    """``'text/csv; charset=utf-8'`` -> ``'text/csv'`` (the parameters dropped)."""
    return str(content_type).split(";", 1)[0].strip()


def _clean_csv_string(csv_string, delimiter):
    return ["nan" if cell == "" else cell for cell in csv_string.split(delimiter)]


def csv_to_dmatrix(input: Union[str, bytes], dtype=None) -> xgb.DMatrix:  # noqa: A002 - the image's name
    """CSV text (no label column, no trailing newline) as a DMatrix; empty cells are missing.

    The delimiter is sniffed from the first line (a letter or digit means ``,``).

    Args:
        input: The CSV text, str or UTF-8 bytes.
        dtype: Casts the parsed cells (default: float where they parse).
    """
    text = input.decode() if isinstance(input, bytes) else input
    try:
        sniffed = csv.Sniffer().sniff(text.split("\n")[0][:512]).delimiter
    except csv.Error:
        sniffed = ","
    delimiter = "," if sniffed.isalnum() else sniffed
    logging.info("Determined delimiter of CSV input is '%s'", delimiter)
    rows = [_clean_csv_string(line, delimiter) for line in text.split("\n")]
    return xgb.DMatrix(np.array(rows).astype(dtype))


def libsvm_to_dmatrix(string_like) -> xgb.DMatrix:
    """LIBSVM text (``<label> <index>:<value> ...`` a line) as a DMatrix."""
    data = string_like.encode("utf-8") if isinstance(string_like, str) else bytes(string_like)
    path = None
    try:
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            path = handle.name
            handle.write(data)
        return xgb.DMatrix(f"{path}?format=libsvm")
    finally:
        if path and os.path.exists(path):
            os.remove(path)


def recordio_protobuf_to_dmatrix(string_like) -> xgb.DMatrix:
    """RecordIO-protobuf records (dense or sparse ``values`` tensors) as a DMatrix; labels ignored."""
    features, _ = recordio_protobuf.read_examples(string_like)
    return xgb.DMatrix(features)


_dmatrix_decoders_map = {
    _content_types.CSV: csv_to_dmatrix,
    xgb_content_types.LIBSVM: libsvm_to_dmatrix,
    xgb_content_types.X_LIBSVM: libsvm_to_dmatrix,
    xgb_content_types.X_RECORDIO_PROTOBUF: recordio_protobuf_to_dmatrix,
}


def json_to_jsonlines(json_data):
    """A one-key JSON object of lists (``{"predictions": [...]}``) as JSON Lines bytes, one line an entry.

    Raises:
        ValueError: The object has more or fewer than one key.
    """
    obj = json_data if isinstance(json_data, dict) else json.loads(json_data)
    if len(obj.keys()) != 1:
        raise ValueError("JSON response is not compatible for conversion to jsonlines.")
    stream = io.BytesIO()
    for entries in obj.values():
        for entry in entries:
            stream.write((json.dumps(entry) + "\n").encode("UTF-8"))
    return stream.getvalue()


def decode(obj, content_type):
    """A request body as a DMatrix by its content type (CSV, LIBSVM, RecordIO-protobuf).

    Raises:
        sagemaker_containers._errors.UnsupportedFormatError: Any other content type.
    """
    media = _media_type(content_type)
    decoder = _dmatrix_decoders_map.get(media)
    if decoder is None:
        raise _errors.UnsupportedFormatError(media)
    return decoder(obj)
