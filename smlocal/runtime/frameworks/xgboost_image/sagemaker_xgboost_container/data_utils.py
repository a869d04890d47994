"""Training data as ``xgboost.DMatrix``: the XGBoost image's loaders (``data_utils``).

Content types are ``csv``, ``libsvm``, ``parquet`` and ``recordio-protobuf`` (or their MIME names);
CSV and Parquet hold the label in the first column (then the weight with ``csv_weights=1``).
A data path is a file or a folder; in File mode every file under it (three levels deep at most)
is loaded together. Failures are :class:`sagemaker_algorithm_toolkit.exceptions.UserError` with the
image's wording. Pipe mode is not offered: smlocal stages every channel as files.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
from typing import List, Union

import numpy as np
import xgboost as xgb
from sagemaker_algorithm_toolkit import exceptions as exc
from sagemaker_containers import _content_types

from sagemaker_xgboost_container import recordio_protobuf
from sagemaker_xgboost_container.constants import xgb_content_types

BATCH_SIZE = 4000
CSV = "csv"
LIBSVM = "libsvm"
PARQUET = "parquet"
RECORDIO_PROTOBUF = "recordio-protobuf"
MAX_FOLDER_DEPTH = 3
FILE_MODE_DIR = "/tmp/sagemaker_xgboost_input_data"

VALID_CONTENT_TYPES = [CSV, LIBSVM, PARQUET, RECORDIO_PROTOBUF, _content_types.CSV, xgb_content_types.LIBSVM,
                       xgb_content_types.X_LIBSVM, xgb_content_types.X_PARQUET, xgb_content_types.X_RECORDIO_PROTOBUF]
VALID_PIPED_CONTENT_TYPES = [CSV, PARQUET, RECORDIO_PROTOBUF, _content_types.CSV, xgb_content_types.X_PARQUET,
                             xgb_content_types.X_RECORDIO_PROTOBUF]
INVALID_CONTENT_TYPE_ERROR = ("{invalid_content_type} is not an accepted ContentType: "
                              + ", ".join(VALID_CONTENT_TYPES) + ".")
INVALID_CONTENT_FORMAT_ERROR = ("First line '{line_snippet}...' of file '{file_name}' is not "
                                "'{content_type}' format. Please ensure the file is in '{content_type}' format.")


def _parse_header(value):
    """``'text/csv; label_size=1'`` -> ``('text/csv', {'label_size': '1'})``."""
    media, *params = [part.strip() for part in value.split(";")]
    parsed = {}
    for param in params:
        if "=" in param:
            key, _, val = param.partition("=")
            parsed[key.strip()] = val.strip().strip('"')
    return media, parsed


def get_content_type(content_type_cfg_val):
    """The file type (``csv``, ``libsvm``, ``parquet``, ``recordio-protobuf``) of a channel's
    ContentType; ``libsvm`` when it has none.

    Raises:
        UserError: An unknown content type, or CSV with a ``label_size`` other than 1.
    """
    if content_type_cfg_val is None:
        return LIBSVM
    content_type, params = _parse_header(content_type_cfg_val.lower())
    if content_type in (CSV, _content_types.CSV):
        if params.get("label_size", "1") != "1":
            raise exc.UserError(f"{content_type_cfg_val} is not an accepted csv ContentType. "
                                "Optional parameter label_size must be equal to 1")
        return CSV
    if content_type in (LIBSVM, xgb_content_types.LIBSVM, xgb_content_types.X_LIBSVM):
        return LIBSVM
    if content_type in (PARQUET, xgb_content_types.X_PARQUET):
        return PARQUET
    if content_type in (RECORDIO_PROTOBUF, xgb_content_types.X_RECORDIO_PROTOBUF):
        return RECORDIO_PROTOBUF
    raise exc.UserError(INVALID_CONTENT_TYPE_ERROR.format(invalid_content_type=content_type_cfg_val))


def _is_data_file(file_path, file_name):
    """A regular file not named ``.*`` or ``_*`` and not an XGBoost cache file."""
    if not os.path.isfile(os.path.join(file_path, file_name)) or file_name.startswith((".", "_")):
        return False
    return not (".cache" in file_name and ("dtrain" in file_name or "dval" in file_name))


def _get_csv_delimiter(sample_csv_line):
    try:
        delimiter = csv.Sniffer().sniff(sample_csv_line).delimiter
    except Exception as e:  # noqa: BLE001 - reported as the image reports it
        raise exc.UserError(f"Could not determine delimiter on line {sample_csv_line[:50]}:\n{e}") from e
    logging.info("Determined delimiter of CSV input is '%s'", delimiter)
    return delimiter


def _is_valid_libsvm_label(label):
    parts = label.split(":")
    if len(parts) > 2:
        return False
    try:
        [float(part) for part in parts]
    except ValueError:
        return False
    return True


def _get_num_valid_libsvm_features(libsvm_line):
    """The features of a LIBSVM line, or -1 when it is not LIBSVM."""
    fields = libsvm_line.split(" ")
    if not _is_valid_libsvm_label(fields[0]):
        logging.error("%s does not follow LIBSVM label format <label>(:<weight>).", fields[0])
        return -1
    for field in fields[1:]:
        if ":" not in field or len(fields[1].split(":")) != 2:
            return -1
    return len(fields) - 1


def _validate_csv_format(file_path):
    with open(file_path, errors="ignore") as handle:
        _get_csv_delimiter(handle.readline())


def _validate_libsvm_format(file_path):
    name = file_path.split("/")[-1]
    with open(file_path, errors="ignore") as handle:
        for line in handle:
            count = _get_num_valid_libsvm_features(line)
            if count > 1:
                return
            if count < 0:
                raise exc.UserError(INVALID_CONTENT_FORMAT_ERROR.format(line_snippet=line[:50], file_name=name,
                                                                        content_type="LIBSVM"))
    logging.warning("File %s is not an invalid LIBSVM file but has no features. Accepting simple validation.", name)


def validate_data_file_path(data_path, content_type):
    """Checks the first line of each data file against ``content_type`` (not a full check).

    Raises:
        UserError: ``data_path`` does not exist, or a file is not of that format.
    """
    file_type = get_content_type(content_type)
    if not os.path.exists(data_path):
        raise exc.UserError(f"{data_path} is not a valid path!")
    if os.path.isfile(data_path):
        files = [data_path]
    else:
        folder = next((root for root, dirs, _ in os.walk(data_path) if not dirs), data_path)
        files = [os.path.join(folder, name) for name in os.listdir(folder) if _is_data_file(folder, name)]
    if file_type == CSV:
        for path in files:
            _validate_csv_format(path)
    elif file_type == LIBSVM:
        for path in files:
            _validate_libsvm_format(path)


def _first_file(files_path):
    if os.path.isfile(files_path):
        return files_path
    names = sorted(n for n in os.listdir(files_path) if os.path.isfile(os.path.join(files_path, n)))
    return os.path.join(files_path, names[0])


def get_csv_dmatrix(path, csv_weights, is_pipe=False):
    """A DMatrix of the CSV data at ``path`` (label first; weight second with ``csv_weights=1``).

    Raises:
        UserError: Pipe mode, or data that does not load.
    """
    if is_pipe:
        raise exc.UserError("Pipe mode is not emulated by smlocal: channels are staged as files.")
    with open(_first_file(path)) as handle:
        delimiter = _get_csv_delimiter(handle.readline())
    uri = f"{path}?format=csv&label_column=0&delimiter={delimiter}"
    if csv_weights == 1:
        uri += "&weight_column=1"
    try:
        return xgb.DMatrix(uri)
    except Exception as e:  # noqa: BLE001
        raise exc.UserError(f"Failed to load csv data with exception:\n{e}") from e


def get_libsvm_dmatrix(files_path, is_pipe=False):
    """A DMatrix of the LIBSVM data at ``files_path``.

    Raises:
        UserError: Pipe mode ("Pipe mode not supported for LibSVM."), or data that does not load.
    """
    if is_pipe:
        raise exc.UserError("Pipe mode not supported for LibSVM.")
    try:
        return xgb.DMatrix(f"{files_path}?format=libsvm")
    except Exception as e:  # noqa: BLE001
        raise exc.UserError(f"Failed to load libsvm data with exception:\n{e}") from e


def get_parquet_dmatrix(path, is_pipe=False):
    """A DMatrix of the Parquet data at ``path`` (label in the first column)."""
    if is_pipe:
        raise exc.UserError("Pipe mode is not emulated by smlocal: channels are staged as files.")
    try:
        import pandas as pd

        data = pd.read_parquet(path).to_numpy()
        return xgb.DMatrix(data[:, 1:], label=data[:, 0])
    except Exception as e:  # noqa: BLE001
        raise exc.UserError(f"Failed to load parquet data with exception:\n{e}") from e


def get_recordio_protobuf_dmatrix(path, is_pipe=False):
    """A DMatrix of the RecordIO-protobuf data at ``path`` (labels from the records), or None."""
    if is_pipe:
        raise exc.UserError("Pipe mode is not emulated by smlocal: channels are staged as files.")
    try:
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(path, n) for n in os.listdir(path) if os.path.isfile(os.path.join(path, n)))
        features, labels = [], []
        for file in files:
            with open(file, "rb") as handle:
                part, part_labels = recordio_protobuf.read_examples(handle.read())
            if part is not None:
                features.append(part)
                labels.append(part_labels if part_labels is not None else np.zeros(part.shape[0]))
        if not features:
            return None
        import scipy.sparse

        stacked = (scipy.sparse.vstack(features).tocsr() if any(scipy.sparse.issparse(f) for f in features)
                   else np.vstack(features))
        return xgb.DMatrix(stacked, label=np.concatenate(labels))
    except Exception as e:  # noqa: BLE001
        raise exc.UserError(f"Failed to load recordio-protobuf data with exception:\n{e}") from e


def _link_files(dest_path, data_path, depth):
    if depth > MAX_FOLDER_DEPTH:
        raise exc.UserError(f"Folder depth exceed the limit: {MAX_FOLDER_DEPTH}.")
    if os.path.isfile(data_path):
        _make_symlink(data_path, dest_path, os.path.basename(data_path))
        return
    for item in sorted(os.scandir(data_path), key=lambda entry: entry.name):
        if item.is_file():
            _make_symlink(item.path, dest_path, item.name)
        elif item.is_dir():
            _link_files(dest_path, item.path, depth + 1)


def _make_symlink(path, dest_path, name):
    os.symlink(path, os.path.join(dest_path, name) + str(abs(hash(path))))


def _link_with_warning(dest_path, data_path):
    if not os.path.exists(dest_path) or not os.path.exists(data_path):
        raise exc.AlgorithmError(f"Unable to create symlinks as {data_path} or {dest_path} doesn't exist ")
    try:
        _link_files(dest_path, data_path, 1)
    except exc.UserError as e:
        if e.message != f"Folder depth exceed the limit: {MAX_FOLDER_DEPTH}.":
            raise
        logging.warning("The depth of folder %s exceed the limit %s. Files in deeper sub dirs won't be loaded. "
                        "Please adjust the folder structure accordingly.", data_path, MAX_FOLDER_DEPTH)


def _get_file_mode_files_path(data_path: Union[List[str], str]):
    """A fresh folder of links to every input file (XGBoost reads one folder), or None."""
    shutil.rmtree(FILE_MODE_DIR, ignore_errors=True)
    os.mkdir(FILE_MODE_DIR)
    for path in data_path if isinstance(data_path, list) else [data_path]:
        if not os.path.exists(path):
            logging.info("File path %s does not exist!", path)
            return None
        _link_with_warning(FILE_MODE_DIR, path)
    return FILE_MODE_DIR


def get_dmatrix(data_path, content_type, csv_weights=0, is_pipe=False):
    """A DMatrix of the data at ``data_path`` (a file, a folder or a list of them), or None when
    the path does not exist.

    Args:
        data_path: Where the channel's data is (``SM_CHANNEL_TRAIN`` ...).
        content_type: ``csv``, ``libsvm``, ``parquet`` or ``recordio-protobuf`` (see
            :func:`get_content_type`).
        csv_weights: 1 when CSV rows carry an instance weight in the second column.
        is_pipe: Pipe mode (not emulated: a UserError).

    Raises:
        UserError: Data that does not load, or that has no labels.
    """
    files_path = _get_file_mode_files_path(data_path) if not is_pipe else data_path
    if files_path is None:
        return None
    kind = content_type.lower()
    if kind == CSV:
        dmatrix = get_csv_dmatrix(files_path, csv_weights, is_pipe)
    elif kind == LIBSVM:
        dmatrix = get_libsvm_dmatrix(files_path, is_pipe)
    elif kind == PARQUET:
        dmatrix = get_parquet_dmatrix(files_path, is_pipe)
    elif kind == RECORDIO_PROTOBUF:
        dmatrix = get_recordio_protobuf_dmatrix(files_path, is_pipe)
    else:
        raise exc.UserError(INVALID_CONTENT_TYPE_ERROR.format(invalid_content_type=content_type))
    if dmatrix is not None and dmatrix.get_label().size == 0:
        raise exc.UserError(
            "Got input data without labels. Please check the input data set. If training job is running on "
            "multiple instances, please switch to using single instance if number of records in the data set is "
            "less than number of workers (16 * number of instance) in the cluster.")
    return dmatrix


def get_size(data_path, is_pipe=False):
    """The bytes of data at ``data_path`` (0 when missing).

    Raises:
        UserError: A hidden file under it.
    """
    del is_pipe
    if not os.path.exists(data_path):
        logging.info("Path %s does not exist!", data_path)
        return 0
    if os.path.isfile(data_path):
        return os.path.getsize(data_path)
    total = 0
    for root, _, files in os.walk(data_path):
        for name in files:
            if name.startswith("."):
                raise exc.UserError("Hidden file found in the data path! Remove that before training.")
            total += os.path.getsize(os.path.join(root, name))
    return total


def check_data_redundancy(train_path, validate_path):
    """Logs a warning for same-named, same-sized files in the training and validation folders."""
    if not os.path.exists(train_path):
        raise exc.UserError("training data's path is not existed")
    if not os.path.exists(validate_path):
        raise exc.UserError("validation data's path is not existed")

    def files(folder):
        return {n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))}

    for name in files(train_path) & files(validate_path):
        size = os.path.getsize(os.path.join(train_path, name))
        if size == os.path.getsize(os.path.join(validate_path, name)):
            logging.warning("Suspected identical files found. (%s and %s with same size %s bytes). Note: Duplicate "
                            "data in the training set and validation set is usually not intentional and can impair "
                            "the validity of the model evaluation by the validation score.",
                            os.path.join(train_path, name), os.path.join(validate_path, name), size)
