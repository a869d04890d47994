"""smlocal's framework images, run as SageMaker runs them: ``docker run IMAGE train`` with a real
``/opt/ml`` bind-mounted, ``docker run IMAGE serve`` answering on port 8080, processing with a
ContainerEntrypoint. The images are built with ``smlocal images build`` (CI builds them on
``containers/base/build-base.sh``'s base first; the fixture builds what is missing or was built
from other sources, layers cached: docker_images.py).

Without a Docker engine the tests skip with the reason; CI (``SMLOCAL_CI=1``) fails instead.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from docker_images import current_images, unavailable
from smlocal.runtime import image_build
from smlocal.runtime.image_catalog import local_tag

pytestmark = pytest.mark.docker

LABELS = {"smlocal.test": "1"}
SKLEARN_URI = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST_URI = "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1"
HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")


@pytest.fixture(scope="module")
def engine():
    try:
        return image_build.docker_client()
    except image_build.ImageBuildError as exc:
        unavailable(str(exc))


@pytest.fixture(scope="module")
def images(engine, tmp_path_factory):
    """Both framework images in the engine, current builds of this checkout (docker_images)."""
    return current_images(engine, tmp_path_factory)


def _opt_ml(root: Path, channels: dict[str, dict[str, str]], hyperparameters: dict, *, encode: bool = True) -> Path:
    """A job folder as the runner lays it out: /opt/ml/input/config/*.json and channel data.

    ``encode``: the hyperparameter values JSON-encoded, as the SDK's framework estimators send them
    (built-in algorithms get plain strings)."""
    opt_ml = root / "opt_ml"
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    for folder in ("model", "output", "code"):
        (opt_ml / folder).mkdir()
    data_config = {}
    for channel, files in channels.items():
        folder = opt_ml / "input" / "data" / channel
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
        data_config[channel] = {"ContentType": "text/csv", "TrainingInputMode": "File",
                                "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
    (config / "inputdataconfig.json").write_text(json.dumps(data_config))
    (config / "hyperparameters.json").write_text(json.dumps(
        {k: json.dumps(v) if encode else str(v) for k, v in hyperparameters.items()}))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
    return opt_ml


def _run(engine, image: str, command, volumes: dict[str, dict], entrypoint=None, environment=None):
    """Runs a container to its end; returns (exit code, logs)."""
    container = engine.containers.run(image, command, entrypoint=entrypoint, hostname="algo-1", detach=True,
                                      volumes=volumes, environment=environment or {}, labels=LABELS)
    try:
        code = container.wait(timeout=300)["StatusCode"]
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def _line_data(n: int = 60) -> str:
    return "".join(f"{2 * x + 1},{x}\n" for x in (i / 4 for i in range(n)))


TRAIN_SKLEARN = """
import argparse, os, sys
import joblib, pandas as pd, sklearn
from sklearn.linear_model import LinearRegression
parser = argparse.ArgumentParser()
parser.add_argument("--fit-intercept", default="True")
args = parser.parse_args()
frame = pd.read_csv(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "train.csv"), header=None)
model = LinearRegression(fit_intercept=args.fit_intercept == "True").fit(frame.iloc[:, 1:], frame.iloc[:, 0])
joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
print("INSIDE", os.path.exists("/.dockerenv"), sys.executable, sklearn.__version__, os.environ["SM_CURRENT_HOST"])
"""

INFERENCE_SKLEARN = """
import os, joblib
def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""


def test_sklearn_train_runs_the_script_from_a_source_dir_through_the_toolkit(engine, images, tmp_path):
    assert local_tag(SKLEARN_URI) == images["sklearn"]
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN_SKLEARN)
    opt_ml = _opt_ml(tmp_path, {"train": {"train.csv": _line_data()}},
                     {"sagemaker_program": "train.py", "sagemaker_submit_directory": "/opt/src",
                      "fit-intercept": "True"})
    code, logs = _run(engine, images["sklearn"], "train", {
        str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}, str(source): {"bind": "/opt/src", "mode": "ro"}})
    assert code == 0, logs
    assert "INSIDE True /opt/venv/bin/python 1.2.2 algo-1" in logs
    assert "sagemaker-training-toolkit" in logs  # the real toolkit ran it
    assert (opt_ml / "model" / "model.joblib").stat().st_size > 0
    assert (opt_ml / "output" / "success").exists()
    assert (opt_ml / "code" / "train.py").exists()  # the toolkit fetched the source dir itself


def test_sklearn_train_from_a_sourcedir_tar_and_a_failing_script(engine, images, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN_SKLEARN)
    (source / "helper.py").write_text("VALUE = 42\n")
    opt_ml = _opt_ml(tmp_path, {"train": {"train.csv": _line_data()}}, {})
    tar_path = opt_ml / "input" / "sourcedir.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in source.iterdir():
            tar.add(path, arcname=path.name)
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps({
        "sagemaker_program": json.dumps("train.py"),
        "sagemaker_submit_directory": json.dumps("/opt/ml/input/sourcedir.tar.gz")}))
    code, logs = _run(engine, images["sklearn"], "train", {str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}})
    assert code == 0, logs
    assert (opt_ml / "model" / "model.joblib").exists()
    assert (opt_ml / "code" / "helper.py").read_text() == "VALUE = 42\n"

    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "train.py").write_text("raise ValueError('bad column')\n")
    opt_ml = _opt_ml(tmp_path / "failing-job", {"train": {"train.csv": "1,1\n"}},
                     {"sagemaker_program": "train.py", "sagemaker_submit_directory": "/opt/src"})
    code, logs = _run(engine, images["sklearn"], "train", {
        str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}, str(failing): {"bind": "/opt/src", "mode": "ro"}})
    assert code != 0
    # the scikit-learn image runs the script without capturing stderr: an empty ErrorMessage, the
    # traceback in the logs (as smlocal's process backend reports it, runtime/toolkit_failure.py)
    failure = (opt_ml / "output" / "failure").read_text()
    assert failure.startswith('ExecuteUserScriptError:\nExitCode 1\nErrorMessage ""\nCommand "/opt/venv/bin/python -- train.py"')
    assert "ValueError: bad column" in logs


class _Serving:
    """A ``serve`` container with port 8080 published on loopback."""

    def __init__(self, engine, image: str, opt_ml: Path, environment: dict[str, str]):
        self.container = engine.containers.run(
            image, "serve", detach=True, volumes={str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}},
            environment=environment, labels=LABELS, ports={"8080/tcp": ("127.0.0.1", None)},
            name=f"smlocal-test-serve-{uuid.uuid4().hex[:8]}")
        self.container.reload()
        self.port = int(self.container.ports["8080/tcp"][0]["HostPort"])

    def request(self, method: str, path: str, body: bytes = b"", headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("Content-Type")
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 90) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                if self.request("GET", "/ping")[0] == 200:
                    return time.monotonic() - started
            except (ConnectionError, socket.timeout, http.client.HTTPException, OSError):
                pass
            self.container.reload()
            if self.container.status == "exited":
                raise AssertionError(self.container.logs().decode(errors="replace"))
            time.sleep(0.2)
        raise AssertionError(f"/ping never answered: {self.container.logs().decode(errors='replace')}")

    def close(self) -> None:
        self.container.remove(force=True)


def test_sklearn_serve_loads_the_model_with_the_inference_script_of_model_tar_code(engine, images, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN_SKLEARN)
    opt_ml = _opt_ml(tmp_path, {"train": {"train.csv": _line_data()}},
                     {"sagemaker_program": "train.py", "sagemaker_submit_directory": "/opt/src"})
    code, logs = _run(engine, images["sklearn"], "train", {
        str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}, str(source): {"bind": "/opt/src", "mode": "ro"}})
    assert code == 0, logs
    # what SageMaker hosting mounts: the model.tar.gz unpacked, with the SDK's repacked code/ folder
    serving = tmp_path / "serving"
    (serving / "model" / "code").mkdir(parents=True)
    (serving / "model" / "model.joblib").write_bytes((opt_ml / "model" / "model.joblib").read_bytes())
    (serving / "model" / "code" / "inference.py").write_text(INFERENCE_SKLEARN)
    server = _Serving(engine, images["sklearn"], serving,
                      {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"})
    try:
        server.wait_ready()
        status, body, _ = server.request("POST", "/invocations", b"[[10.0], [0.5]]",
                                         {"Content-Type": "application/json", "Accept": "application/json"})
        assert status == 200, body
        assert [round(v, 6) for v in json.loads(body)] == [21.0, 2.0]  # y = 2x + 1
        # the image's Flask worker answers an UnsupportedFormatError with its 500 page (as the process
        # backend's sklearn handler does, tests/integration/test_serving.py)
        status, body, _ = server.request("POST", "/invocations", b"x", {"Content-Type": "application/x-unknown"})
        assert status == 500 and body.startswith(b"<!DOCTYPE")
        assert "UnsupportedFormatError" in server.container.logs().decode(errors="replace")
        assert server.request("GET", "/nothing")[0] == 404
    finally:
        server.close()


def test_xgboost_builtin_algorithm_trains_and_serves_without_an_entry_point(engine, images, tmp_path):
    assert local_tag(XGBOOST_URI) == images["xgboost"]
    opt_ml = _opt_ml(tmp_path, {"train": {"train.csv": _line_data(200)},
                                "validation": {"validation.csv": _line_data(40)}},
                     {"num_round": 30, "objective": "reg:squarederror", "max_depth": 4, "eta": 0.3}, encode=False)
    code, logs = _run(engine, images["xgboost"], "train", {str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}},
                      environment={"SMLOCAL_ALGO_VERSION": "1.7-1"})
    assert code == 0, logs
    assert "[29]#011train-rmse:" in logs and "validation-rmse:" in logs
    assert (opt_ml / "model" / "xgboost-model").stat().st_size > 0
    server = _Serving(engine, images["xgboost"], opt_ml, {})
    try:
        server.wait_ready()
        status, body, content_type = server.request("POST", "/invocations", b"4\n10", {"Content-Type": "text/csv"})
        assert status == 200, body
        assert content_type.startswith("text/csv")
        predictions = [float(v) for v in body.decode().split(",")]
        assert abs(predictions[0] - 9) < 1 and abs(predictions[1] - 21) < 1.5
        status, _, _ = server.request("POST", "/invocations", b'{"x": 1}', {"Content-Type": "application/json"})
        assert status == 415
    finally:
        server.close()

    opt_ml_bad = _opt_ml(tmp_path / "bad", {"train": {"train.csv": _line_data(20)}},
                         {"objective": "reg:squarederror"}, encode=False)
    code, _ = _run(engine, images["xgboost"], "train", {str(opt_ml_bad): {"bind": "/opt/ml", "mode": "rw"}})
    assert code != 0
    assert "Missing required hyperparameter: num_round" in (opt_ml_bad / "output" / "failure").read_text()


def test_xgboost_script_mode_imports_the_images_packages(engine, images, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(
        "import os, xgboost, numpy as np\n"
        "from sagemaker_xgboost_container import data_utils\n"
        "import sagemaker_containers\n"
        "data = np.loadtxt(os.path.join(os.environ['SM_CHANNEL_TRAIN'], 'train.csv'), delimiter=',')\n"
        "booster = xgboost.train({'objective': 'reg:squarederror'}, xgboost.DMatrix(data[:, 1:], label=data[:, 0]), 5)\n"
        "booster.save_model(os.path.join(os.environ['SM_MODEL_DIR'], 'xgboost-model.json'))\n"
        "print('XGB', xgboost.__version__, hasattr(data_utils, 'get_content_type'))\n")
    opt_ml = _opt_ml(tmp_path, {"train": {"train.csv": _line_data()}}, {})
    with tarfile.open(opt_ml / "sourcedir.tar.gz", "w:gz") as tar:
        tar.add(source / "train.py", arcname="train.py")
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps({
        "sagemaker_program": json.dumps("train.py"), "sagemaker_submit_directory": json.dumps("/opt/ml/sourcedir.tar.gz")}))
    code, logs = _run(engine, images["xgboost"], "train", {str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}})
    assert code == 0, logs
    assert "XGB 3.0.5 True" in logs
    assert (opt_ml / "model" / "xgboost-model.json").exists()

    # serving in script mode: the inference program's model_fn, the image's default input/output
    (opt_ml / "model" / "code").mkdir()
    (opt_ml / "model" / "code" / "inference.py").write_text(
        "import os, xgboost\n"
        "def model_fn(model_dir):\n"
        "    booster = xgboost.Booster()\n"
        "    booster.load_model(os.path.join(model_dir, 'xgboost-model.json'))\n"
        "    return booster\n")
    server = _Serving(engine, images["xgboost"], opt_ml, {"SAGEMAKER_PROGRAM": "inference.py"})
    try:
        server.wait_ready()
        status, body, content_type = server.request("POST", "/invocations", b"4\n10", {"Content-Type": "text/csv"})
        assert status == 200, body
        assert content_type.startswith("application/json")  # the default Accept
        values = json.loads(body)
        assert len(values) == 2 and abs(values[0] - 9) < 2 and abs(values[1] - 21) < 2
    finally:
        server.close()


def test_processing_runs_the_container_entrypoint(engine, images, tmp_path):
    processing = tmp_path / "processing"
    (processing / "input" / "code").mkdir(parents=True)
    (processing / "input" / "data").mkdir()
    (processing / "output" / "train").mkdir(parents=True)
    (processing / "input" / "data" / "raw.csv").write_text("a,b\n1,2\n3,4\n")
    (processing / "input" / "code" / "preprocessing.py").write_text(
        "import sys, pandas as pd\n"
        "frame = pd.read_csv('/opt/ml/processing/input/data/raw.csv')\n"
        "frame['c'] = frame.a + frame.b\n"
        "frame.to_csv('/opt/ml/processing/output/train/out.csv', index=False)\n"
        "print('ARGS', sys.argv[1:], sys.executable)\n")
    code, logs = _run(engine, images["sklearn"], ["--train-test-split", "0.2"],
                      {str(processing): {"bind": "/opt/ml/processing", "mode": "rw"}},
                      entrypoint=["python3", "/opt/ml/processing/input/code/preprocessing.py"])
    assert code == 0, logs
    assert "ARGS ['--train-test-split', '0.2'] /opt/venv/bin/python3" in logs
    assert (processing / "output" / "train" / "out.csv").read_text().splitlines() == ["a,b,c", "1,2,3", "3,4,7"]


@pytest.mark.parametrize("name", ["sklearn", "xgboost"])
def test_images_carry_no_wheel_and_no_certificate_beyond_the_base_images(engine, images, name):
    image = engine.images.get(images[name])
    base = image.labels.get("smlocal.base-image")
    assert base, image.labels
    script = ("find / -xdev \\( -name '*.whl' -o -path '/tmp/wheels' \\) -print; "
              "ls /usr/local/share/ca-certificates 2>/dev/null; "
              "sha256sum /etc/ssl/certs/ca-certificates.crt 2>/dev/null; ls /etc/ssl/certs | wc -l")
    code, found = _run(engine, images[name], ["-c", script], {}, entrypoint=["sh"])
    code_base, in_base = _run(engine, base, ["-c", script], {}, entrypoint=["sh"])
    assert code == 0 and code_base == 0
    assert found == in_base  # no wheel, the same CA bundle and certificate folder as the base
    # the host's own extra CAs (TLS interception here) are in no file of the image
    for pem in sorted(HOST_EXTRA_CAS.glob("*.crt")):
        lines = [line for line in pem.read_text().splitlines() if line and not line.startswith("-----")]
        needle = max(lines, key=len)
        code, out = _run(engine, images[name], ["-c", f"grep -rlF '{needle}' /etc /opt /usr /root || true"], {},
                         entrypoint=["sh"])
        assert out.strip() == "", (pem, out)


def test_cli_lists_the_images_as_present(images):
    done = subprocess.run([sys.executable, "-m", "smlocal.cli", "images"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert rows["sklearn"][1:3] == [images["sklearn"], "present"]
    assert rows["xgboost"][1:3] == [images["xgboost"], "present"]
