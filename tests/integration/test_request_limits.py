"""Bounded requests over raw sockets: framing, body size, JSON depth, silent clients, unknown targets.

Each test speaks HTTP by hand to the session emulator, because clients such as botocore never send
what these tests send.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from smlocal.gateway.wire import MAX_CONTROL_PLANE_BODY, TIMEOUT_ENV

LIST_JOBS = "SageMaker.ListTrainingJobs"


def _exchange(port: int, head: str, body: bytes = b"", *, half_close: bool = True, timeout: float = 10.0):
    """Sends ``head`` (request line + headers, without the blank line) and ``body``; returns (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return _response(sock)


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _request(target: str | None, length: str, extra: str = "", path: str = "/") -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    if target:
        lines += [f"X-Amz-Target: {target}", "Content-Type: application/x-amz-json-1.1"]
    return "\n".join(lines + ([extra] if extra else []))


def _error(body: bytes) -> tuple[str, str]:
    doc = json.loads(body)
    return doc["__type"], doc["message"]


@pytest.mark.parametrize("length", ["abc", "-5", "1e3", "+7", "0x10", "5 5"])
def test_malformed_content_length_is_a_400_for_sagemaker(emulator, length):
    started = time.monotonic()
    status, headers, body = _exchange(emulator.port, _request(LIST_JOBS, length), b"{}", half_close=False)
    assert status == 400
    assert _error(body)[0] == "SerializationException"
    assert headers["x-amzn-errortype"] == "SerializationException"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("length", ["abc", "-5"])
def test_malformed_content_length_is_a_400_for_s3(emulator, length):
    """moto's readers never see it: a form-encoded body with a negative length used to hang the thread."""
    head = _request(None, length, "Content-Type: application/x-www-form-urlencoded")
    status, _, body = _exchange(emulator.port, head, b"Action=ListBuckets", half_close=False)
    assert status == 400
    assert b"<Code>BadRequest</Code>" in body and b"Content-Length" in body


def test_conflicting_content_lengths_are_refused(emulator):
    status, _, body = _exchange(emulator.port, _request(LIST_JOBS, "2", "Content-Length: 3"), b"{}")
    assert status == 400 and "Conflicting" in _error(body)[1]


def test_body_shorter_than_its_content_length_is_a_400(emulator):
    status, _, body = _exchange(emulator.port, _request(LIST_JOBS, "100"), b"{}")
    assert status == 400
    code, message = _error(body)
    assert code == "SerializationException" and "shorter than its Content-Length (2 of 100 bytes)" in message


def test_control_plane_body_over_16_mib_is_refused_unread(emulator):
    """The announced length decides: nothing is read, and the client still gets the answer."""
    status, headers, body = _exchange(emulator.port, _request(LIST_JOBS, str(MAX_CONTROL_PLANE_BODY + 1)),
                                      b"{}", half_close=False)
    assert status == 413
    assert _error(body)[0] == "RequestEntityTooLargeException"
    assert headers["x-amzn-errortype"] == "RequestEntityTooLargeException"


def test_invoke_body_over_the_model_limit_is_a_validation_error(emulator):
    """InvokeEndpoint's Body is at most 6,291,456 bytes in the sagemaker-runtime model."""
    status, _, body = _exchange(emulator.port, _request(None, str(6291457), path="/endpoints/nope/invocations"),
                                b"x" * 1024, half_close=False)
    assert status == 400
    code, message = _error(body)
    assert code == "ValidationError"
    assert message.endswith("Member must have length less than or equal to 6291456")


@pytest.mark.parametrize("depth", [101, 2000, 100_000])
def test_deep_json_is_a_serialization_exception(emulator, depth):
    """Past 100 levels the body is refused; at 100 it decodes (the unknown member is then ignored)."""
    payload = ('{"NameContains":' + "[" * depth + "]" * depth + "}").encode()
    status, _, body = _exchange(emulator.port, _request(LIST_JOBS, str(len(payload))), payload)
    assert status == 400
    assert _error(body) == ("SerializationException", "Request body is nested deeper than 100 levels.")
    payload = ('{"Unknown":' + "[" * 99 + "]" * 99 + "}").encode()
    status, _, body = _exchange(emulator.port, _request(LIST_JOBS, str(len(payload))), payload)
    assert status == 200 and "TrainingJobSummaries" in json.loads(body), body


def test_nan_is_not_json(emulator):
    payload = b'{"MaxResults": NaN}'
    status, _, body = _exchange(emulator.port, _request(LIST_JOBS, str(len(payload))), payload)
    assert status == 400 and _error(body) == ("SerializationException", "Request body is not valid JSON")


def test_silent_client_is_answered_and_released(emulator, monkeypatch):
    """Headers sent, body announced, nothing more: a 400 once the read timeout passes, then the socket closes."""
    monkeypatch.setenv(TIMEOUT_ENV, "1")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=15) as sock:
        sock.sendall(_request(LIST_JOBS, "50").replace("\n", "\r\n").encode() + b"\r\n\r\n{")
        status, _, body = _response(sock)  # the server closes the connection after answering
    elapsed = time.monotonic() - started
    assert status == 400
    assert "not received in time (1 of 50 bytes)" in _error(body)[1]
    assert 0.9 < elapsed < 10


def test_client_silent_before_its_headers_are_complete_is_disconnected(emulator, monkeypatch):
    monkeypatch.setenv(TIMEOUT_ENV, "1")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", emulator.port), timeout=15) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
        assert sock.recv(1024) == b""  # closed by the server, not by our own timeout
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("target", ["SageMaker", "Foo.Bar", "Logs_20140328.NoSuchOperation", ".", "AmazonSQS."])
def test_unknown_target_is_an_unknown_operation_exception(emulator, target):
    """Junk targets get the JSON error moto's HTML 500 used to be; moto's own JSON targets still reach it."""
    for junk in (target, "SageMaker.", "SageMaker.NoSuchOperation"):
        status, headers, body = _exchange(emulator.port, _request(junk, "2"), b"{}")
        assert status == 400, (junk, body)
        assert _error(body)[0] == "UnknownOperationException"
        assert headers["content-type"] == "application/x-amz-json-1.1"
    # CloudWatch Logs (Logs_20140328.*) and SQS (AmazonSQS.*) speak JSON with an X-Amz-Target too
    logs = emulator.client("logs")
    group = f"/fuzz/limits-{time.monotonic_ns()}"
    logs.create_log_group(logGroupName=group)
    assert [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]] == [group]
    sqs = emulator.client("sqs")
    url = sqs.create_queue(QueueName=f"limits-{time.monotonic_ns()}")["QueueUrl"]
    assert url in sqs.list_queues().get("QueueUrls", [])


def test_timestamps_on_the_wire(emulator):
    """Epoch numbers and ISO-8601 strings are instants (botocore may send either); nothing else is."""
    for value, accepted in [("2024-01-01T00:00:00Z", True), ("2024-01-01", True), (1704067200, True),
                            (1704067200.5, True), ("yesterday", False), ("2024-13-45", False), (1e300, False),
                            (-1e20, False), (True, False), ([], False)]:
        payload = json.dumps({"CreationTimeAfter": value}).encode()
        status, _, body = _exchange(emulator.port, _request(LIST_JOBS, str(len(payload))), payload)
        if accepted:
            assert status == 200, (value, body)
        else:
            assert status == 400 and _error(body)[0] == "SerializationException", (value, body)


def test_crafted_next_token_is_a_validation_exception(sm):
    """Junk, base64 of junk, an offset of 1e400 or -5, a list: all ``Invalid pagination token``."""
    for token in ["junk", "eyJvIjogMWU0MDB9", "eyJvIjogLTV9", "eyJvIjogIngifQ==", "WzFd", "²"]:
        with pytest.raises(sm.exceptions.ClientError) as caught:
            sm.list_training_jobs(NextToken=token)
        assert caught.value.response["Error"] == {"Code": "ValidationException",
                                                  "Message": "Invalid pagination token"}, token
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_list_tags_refuses_a_non_ascii_digit_token(sm):
    arn = sm.create_model_package_group(ModelPackageGroupName=f"limits-{time.monotonic_ns()}")["ModelPackageGroupArn"]
    with pytest.raises(sm.exceptions.ClientError) as caught:
        sm.list_tags(ResourceArn=arn, NextToken="²")
    assert caught.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.parametrize("channel", ["..", "."])
def test_channel_named_dot_or_dot_dot_is_refused(sm, channel):
    with pytest.raises(sm.exceptions.ClientError) as caught:
        sm.create_training_job(
            TrainingJobName=f"limits-{time.monotonic_ns()}",
            AlgorithmSpecification={"TrainingImage": "fuzz-no-such-image", "TrainingInputMode": "File"},
            RoleArn="arn:aws:iam::123456789012:role/SageMakerExecutionRole",
            InputDataConfig=[{"ChannelName": channel, "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "s3://smlocal-fuzz-no-such-bucket/x"}}}],
            OutputDataConfig={"S3OutputPath": "s3://smlocal-fuzz-no-such-bucket/out"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 60})
    code, message = caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]
    assert code == "ValidationException" and "cannot be '.' or '..'" in message


def test_an_action_moto_lacks_is_an_aws_error_in_the_services_protocol(emulator):
    """moto's NotImplementedError (its Flask app's HTML 500) becomes NotImplementedBySmlocal (501), in the
    service's own protocol: query XML for IAM (SDK v3's ModelTrainer calls SimulatePrincipalPolicy),
    JSON for CloudWatch Logs."""
    from botocore.exceptions import ClientError

    iam = emulator.client("iam")
    with pytest.raises(ClientError) as exc:
        iam.simulate_principal_policy(PolicySourceArn=f"arn:aws:iam::{emulator.settings.account_id}:role/x",
                                      ActionNames=["s3:GetObject"])
    error, meta = exc.value.response["Error"], exc.value.response["ResponseMetadata"]
    assert (error["Code"], meta["HTTPStatusCode"]) == ("NotImplementedBySmlocal", 501)
    assert error["Message"].startswith("The IAM operation SimulatePrincipalPolicy is not implemented by smlocal")
    assert meta["HTTPHeaders"]["content-type"] == "text/xml"
    logs = emulator.client("logs")
    with pytest.raises(ClientError) as exc:
        logs.list_anomalies()
    error, meta = exc.value.response["Error"], exc.value.response["ResponseMetadata"]
    assert (error["Code"], meta["HTTPStatusCode"]) == ("NotImplementedBySmlocal", 501)
    assert error["Message"].startswith("The CloudWatch Logs operation ListAnomalies is not implemented by smlocal")
    assert meta["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"
