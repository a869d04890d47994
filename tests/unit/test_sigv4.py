"""smlocal's SigV4 verifier against requests botocore signs (botocore is the reference signer)."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from smlocal.auth import MAX_CLOCK_SKEW_SECONDS, verify_sigv4

KEYS = {"smlocal": "smlocal-secret", "minio": "minio-secret"}


def _signed(method: str, url: str, signer_class=SigV4Auth, service: str = "sagemaker", *, body: bytes = b"",
            headers: dict | None = None, secret: str = "smlocal-secret", key: str = "smlocal", **signer_args):
    """(method, raw path, query, lower-case headers, body) of a request botocore signed."""
    request = AWSRequest(method, url, data=body, headers=headers or {})
    signer_class(Credentials(key, secret), service, "us-east-1", **signer_args).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    sent = {name.lower(): value for name, value in prepared.headers.items()}
    sent["host"] = parts.netloc  # what the HTTP client adds on the wire
    payload = prepared.body or b""
    return prepared.method, parts.path, parts.query, sent, payload.encode() if isinstance(payload, str) else payload


def _verify(method, path, query, headers, body, now=None):
    return verify_sigv4(method, path, query, headers, lambda: hashlib.sha256(body).hexdigest(), KEYS.get, now=now)


def _json_call(**kwargs):
    return _signed("POST", "http://127.0.0.1:5555/", body=b'{"MaxResults": 5}',
                   headers={"X-Amz-Target": "SageMaker.ListTrainingJobs",
                            "Content-Type": "application/x-amz-json-1.1"}, **kwargs)


@pytest.mark.parametrize("method,url,signer,service,body", [
    ("POST", "http://127.0.0.1:5555/", SigV4Auth, "sagemaker", b'{"TrainingJobName": "a b"}'),
    ("POST", "http://localhost:5555/", SigV4Auth, "sts", b"Action=GetCallerIdentity&Version=2011-06-15"),
    ("PUT", "http://127.0.0.1:5555/bucket/a%20b%2Bc/%C3%A9%21%28x%29?partNumber=1&uploadId=x%2By%3D%3D",
     S3SigV4Auth, "s3", b"part bytes"),
    ("GET", "http://127.0.0.1:5555/bucket?list-type=2&prefix=a%20b%2F&delimiter=%2F", S3SigV4Auth, "s3", b""),
    ("POST", "http://127.0.0.1:5555/bucket/key?uploads", S3SigV4Auth, "s3", b""),
    ("GET", "http://127.0.0.1:5555/a//b/./c/../d%3A", SigV4Auth, "execute-api", b""),
    ("POST", "http://127.0.0.1:5555/endpoints/my-endpoint/invocations", SigV4Auth, "sagemaker", b"1,2,3"),
])
def test_botocore_signed_requests_verify(method, url, signer, service, body):
    assert _verify(*_signed(method, url, signer, service, body=body)) is None


def test_presigned_s3_url_verifies_and_expires():
    method, path, query, headers, body = _signed("GET", "http://127.0.0.1:5555/bucket/model%20v1.tar.gz",
                                                 S3SigV4QueryAuth, "s3", expires=60)
    headers.pop("authorization", None)
    assert "X-Amz-Signature=" in query
    assert _verify(method, path, query, headers, body) is None
    import time

    expired = _verify(method, path, query, headers, body, now=time.time() + 61)
    assert expired is not None and expired.kind == "expired"


def test_presigned_non_s3_query_verifies():
    method, path, query, headers, body = _signed("GET", "http://127.0.0.1:5555/?Action=GetCallerIdentity",
                                                 SigV4QueryAuth, "sts", expires=300)
    assert _verify(method, path, query, headers, body) is None


@pytest.mark.parametrize("declared", ["UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                                      "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"])
def test_declared_payload_values_are_what_is_signed(declared):
    chunked = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    request = _signed("PUT", "http://127.0.0.1:5555/bucket/key", SigV4Auth, "s3", body=chunked,
                      headers={"X-Amz-Content-SHA256": declared, "Content-Encoding": "aws-chunked",
                               "X-Amz-Decoded-Content-Length": "5", "X-Amz-Trailer": "x-amz-checksum-crc32"})
    assert request[3]["x-amz-content-sha256"] == declared
    assert _verify(*request) is None
    method, path, query, headers, body = request
    other = {**headers, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" if declared != "UNSIGNED-PAYLOAD"
             else "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
    assert _verify(method, path, query, other, body).kind == "mismatch"


def test_s3_put_object_with_a_trailing_checksum_verifies():
    """What boto3's PutObject sends over HTTPS: aws-chunked body, checksum trailer, unsigned payload."""
    request = AWSRequest("PUT", "https://127.0.0.1:5555/bucket/key.bin", data=b"5\r\nhello\r\n0\r\n\r\n",
                         headers={"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": "5"})
    request.context["checksum"] = {"request_algorithm": {"in": "trailer", "algorithm": "crc32",
                                                         "name": "x-amz-checksum-crc32"}}
    S3SigV4Auth(Credentials("smlocal", "smlocal-secret"), "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers = {name.lower(): value for name, value in prepared.headers.items()} | {"host": parts.netloc}
    assert headers["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert _verify("PUT", parts.path, parts.query, headers, prepared.body) is None
    tail = "0000" if not headers["authorization"].endswith("0000") else "1111"
    wrong = {**headers, "authorization": headers["authorization"][:-4] + tail}
    assert _verify("PUT", parts.path, parts.query, wrong, prepared.body).kind == "mismatch"


def test_tampered_json_body_is_refused():
    method, path, query, headers, _ = _json_call()
    failure = _verify(method, path, query, headers, b'{"MaxResults": 6}')
    assert failure is not None and failure.kind == "mismatch"
    assert failure.access_key == "smlocal" and failure.service == "sagemaker"


@pytest.mark.parametrize("change", ["header", "target", "path", "query", "method", "host"])
def test_tampered_request_parts_are_refused(change):
    method, path, query, headers, body = _signed("GET", "http://127.0.0.1:5555/bucket?prefix=a", S3SigV4Auth,
                                                 "s3", headers={"X-Amz-Target": "x"})
    if change == "header":
        seconds = "01" if headers["x-amz-date"].endswith("00Z") else "00"  # always a different time
        headers["x-amz-date"] = headers["x-amz-date"][:-3] + seconds + "Z"
    elif change == "target":
        headers["x-amz-target"] = "y"
    elif change == "path":
        path = "/other-bucket"
    elif change == "query":
        query = "prefix=b"
    elif change == "method":
        method = "DELETE"
    elif change == "host":
        headers["host"] = "attacker.example:5555"
    failure = _verify(method, path, query, headers, body)
    assert failure is not None and failure.kind in ("mismatch", "malformed")


def test_wrong_secret_and_unknown_key():
    assert _verify(*_json_call(secret="guessed")).kind == "mismatch"
    assert _verify(*_json_call(key="AKIAUNKNOWN", secret="x")).kind == "unknown-key"
    assert _verify(*_json_call(key="ASIAMOTOTEMPORARY", secret="x")).kind == "unknown-key"
    assert _verify(*_json_call(key="minio", secret="minio-secret")) is None  # every held pair is accepted


def test_clock_skew_beyond_fifteen_minutes_is_refused():
    import time

    request = _json_call()
    assert _verify(*request, now=time.time() + MAX_CLOCK_SKEW_SECONDS - 30) is None
    assert _verify(*request, now=time.time() + MAX_CLOCK_SKEW_SECONDS + 30).kind == "skewed"
    assert _verify(*request, now=time.time() - MAX_CLOCK_SKEW_SECONDS - 30).kind == "skewed"


def test_unsigned_and_malformed_requests():
    method, path, query, headers, body = _json_call()
    unsigned = {k: v for k, v in headers.items() if k != "authorization"}
    assert _verify(method, path, query, unsigned, body).kind == "missing"
    for bad in ("AWS smlocal:c2lnbmF0dXJl", "AWS4-HMAC-SHA256 Credential=smlocal/20240101/us-east-1/sagemaker",
                headers["authorization"].replace(";host;", ";"),
                headers["authorization"].replace("Signature=", "Signature=zz")):
        assert _verify(method, path, query, {**headers, "authorization": bad}, body).kind == "malformed", bad
    no_date = {k: v for k, v in headers.items() if k != "x-amz-date"}
    assert _verify(method, path, query, no_date, body).kind == "malformed"


class _NoExpiresQueryAuth(S3SigV4QueryAuth):
    """botocore's presigner, with X-Amz-Expires left out of the URL before the signature is computed."""

    def _modify_request_before_signing(self, request):
        super()._modify_request_before_signing(request)
        base, _, query = request.url.partition("?")
        request.url = base + "?" + "&".join(p for p in query.split("&") if not p.startswith("X-Amz-Expires="))


def test_presigned_url_without_x_amz_expires_is_refused():
    """AWS requires X-Amz-Expires in a SigV4 query; without it a URL was taken as valid for 7 days."""
    method, path, query, headers, body = _signed("GET", "http://127.0.0.1:5555/bucket/key", _NoExpiresQueryAuth,
                                                 "s3", expires=60)
    headers.pop("authorization", None)
    assert "X-Amz-Signature=" in query and "X-Amz-Expires" not in query
    failure = _verify(method, path, query, headers, body)
    assert failure is not None and failure.kind == "malformed" and "x-amz-expires" in failure.message


def test_non_s3_signature_uses_the_body_hash_not_a_declared_unsigned_payload():
    method, path, query, headers, body = _signed("POST", "http://127.0.0.1:5555/", body=b'{"MaxResults": 5}',
                                                 headers={"X-Amz-Target": "SageMaker.ListTrainingJobs",
                                                          "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    failure = _verify(method, path, query, headers, b'{"MaxResults": 6}')
    assert failure is not None and failure.kind == "mismatch"
