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
STRATEGIES = ShapeStrategies()
# No shrinking: a failure names its operation and mutation, and shrinking a server round trip is slow.
FUZZ = settings(max_examples=40, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck))


def _post(port: int, target: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("POST", "/", body=body,
                           headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
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
    shape = MODEL.operation_model(operation).input_shape
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
        status, payload = _post(port, f"SageMaker.{operation}", body)
        _check(operation, status, payload, kind)

    run()


@pytest.mark.parametrize("shard", range(SHARDS))
def test_no_request_gets_a_5xx(emulator, shard):
    operations = emulator.service.operations[shard::SHARDS]
    assert operations, "the service registry lists no operation"
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
