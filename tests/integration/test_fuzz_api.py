"""Property-based fuzz of every SageMaker operation smlocal implements, over raw HTTP.

For each operation the service registry holds, hypothesis draws requests from botocore's input
shape (see ``fuzz_support``), sends some as drawn and the rest broken (wrong types, missing
required members, huge strings, deep nesting, junk NextToken, bad timestamps, unknown members,
bodies that are no JSON object), and checks every answer: no 5xx, an AWS-shaped JSON error body
for every 4xx, an answer within the timeout, and a server that still answers afterwards.

The operations are split into shards so xdist can spread them; runs are derandomized and use no
example database, so CI sees the same requests every time.
"""

from __future__ import annotations

import http.client
import json

import botocore.session
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from fuzz_support import (BROKEN_BODIES, PRIMING_ORDER, TEMPLATES, ShapeStrategies, break_request, encode,
                          request_for)

SHARDS = 4
TIMEOUT = 30.0
MODEL = botocore.session.get_session().get_service_model("sagemaker")
# the SageMaker Metrics service (experiment runs' metrics) answers on the same port, over REST-JSON
METRICS_MODEL = botocore.session.get_session().get_service_model("sagemaker-metrics")
STRATEGIES = ShapeStrategies()
# No shrinking: a failure names its operation and mutation, and shrinking a server round trip is slow.
FUZZ = settings(max_examples=40, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck))


def _model_of(operation: str):
    return MODEL if operation in MODEL.operation_names else METRICS_MODEL


def _send(port: int, operation: str, body: bytes) -> tuple[int, bytes]:
    """The operation's request: JSON 1.1 for SageMaker, its REST path for the Metrics service."""
    if operation in MODEL.operation_names:
        return _post(port, f"SageMaker.{operation}", body)
    http_ = METRICS_MODEL.operation_model(operation).http
    return _post(port, None, body, method=http_["method"], path=http_["requestUri"])


def _post(port: int, target: str | None, body: bytes, method: str = "POST", path: str = "/") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    headers = {"Content-Type": "application/x-amz-json-1.1"} if target else {"Content-Type": "application/json"}
    if target:
        headers["X-Amz-Target"] = target
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()  # a hang fails here with a timeout
        return response.status, response.read()
    finally:
        connection.close()


def _check(operation: str, status: int, payload: bytes, what: str) -> None:
    assert status < 500, f"{operation} ({what}) answered {status}: {payload[:500]!r}"
    if status >= 400:
        error = json.loads(payload)
        assert isinstance(error.get("__type"), str) and error["__type"], (operation, what, payload[:300])
        assert "message" in error, (operation, what, payload[:300])


def _fuzz(port: int, operation: str) -> None:
    shape = _model_of(operation).operation_model(operation).input_shape
    requests = request_for(operation, shape, STRATEGIES)

    @FUZZ
    @given(data=st.data())
    def run(data):
        request = data.draw(requests, label="request")
        kind = data.draw(st.sampled_from(["as drawn", "broken", "broken", "not an object"]), label="kind")
        if kind == "not an object":
            body = data.draw(BROKEN_BODIES, label="body")
        else:
            if kind == "broken" and shape is not None:
                kind, request = break_request(data, request, shape)
            body = encode(request)
        status, payload = _send(port, operation, body)
        _check(operation, status, payload, kind)

    run()


@pytest.mark.parametrize("shard", range(SHARDS))
def test_no_request_gets_a_5xx(emulator, shard):
    operations = emulator.service.operations[shard::SHARDS]
    assert operations, "the service registry lists no operation"
    unknown = [o for o in operations if o not in MODEL.operation_names and o not in METRICS_MODEL.operation_names]
    assert not unknown, f"operations of no service smlocal answers: {unknown}"
    for operation in PRIMING_ORDER:  # resources the fuzzed Describe/Update/Start calls can meet
        status, payload = _post(emulator.port, f"SageMaker.{operation}", json.dumps(TEMPLATES[operation][0]).encode())
        _check(operation, status, payload, "template")
    failures = []
    for operation in operations:
        try:
            _fuzz(emulator.port, operation)
        except Exception as exc:  # noqa: BLE001 - keep fuzzing the other operations, report them all
            parts = exc.exceptions if isinstance(exc, ExceptionGroup) else [exc]
            failures += [f"{operation}: {type(e).__name__}: {str(e)[:800]}" for e in parts]
    status, payload = _post(emulator.port, "SageMaker.ListTrainingJobs", b"{}")
    assert status == 200, payload  # still serving
    assert not failures, "\n".join(failures)
