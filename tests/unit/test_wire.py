"""The gateway's wire helpers: framing, bounded bodies, bounded JSON, X-Amz-Target routing."""

from __future__ import annotations

import io
import json

import pytest

from smlocal.gateway.wire import (MAX_JSON_DEPTH, SerializationError, BodyTooLarge, framing_problem, framing_refusal,
                                  moto_serves_target, parse_json_object, read_body, request_timeout)


@pytest.mark.parametrize("values", [["abc"], ["-5"], ["+5"], ["1e3"], ["0x1"], ["5_0"], ["٣"], [""], ["9" * 19]])
def test_malformed_content_length_is_a_problem(values):
    assert "Invalid Content-Length" in framing_problem(values)


@pytest.mark.parametrize("values", [[], ["0"], ["12"], [" 12 "], ["12", "12"]])
def test_well_formed_content_length_is_none(values):
    assert framing_problem(values) is None


def test_conflicting_lengths_and_chunked_encoding():
    assert framing_problem(["1", "2"]) == "Conflicting Content-Length headers: 1, 2."
    assert framing_problem(["abc"], "chunked") is None  # the server finds the end of a chunked body


def test_refusal_speaks_json_to_a_target_and_xml_otherwise():
    status, headers, body = framing_refusal("bad <length>", "SageMaker.ListModels")
    assert status == 400 and json.loads(body) == {"__type": "SerializationException", "message": "bad <length>"}
    assert ("Connection", "close") in headers and ("Content-Length", str(len(body))) in headers
    status, headers, body = framing_refusal("bad <length>", None)
    assert b"<Code>BadRequest</Code><Message>bad &lt;length&gt;</Message>" in body


def _environ(body: bytes, length: str | None = None, **extra) -> dict:
    environ = {"wsgi.input": io.BytesIO(body), **extra}
    if length is not None:
        environ["CONTENT_LENGTH"] = length
    return environ


def test_read_body_reads_exactly_the_announced_length_once():
    environ = _environ(b"{}trailing", "2")
    assert read_body(environ, 10) == b"{}"
    assert read_body(environ, 10) == b"{}"  # cached: the stream is not read again


def test_read_body_refuses_before_reading_when_the_length_is_over_the_limit():
    environ = _environ(b"x" * 20, "20")
    with pytest.raises(BodyTooLarge) as caught:
        read_body(environ, 10)
    assert caught.value.status == 413 and environ["wsgi.input"].tell() == 0


def test_read_body_of_a_short_or_malformed_body():
    with pytest.raises(SerializationError, match=r"shorter than its Content-Length \(2 of 9 bytes\)"):
        read_body(_environ(b"{}", "9"), 100)
    with pytest.raises(SerializationError, match="Invalid Content-Length"):
        read_body(_environ(b"{}", "-1"), 100)


def test_read_body_of_a_terminated_stream_is_bounded():
    assert read_body(_environ(b"abc", None, **{"wsgi.input_terminated": True}), 3) == b"abc"
    with pytest.raises(BodyTooLarge):
        read_body(_environ(b"abcd", None, **{"wsgi.input_terminated": True}), 3)


def test_json_depth_limit():
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json_object(f'{{"a":{at_limit[1:-1]}}}'.encode()) == {"a": json.loads(at_limit[1:-1])}
    for depth in (MAX_JSON_DEPTH + 1, 5000, 200_000):
        with pytest.raises(SerializationError, match="nested deeper than 100 levels"):
            parse_json_object(('{"a":' + "[" * depth + "]" * depth + "}").encode())


@pytest.mark.parametrize("body", [b"[]", b"1", b'"x"', b"null", b"{", b'{"a": NaN}', b'{"a": -Infinity}',
                                  b"\xff", b'{"a": ' + b"1" * 5000 + b"}"])
def test_bodies_that_are_no_json_object(body):
    with pytest.raises(SerializationError) as caught:
        parse_json_object(body)
    assert caught.value.code == "SerializationException" and caught.value.status == 400


def test_empty_body_is_an_empty_object():
    assert parse_json_object(b"") == {} and parse_json_object(b" \n") == {}


@pytest.mark.parametrize("target, served", [
    ("Logs_20140328.DescribeLogGroups", True), ("AmazonSQS.ListQueues", True), ("DynamoDB_20120810.ListTables", True),
    ("Logs_20140328.NoSuchOperation", False), ("SageMaker.ListModels", False), ("SageMaker", False),
    ("Foo.Bar", False), ("", False), (".", False), ("Logs_20140328.", False),
])
def test_moto_serves_only_known_json_targets(target, served):
    assert moto_serves_target(target) is served


def test_request_timeout_from_the_environment(monkeypatch):
    monkeypatch.delenv("SMLOCAL_REQUEST_TIMEOUT", raising=False)
    assert request_timeout() == 60.0
    monkeypatch.setenv("SMLOCAL_REQUEST_TIMEOUT", "2.5")
    assert request_timeout() == 2.5
    monkeypatch.setenv("SMLOCAL_REQUEST_TIMEOUT", "-1")
    assert request_timeout() == 60.0
