"""smlocal's versions of the framework images' packages (sagemaker_containers,
sagemaker_xgboost_container, sagemaker_algorithm_toolkit) and the entry-point rules, without an
emulator: the packages are imported from their folders as a job's PYTHONPATH would."""

from __future__ import annotations

import importlib
import io
import json
import logging
import sys

import numpy as np
import pytest

from smlocal.runtime import contract, frameworks

PY = "/usr/bin/python3"
_PACKAGES = ("sagemaker_containers", "sagemaker_xgboost_container", "sagemaker_algorithm_toolkit")


@pytest.fixture(scope="module")
def image_packages():
    """The XGBoost image's package folders on sys.path for this module only."""
    added = [d for d in frameworks.package_dirs("xgboost") if d not in sys.path]
    sys.path[:0] = added
    yield
    for folder in added:
        sys.path.remove(folder)
    for name in [m for m in sys.modules if m.split(".")[0] in _PACKAGES]:
        del sys.modules[name]


# ---------------------------------------------------------------- which packages, which entry points
def test_only_the_images_that_ship_the_packages_get_them():
    xgb_dirs, sk_dirs = frameworks.package_dirs("xgboost"), frameworks.package_dirs("sklearn")
    assert [d.rsplit("/", 1)[-1] for d in xgb_dirs] == ["xgboost_image", "legacy_toolkit"]
    assert sk_dirs == (str(frameworks.LEGACY_TOOLKIT_DIR),)
    assert frameworks.package_dirs("pytorch") == frameworks.package_dirs(None) == ()
    assert frameworks.python_path("/opt/ml/code", "sklearn") == "/opt/ml/code:" + sk_dirs[0]  # user code first
    assert frameworks.python_path("/opt/ml/code", "pytorch") == "/opt/ml/code"


def test_xgboost_image_runs_every_entry_point_as_a_module():
    assert contract.script_command("abalone.py", ["--eta", "0.2"], python=PY, framework="xgboost") == (
        PY, "-m", "abalone", "--eta", "0.2")
    assert contract.script_command("dummy1", [], python=PY, framework="xgboost") == (PY, "-m", "dummy1")
    assert contract.script_command("dummy1", [], python=PY, framework="xgboost", capture_error=True) == (
        PY, "-m", "dummy1")


def test_training_toolkit_entry_point_types():
    assert contract.script_command("train.py", ["--a", "1"], python=PY, package=True, framework="sklearn") == (
        PY, "-m", "train", "--a", "1")  # a setup.py makes a Python package
    assert contract.script_command("train.py", [], python=PY, framework="sklearn") == (PY, "train.py")
    assert contract.script_command("run.sh", [], python=PY, package=True, framework="sklearn") == (
        "/bin/sh", "-c", "./run.sh ")  # .sh is a command even in a package
    assert contract.script_command("dummy1", [], python=PY, framework="pytorch") == ("/bin/sh", "-c", "./dummy1 ")


# ---------------------------------------------------------------- sagemaker_xgboost_container.encoder
def test_encoder_decodes_csv_with_missing_cells_and_content_type_parameters(image_packages):
    from sagemaker_xgboost_container import encoder

    matrix = encoder.decode("1,,3\n4,5,6", "text/csv; charset=utf-8")
    assert (matrix.num_row(), matrix.num_col()) == (2, 3)
    assert encoder.csv_to_dmatrix(b"1\t2\n3\t4").num_col() == 2  # the delimiter is sniffed
    assert encoder._clean_csv_string("1,,3", ",") == ["1", "nan", "3"]


def test_encoder_decodes_libsvm_text_or_bytes(image_packages):
    from sagemaker_xgboost_container import encoder

    for body in ("1 1:0.5 4:2\n0 2:1", b"1 1:0.5 4:2\n0 2:1"):
        matrix = encoder.decode(body, "text/libsvm")
        assert (matrix.num_row(), matrix.num_col()) == (2, 5)
    assert encoder.decode(b"0 3:1", "text/x-libsvm").num_col() == 4


def test_encoder_decodes_dense_and_sparse_recordio_protobuf(image_packages):
    import scipy.sparse
    from sagemaker.amazon.common import write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor
    from sagemaker_xgboost_container import encoder, recordio_protobuf

    dense = io.BytesIO()
    write_numpy_to_dense_tensor(dense, np.arange(6.0).reshape(2, 3), np.array([1.0, 0.0]))
    assert encoder.decode(dense.getvalue(), "application/x-recordio-protobuf").num_col() == 3
    features, labels = recordio_protobuf.read_examples(dense.getvalue())
    assert features.tolist() == [[0, 1, 2], [3, 4, 5]] and labels.tolist() == [1, 0]

    sparse = io.BytesIO()
    write_spmatrix_to_sparse_tensor(sparse, scipy.sparse.csr_matrix([[0, 1.5, 0, 2], [3, 0, 0, 0]]))
    features, labels = recordio_protobuf.read_examples(sparse.getvalue())
    assert features.toarray().tolist() == [[0, 1.5, 0, 2], [3, 0, 0, 0]] and labels is None


def test_encoder_decodes_int32_tensors(image_packages):
    from sagemaker.amazon.common import _write_recordio
    from sagemaker.amazon.record_pb2 import Record
    from sagemaker_xgboost_container import recordio_protobuf

    stream = io.BytesIO()
    record = Record()
    record.features["values"].int32_tensor.values.extend([-5, 3])
    record.label["values"].float32_tensor.values.extend([2.0])
    _write_recordio(stream, record.SerializeToString())
    features, labels = recordio_protobuf.read_examples(stream.getvalue())
    assert features.tolist() == [[-5, 3]] and labels.tolist() == [2.0]


def test_encoder_refuses_other_content_types_with_the_toolkits_error(image_packages):
    from sagemaker_containers import _errors
    from sagemaker_xgboost_container import encoder

    with pytest.raises(_errors.UnsupportedFormatError) as exc:
        encoder.decode(b"{}", "application/json")
    assert exc.value.message.startswith("Content type application/json is not supported by this framework.")


def test_json_to_jsonlines_needs_one_key(image_packages):
    from sagemaker_xgboost_container import encoder

    assert encoder.json_to_jsonlines({"predictions": [{"score": 1}, 2]}) == b'{"score": 1}\n2\n'
    with pytest.raises(ValueError, match="not compatible for conversion to jsonlines"):
        encoder.json_to_jsonlines('{"a": [], "b": []}')


# ---------------------------------------------------------------- sagemaker_xgboost_container.data_utils
def test_content_types_of_channels(image_packages):
    from sagemaker_algorithm_toolkit import exceptions as exc
    from sagemaker_xgboost_container import data_utils

    table = {None: "libsvm", "csv": "csv", "text/csv; label_size=1": "csv", "Text/LibSVM": "libsvm",
             "text/x-libsvm": "libsvm", "application/x-parquet": "parquet",
             "application/x-recordio-protobuf": "recordio-protobuf"}
    assert {k: data_utils.get_content_type(k) for k in table} == table
    with pytest.raises(exc.UserError, match="Optional parameter label_size must be equal to 1"):
        data_utils.get_content_type("text/csv;label_size=2")
    with pytest.raises(exc.UserError) as unknown:
        data_utils.get_content_type("image/png")
    assert unknown.value.message.startswith("image/png is not an accepted ContentType: csv, libsvm, parquet,")


def test_get_dmatrix_reads_every_file_of_a_folder_tree(image_packages, tmp_path):
    from sagemaker_xgboost_container import data_utils

    (tmp_path / "part").mkdir()
    (tmp_path / "a.libsvm").write_text("1 1:1 2:2\n0 1:3\n")
    (tmp_path / "part" / "b.libsvm").write_text("1 3:1\n")
    matrix = data_utils.get_dmatrix(str(tmp_path), "libsvm")
    assert (matrix.num_row(), sorted(matrix.get_label().tolist())) == (3, [0.0, 1.0, 1.0])

    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "train.csv").write_text("1,0.5,10,20\n0,2.0,30,40\n")
    weighted = data_utils.get_dmatrix(str(csv_dir), "csv", csv_weights=1)
    assert (weighted.num_col(), weighted.get_weight().tolist()) == (2, [0.5, 2.0])
    assert data_utils.get_dmatrix(str(tmp_path / "missing"), "csv") is None


def test_data_checks_fail_with_the_images_wording(image_packages, tmp_path, caplog):
    from sagemaker_algorithm_toolkit import exceptions as exc
    from sagemaker_xgboost_container import data_utils

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.libsvm").write_text("label 1:2\n")
    with pytest.raises(exc.UserError) as invalid:
        data_utils.validate_data_file_path(str(bad), "libsvm")
    assert invalid.value.message == ("First line 'label 1:2\n...' of file 'x.libsvm' is not 'LIBSVM' format. "
                                     "Please ensure the file is in 'LIBSVM' format.")
    (bad / ".hidden").write_text("")
    with pytest.raises(exc.UserError, match="Hidden file found in the data path"):
        data_utils.get_size(str(bad))
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.libsvm").write_text("label 1:3\n")
    with caplog.at_level(logging.WARNING):
        data_utils.check_data_redundancy(str(bad), str(other))
    assert "Suspected identical files found." in caplog.text


def test_toolkit_errors_name_their_cause(image_packages):
    from sagemaker_algorithm_toolkit import exceptions as exc

    assert exc.UserError(caused_by=ValueError("bad eta")).message == "bad eta (caused by ValueError)"
    assert str(exc.AlgorithmError("boom", caused_by=KeyError("k"))) == "boom (caused by KeyError)"
    assert exc.PlatformError().message == "unknown error occurred"


def test_rabit_run_on_one_host_runs_the_function_as_master(image_packages):
    from sagemaker_xgboost_container import distributed

    calls = []
    assert distributed.rabit_run(lambda is_master, n: calls.append((is_master, n)), {"n": 2}, True, ["algo-1"],
                                 "algo-1", update_rabit_args=True) is None  # the image's returns nothing
    assert calls == [(True, 2)]
    with pytest.raises(SystemExit) as leave:
        distributed.rabit_run(lambda: None, {}, False, ["algo-1"], "algo-1")
    assert leave.value.code == 0
    with pytest.raises(ValueError, match="max_connect_attempts must be None or an integer greater than 0"):
        distributed.rabit_run(lambda: None, {}, True, ["algo-1"], "algo-1", max_connect_attempts=0)


def test_rabit_run_has_the_images_signature(image_packages):
    import inspect

    from sagemaker_containers import entry_point
    from sagemaker_xgboost_container import distributed

    parameters = inspect.signature(distributed.rabit_run).parameters
    assert [(name, p.default) for name, p in parameters.items() if p.default is not inspect.Parameter.empty] == [
        ("first_port", None), ("second_port", None), ("max_connect_attempts", None), ("connect_retry_timeout", 3),
        ("update_rabit_args", False)]
    assert distributed._dns_lookup is entry_point._dns_lookup  # one look-up, the toolkit's


# ---------------------------------------------------------------- sagemaker_containers
def test_legacy_encoders_and_mapping(image_packages):
    from sagemaker_containers import _errors
    from sagemaker_containers.beta.framework import encoders, mapping, worker

    assert encoders.encode(np.array([0, 2]), "text/csv") == "0\n2\n"
    assert encoders.decode("1,2\n3,4", "text/csv").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert encoders.decode("a,b", "text/csv").tolist() == ["a", "b"]  # squeezed; the failed cast is swallowed
    assert encoders.decode("1,2,3", "text/csv").shape == (3,)  # one row becomes 1-D, as in the image
    assert encoders.encode(np.array([[1.5, 2.0]]), "text/csv") == "1.5,2.0\n"
    assert encoders.encode(np.array([0, 2]), "application/json") == "[0, 2]"
    assert encoders.decode("[[1, 2]]", "application/json").tolist() == [[1, 2]]
    npy = encoders.encode(np.array([[1.5]]), "application/x-npy")
    assert encoders.decode(npy, "application/x-npy").tolist() == [[1.5]]
    with pytest.raises(_errors.UnsupportedFormatError):
        encoders.decode(b"x", "text/csv; charset=utf-8")
    assert mapping.to_cmd_args({"lr": 0.1, "b": True, "opts": {"y": 2, "x": 1}}) == [
        "-b", "True", "--lr", "0.1", "--opts", "x=1,y=2"]
    assert mapping.to_env_vars({"hosts": ["algo-1"], "name": "n"}) == {"SM_HOSTS": '["algo-1"]', "SM_NAME": "n"}
    response = worker.Response("1\n", "text/csv")
    assert (response.status_code, response.get_data(), response.content_type) == (200, b"1\n", "text/csv")
    with pytest.raises(ImportError, match="container's own machinery"):
        from sagemaker_containers.beta.framework import server  # noqa: F401


def test_training_env_reads_the_config_files(image_packages, tmp_path, monkeypatch):
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({
        "epochs": "3", "name": '"x"', "raw": "not json", "sagemaker_program": '"train.py"',
        "sagemaker_job_name": '"job-1"', "sagemaker_mpi_enabled": "false"}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-2", "algo-1"]}))
    (config / "inputdataconfig.json").write_text(json.dumps({"train": {"ContentType": "csv"}}))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    monkeypatch.delenv("SAGEMAKER_PROGRAM", raising=False)
    import sagemaker_containers
    from sagemaker_containers import _env

    importlib.reload(_env)
    try:
        env = sagemaker_containers.training_env()
        assert env.hyperparameters == {"epochs": 3, "name": "x", "raw": "not json"}
        assert env.additional_framework_parameters == {"sagemaker_mpi_enabled": False}
        assert (env.hosts, env.current_host, env.is_master, env.master_hostname) == (
            ["algo-1", "algo-2"], "algo-2", False, "algo-1")
        assert (env.module_name, env.user_entry_point, env.job_name) == ("train", "train.py", "job-1")
        assert env.channel_input_dirs == {"train": f"{tmp_path}/input/data/train"}
        assert env["model_dir"] == f"{tmp_path}/model"
        variables = env.to_env_vars()
        assert variables["SM_HP_EPOCHS"] == "3" and variables["SM_CHANNEL_TRAIN"] == f"{tmp_path}/input/data/train"
        assert json.loads(variables["SM_TRAINING_ENV"])["hosts"] == ["algo-1", "algo-2"]
    finally:
        monkeypatch.delenv("SAGEMAKER_BASE_DIR")
        importlib.reload(_env)
