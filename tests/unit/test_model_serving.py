"""Serving pieces that need no emulator: plans, codecs, runtime responses, handlers, the worker."""

from __future__ import annotations

import io
import json
import sys
import threading
import uuid

import numpy as np
import pytest

from smlocal.runtime import frameworks
from smlocal.runtime.images import UnresolvableImage, resolve_runtime
from smlocal.runtime.model_server import _UnixConnection
from smlocal.runtime.serving import codecs, handlers, plan, responses, worker
from smlocal.runtime.serving.deployment import Deployment, UnknownVariant, Variant

_IMAGE_PACKAGES = ("sagemaker_containers", "sagemaker_xgboost_container", "sagemaker_algorithm_toolkit")
SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
XGBOOST = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
KNN = "382416733822.dkr.ecr.us-east-1.amazonaws.com/knn:1"
TENSORFLOW = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.13-cpu"
BASE_PYTHON = "236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-310:1.0"
DISTRIBUTION = "885854791233.dkr.ecr.us-east-1.amazonaws.com/sagemaker-distribution-prod:2-cpu"
SCRIPT_ENV = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}


def _resolve(image: str, has_entry_point: bool):
    return resolve_runtime(image, has_entry_point=has_entry_point)


# ---------------------------------------------------------------- plan
def test_hostnames_are_primary_or_pipeline_positions():
    assert plan.container_hostnames([{}]) == ["primary"]
    assert plan.container_hostnames([{}, {"ContainerHostname": "post"}]) == ["container-1", "post"]
    assert plan.container_hostnames([{"ContainerHostname": "only"}]) == ["only"]


def test_images_map_to_handlers():
    [sk] = plan.plan_containers([{"Image": SKLEARN, "ModelDataUrl": "s3://b/m.tar.gz", "Environment": SCRIPT_ENV}],
                                _resolve)
    assert (sk.handler, sk.framework, sk.program, sk.submit_directory) == (
        "sklearn", "sklearn", "inference.py", "/opt/ml/model/code")
    assert sk.model_data == plan.ModelData("s3://b/m.tar.gz", compressed=True)
    [algo] = plan.plan_containers([{"Image": XGBOOST, "ModelDataUrl": "s3://b/m.tar.gz"}], _resolve)
    assert (algo.handler, algo.algorithm, algo.version) == ("algorithm", "xgboost", "1.7-1")
    [script] = plan.plan_containers([{"Image": XGBOOST, "ModelDataUrl": "s3://b/m.tar.gz", "Environment": SCRIPT_ENV}],
                                    _resolve)
    assert script.handler == "xgboost"
    [knn] = plan.plan_containers([{"Image": KNN, "ModelDataSource": {"S3DataSource": {
        "S3Uri": "s3://b/model/", "S3DataType": "S3Prefix", "CompressionType": "None"}}}], _resolve)
    assert (knn.handler, knn.algorithm, knn.model_data) == ("algorithm", "knn", plan.ModelData("s3://b/model/", False))


@pytest.mark.parametrize("container, words", [
    ({"Image": SKLEARN, "ModelDataUrl": "s3://b/m"}, "set SAGEMAKER_PROGRAM"),
    ({"Image": SKLEARN, "Mode": "MultiModel", "Environment": SCRIPT_ENV}, "multi-model endpoints"),
    ({"ModelPackageName": "arn:aws:sagemaker:us-east-1:1:model-package/p/1"}, "create the model again"),
    ({"Environment": SCRIPT_ENV}, "no Image to serve"),
    ({"Image": BASE_PYTHON, "Environment": SCRIPT_ENV}, "with no model server: SageMaker runs the container with 'serve'"),
    ({"Image": DISTRIBUTION, "ModelDataUrl": "s3://b/m"}, "SageMaker Python image"),
    ({"Image": TENSORFLOW, "Environment": SCRIPT_ENV}, "does not emulate the tensorflow serving container"),
    ({"Image": XGBOOST}, "needs model data"),
])
def test_unservable_containers_say_why(container, words):
    with pytest.raises(plan.PlanError, match=words):
        plan.plan_containers([container], _resolve)


def test_unmapped_images_are_unresolvable():
    with pytest.raises(UnresolvableImage, match="tool.smlocal.images"):
        plan.plan_containers([{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1"}], _resolve)


def test_worker_environment_keeps_user_variables_and_smlocal_settings_win():
    [container] = plan.plan_containers(
        [{"Image": XGBOOST, "ModelDataUrl": "s3://b/m", "Environment": {"A": "1", plan.ENV_HANDLER: "evil"}}], _resolve)
    env = plan.worker_environment(container, batch=True, extra={"B": "2"})
    assert env["A"] == "1" and env["B"] == "2" and env["SAGEMAKER_BATCH"] == "true"
    assert env[plan.ENV_HANDLER] == "algorithm" and env[plan.ENV_ALGORITHM] == "xgboost"
    assert env[plan.ENV_SOCKET] == "/opt/ml/serving.sock" and env["SM_MODEL_DIR"] == "/opt/ml/model"
    assert "SAGEMAKER_BATCH" not in plan.worker_environment(container, batch=False)
    assert plan.module_name("inference.py") == "inference" and plan.module_name("pkg/serve") == "serve"


# ---------------------------------------------------------------- codecs
def test_inference_toolkit_codecs():
    assert codecs.tk_decode("1,2\n3,4", "text/csv").tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert codecs.tk_encode(np.array([[1, 2]]), "text/csv") == "1,2\n"
    assert codecs.tk_decode("[[1, 2]]", "application/json").tolist() == [[1, 2]]


def test_unsupported_content_type_has_the_toolkit_message():
    with pytest.raises(codecs.UnsupportedFormatError) as exc:
        codecs.tk_decode(b"x", "text/csv; charset=utf-8")
    assert str(exc.value).startswith("Content type text/csv; charset=utf-8 is not supported by this framework.\n\n")
    assert "Please implement input_fn to to deserialize the request data" in str(exc.value)
    with pytest.raises(codecs.UnsupportedFormatError):
        codecs.tk_encode([1], "application/x-unknown")


def test_flask_adds_a_charset_to_text_types():
    assert codecs.text_mimetype("text/csv") == "text/csv; charset=utf-8"
    assert codecs.text_mimetype("application/json") == "application/json"


# ---------------------------------------------------------------- runtime responses
def test_model_error_carries_the_botocore_modelerror_members():
    response = responses.model_error(status=415, body=b"bad type", container="primary", endpoint="ep",
                                     region="eu-west-1", account="111122223333")
    payload = json.loads(response.body)
    assert response.status == 424 and response.headers["x-amzn-ErrorType"] == "ModelError"
    assert payload["Message"] == (
        'Received client error (415) from primary with message "bad type". See https://eu-west-1.console.aws.amazon'
        ".com/cloudwatch/home?region=eu-west-1#logEventViewer:group=/aws/sagemaker/Endpoints/ep in account "
        "111122223333 for more information.")
    assert (payload["OriginalStatusCode"], payload["OriginalMessage"]) == (415, "bad type")
    assert payload["LogStreamArn"] == "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/sagemaker/Endpoints/ep"
    server = json.loads(responses.model_error(status=503, body=b"x", container="container-2", endpoint="ep",
                                              region="r", account="a").body)
    assert server["Message"].startswith("Received server error (503) from container-2 with message")


def test_not_found_and_failure_texts():
    body = json.loads(responses.endpoint_not_found("ep", "123456789012").body)
    assert body == {"Message": "Endpoint ep of account 123456789012 not found."}
    assert responses.ping_failure_reason("primary", "AllTraffic") == (
        "The primary container for production variant AllTraffic did not pass the ping health check. "
        "Please check CloudWatch logs for this endpoint.")
    assert responses.resolved_image(SKLEARN).startswith(
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn@sha256:")


# ---------------------------------------------------------------- handlers (in process)
@pytest.fixture
def image_packages(monkeypatch):
    """Puts a framework image's packages on sys.path, as the worker's PYTHONPATH does."""
    def put(framework: str) -> None:
        for folder in reversed(frameworks.package_dirs(framework)):
            monkeypatch.syspath_prepend(folder)

    yield put
    for name in [m for m in sys.modules if m.split(".")[0] in _IMAGE_PACKAGES]:
        del sys.modules[name]


def _user_module(tmp_path, source: str) -> dict[str, str]:
    name = f"user_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(source)
    return {plan.ENV_CODE_DIR: str(tmp_path), "SAGEMAKER_PROGRAM": f"{name}.py"}


SUM_MODEL = """
class Model:
    def predict(self, x):
        return x.sum(axis=1)

def model_fn(model_dir):
    return Model()
"""


def test_sklearn_handler_defaults(tmp_path, image_packages):
    image_packages("sklearn")
    handler = handlers.SklearnHandler(_user_module(tmp_path, SUM_MODEL))
    ok = handler.invoke(b"1,2\n3,4", "text/csv", "text/csv")
    assert (ok.status, ok.body, ok.content_type) == (200, b"3.0\n7.0\n", "text/csv; charset=utf-8")
    assert handler.invoke(b"[[1, 2]]", None, None).body == b"[3.0]"  # JSON is the default both ways
    npy = handler.invoke(codecs.array_to_npy(np.array([[1, 2]])), "application/x-npy", "application/x-npy")
    assert np.load(io.BytesIO(npy.body)).tolist() == [3]
    failed = handler.invoke(b"x", "application/x-unknown", None)
    assert (failed.status, failed.body.decode(), failed.content_type) == (500, handlers.FLASK_500, "text/html")
    assert handler.invoke(b"[[1, 2]]", "application/json", "image/png").status == 500


def test_sklearn_handler_user_functions_and_contract_errors(tmp_path, image_packages):
    image_packages("sklearn")
    source = SUM_MODEL + ("\ndef transform_fn(model, data, content_type, accept):\n"
                          "    return 'got ' + data, 'text/plain'\n")
    handler = handlers.SklearnHandler(_user_module(tmp_path, source))
    result = handler.invoke(b"[1]", "application/json", None)
    assert (result.status, result.body, result.content_type) == (200, b"got [1]", "text/plain; charset=utf-8")
    with pytest.raises(ValueError, match="Cannot use transform_fn"):
        handlers.SklearnHandler(_user_module(tmp_path, source + "\ndef input_fn(d, c):\n    return d\n"))
    with pytest.raises(NotImplementedError, match="Please provide a model_fn implementation"):
        handlers.SklearnHandler(_user_module(tmp_path, "X = 1\n"))


def test_toolkit_handler_errors_carry_message_and_trace(tmp_path):
    source = ("def model_fn(model_dir, context):\n    return 2\n"
              "def predict_fn(data, model):\n    return data * model\n")
    handler = handlers.ToolkitHandler(_user_module(tmp_path, source))
    assert handler.invoke(b"[1, 2]", "application/json", "application/json").body == b"[2, 4]"
    failed = handler.invoke(b"x", "application/x-unknown", None)
    assert failed.status == 500 and failed.body.decode().startswith("Content type application/x-unknown is not")
    assert "Traceback" in failed.body.decode()


def test_xgboost_framework_handler_uses_dmatrix_and_mms_errors(tmp_path, image_packages):
    image_packages("xgboost")
    source = ("class Model:\n    def predict(self, data, validate_features=True):\n"
              "        return [data.num_row(), data.num_col()]\n"
              "def model_fn(model_dir):\n    return Model()\n")
    handler = handlers.XGBoostFrameworkHandler(_user_module(tmp_path, source))
    assert handler.invoke(b"1,2,3\n4,5,6", "text/csv", "text/csv").body == b"2\n3\n"
    failed = handler.invoke(b"{}", "application/json", None)
    assert (failed.status, failed.body.decode()) == (503, handlers.MMS_PREDICTION_FAILED)


# ---------------------------------------------------------------- the worker's HTTP server
class _Echo(handlers.Handler):
    def invoke(self, body, content_type, accept):
        return handlers.Response(200, body[::-1], f"{content_type}|{accept}")


def test_worker_serves_ping_and_invocations_with_keep_alive(tmp_path):
    path = str(tmp_path / "w.sock")
    server = worker.serve(path, _Echo())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        conn = _UnixConnection(path, timeout=5)
        conn.request("GET", "/ping")
        ping = conn.getresponse()
        assert (ping.status, ping.read()) == (200, b"")
        sock = conn.sock
        conn.request("POST", "/invocations", body=b"abc", headers={"Content-Type": "text/csv", "Accept": "x/y"})
        answer = conn.getresponse()
        assert (answer.status, answer.read(), answer.getheader("Content-Type")) == (200, b"cba", "text/csv|x/y")
        assert conn.sock is sock  # the same connection served both requests
        conn.request("GET", "/execution-parameters")
        missing = conn.getresponse()
        assert missing.status == 404 and missing.read() == b"Not Found"
        conn.close()
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- variant choice
def _variant(name: str, weight: float) -> Variant:
    return Variant(name=name, weight=weight, instance_count=1, server=None,  # type: ignore[arg-type]
                   writer=None, images=[])  # type: ignore[arg-type]


def test_variants_are_picked_by_weight_or_target():
    deployment = Deployment("cfg", [_variant("A", 0.0), _variant("B", 1.0)])
    assert {deployment.pick(None).name for _ in range(50)} == {"B"}
    assert deployment.pick("A").name == "A"
    with pytest.raises(UnknownVariant):
        deployment.pick("C")
    assert Deployment("cfg", [_variant("A", 0.0), _variant("B", 0.0)]).pick(None).name == "A"
