"""RecordIO-wrapped protobuf ``Record`` messages (SageMaker's ``application/x-recordio-protobuf``)
as a feature matrix and labels.

A record is framed as magic ``0xced7230a``, a little-endian length (low 29 bits) and the payload
padded to 4 bytes. The payload is SageMaker's ``Record`` message: ``features`` (field 1) and
``label`` (field 2) map names to a ``Value`` holding a Float32 (2), Float64 (3) or Int32 (7)
tensor of ``values`` (1), sparse ``keys`` (2) and ``shape`` (3). Decoded here from the protobuf
wire format, with no generated code.
"""

from __future__ import annotations

import struct

import numpy as np
import scipy.sparse

_MAGIC = 0xCED7230A
_TENSOR_FIELDS = {2: "<f", 3: "<d", 7: None}  # Value field -> element format (None: varint int32)


def _varint(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf):
    """(field number, wire type, value) of a message: ints for varints, bytes otherwise."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _signed32(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def _tensor(kind, buf):
    """A tensor message as (values, keys, shape)."""
    fmt = _TENSOR_FIELDS[kind]
    values, keys, shape = [], [], []
    for number, wire, value in _fields(buf):
        if number == 1:
            if fmt is None:  # int32: varints, packed (wire 2) or not
                if wire == 2:
                    pos = 0
                    while pos < len(value):
                        item, pos = _varint(value, pos)
                        values.append(_signed32(item))
                else:
                    values.append(_signed32(value))
            else:
                values += [v[0] for v in struct.iter_unpack(fmt, value)] if wire == 2 \
                    else [struct.unpack(fmt, value)[0]]
        elif number in (2, 3):
            target = keys if number == 2 else shape
            if wire == 2:
                pos = 0
                while pos < len(value):
                    item, pos = _varint(value, pos)
                    target.append(item)
            else:
                target.append(value)
    return values, keys, shape


def _value(buf):
    for number, _, value in _fields(buf):
        if number in _TENSOR_FIELDS:
            return _tensor(number, value)
    return None


def _map(buf):
    key, value = "", None
    for number, _, item in _fields(buf):
        if number == 1:
            key = bytes(item).decode("utf-8")
        elif number == 2:
            value = _value(item)
    return key, value


def _records(data):
    view, pos = memoryview(bytes(data)), 0
    while pos + 8 <= len(view):
        magic, length = struct.unpack_from("<II", view, pos)
        if magic != _MAGIC:
            raise ValueError("not RecordIO data: bad magic number")
        length &= (1 << 29) - 1
        start = pos + 8
        yield view[start:start + length]
        pos = start + length + (-length % 4)


def read_examples(data):
    """The features (dense ``ndarray``, or CSR matrix when sparse) and labels (or None) of the
    records in ``data``; ``(None, None)`` when it holds none.

    Raises:
        ValueError: The bytes are not RecordIO-protobuf records of tensors.
    """
    rows, labels, sparse, width = [], [], False, 0
    for payload in _records(data):
        features = label = None
        for number, _, entry in _fields(payload):
            key, value = _map(entry)
            if number == 1 and key == "values":
                features = value
            elif number == 2 and key == "values":
                label = value
        if features is None:
            raise ValueError("a record has no 'values' feature tensor")
        values, keys, shape = features
        if keys:
            sparse = True
            width = max(width, int(shape[0]) if shape else max(keys) + 1)
        rows.append((values, keys))
        if label is not None and label[0]:
            labels.append(label[0][0])
    if not rows:
        return None, None
    if sparse:
        indptr, indices, data_values = [0], [], []
        for values, keys in rows:
            indices += keys or list(range(len(values)))
            data_values += values
            indptr.append(len(indices))
        matrix = scipy.sparse.csr_matrix((data_values, indices, indptr), shape=(len(rows), width))
    else:
        matrix = np.array([values for values, _ in rows], dtype=np.float64)
    return matrix, (np.array(labels, dtype=np.float64) if len(labels) == len(rows) else None)
