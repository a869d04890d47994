"""Holes found by attacking the issue-9 boundary and the durable store, each closed: real HTTP, real boto3.

Every test here was written against the code as it was, saw the attack work, and now sees it refused.
"""

from __future__ import annotations

import http.client
import json

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import unique
from smlocal.config import load_settings
from smlocal.s3store import DurableS3Store
from smlocal.server import Emulator

JSON = "application/x-amz-json-1.1"



@pytest.fixture(scope="module")
def wide(tmp_path_factory, runtime_dir):
    """Bound to every interface (signatures verified) with the durable store, as `smlocal up --host 0.0.0.0`."""
    data = tmp_path_factory.mktemp("redteam-wide")
    with Emulator(load_settings(data_dir=data, port=0, host="0.0.0.0"), s3_store=DurableS3Store(data)) as emu:
        yield emu


def _client(emu, service: str, **config):
    return boto3.client(service, endpoint_url=emu.endpoint, region_name="us-east-1", aws_access_key_id="smlocal",
                        aws_secret_access_key="smlocal-secret", config=Config(retries={"max_attempts": 1}, **config))


def _raw(emu, method: str, target: str, body: bytes = b"", headers: dict | None = None):
    """(status, body) of one raw request; a ``Host`` in ``headers`` replaces the real one."""
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=30)
    headers = dict(headers or {})
    connection.putrequest(method, target, skip_host="Host" in headers, skip_accept_encoding=True)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def _experiments(emu) -> list[str]:
    return [item["ExperimentName"] for item in
            _client(emu, "sagemaker").list_experiments(MaxResults=100)["ExperimentSummaries"]]


# ---- SigV4: what a signature allows
def test_a_presigned_s3_url_is_no_credential_for_sagemaker(wide):
    """A shared presigned GET of one object signs method, path and host only: its body and other
    headers are free, so sent with ``X-Amz-Target: SageMaker.*`` it was a SageMaker credential
    (CreateProcessingJob runs code). The scope names the service it may call."""
    s3 = _client(wide, "s3", signature_version="s3v4")
    bucket = unique("shared")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="model.bin", Body=b"weights")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "model.bin"}, ExpiresIn=600)
    target = url.split(str(wide.port), 1)[1]
    assert _raw(wide, "GET", target) == (200, b"weights")
    name = unique("via-presigned")
    status, body = _raw(wide, "GET", target, json.dumps({"ExperimentName": name}).encode(),
                        {"X-Amz-Target": "SageMaker.CreateExperiment", "Content-Type": JSON})
    assert status == 403 and b"InvalidSignatureException" in body and b"'sagemaker'" in body
    assert name not in _experiments(wide)


def test_sagemaker_signatures_cover_the_body_whatever_x_amz_content_sha256_says(wide):
    """``x-amz-content-sha256: UNSIGNED-PAYLOAD`` is S3's alone: on SageMaker it signed no body at all,
    so one captured request could be replayed with any body for 15 minutes."""
    signed_name, evil_name = unique("signed"), unique("replayed")
    request = AWSRequest("POST", wide.endpoint + "/", data=json.dumps({"ExperimentName": signed_name}).encode(),
                         headers={"X-Amz-Target": "SageMaker.CreateExperiment", "Content-Type": JSON,
                                  "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials("smlocal", "smlocal-secret"), "sagemaker", "us-east-1").add_auth(request)
    headers = {name: value for name, value in request.prepare().headers.items() if name.lower() != "content-length"}
    assert "x-amz-content-sha256" in headers["Authorization"]  # the declared value itself is signed
    status, body = _raw(wide, "POST", "/", json.dumps({"ExperimentName": evil_name}).encode(), headers)
    assert status == 403 and b"InvalidSignatureException" in body
    assert evil_name not in _experiments(wide)
    _client(wide, "sagemaker").create_experiment(ExperimentName=signed_name)  # boto3 itself is unaffected
    assert signed_name in _experiments(wide)


# ---- Host names
@pytest.mark.parametrize("host", ["a/b.localhost", "bkt%2F..%2F.localhost", "..localhost", "x,y.localhost"])
def test_host_names_that_are_no_dns_names_are_refused(wide, host):
    """``Host: a/b.localhost`` passed the subdomain rule and became the virtual-hosted path ``/a/b/...``."""
    status, body = _raw(wide, "GET", "/", headers={"Host": f"{host}:{wide.port}"})
    assert status == 403 and b"is not a name of this smlocal server" in body


# ---- the durable store
def test_keys_named_like_the_stores_temp_files_are_refused_not_lost(wide):
    """rclone hides ``.rclone_temp_*`` files from listings and smlocal removes them at start: such a key
    was acknowledged (200) and then invisible, and gone after a restart."""
    s3 = _client(wide, "s3")
    bucket = unique("temp-names")
    s3.create_bucket(Bucket=bucket)
    for key in (".rclone_temp_mine", "dir/.rclone_temp_put_x/y"):
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket=bucket, Key=key, Body=b"precious")
        assert caught.value.response["Error"]["Code"] == "InvalidArgument"
    assert not [path for path in (wide.s3_store.root / bucket).rglob("*") if path.is_file()]
    s3.put_object(Bucket=bucket, Key="dir/x.rclone_temp_", Body=b"kept")  # only a leading part is reserved
    assert s3.get_object(Bucket=bucket, Key="dir/x.rclone_temp_")["Body"].read() == b"kept"


def test_multipart_upload_to_a_bucket_named_endpoints_is_s3(wide):
    """``POST /endpoints/<x>/invocations?uploadId=...`` signed for S3 is CompleteMultipartUpload on the
    bucket ``endpoints``, not InvokeEndpoint."""
    s3 = _client(wide, "s3")
    try:
        s3.create_bucket(Bucket="endpoints")
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    upload = s3.create_multipart_upload(Bucket="endpoints", Key="ep/invocations")["UploadId"]
    part = s3.upload_part(Bucket="endpoints", Key="ep/invocations", UploadId=upload, PartNumber=1, Body=b"p1")
    s3.complete_multipart_upload(Bucket="endpoints", Key="ep/invocations", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3.get_object(Bucket="endpoints", Key="ep/invocations")["Body"].read() == b"p1"


def test_a_cross_site_get_with_forged_presign_parameters_is_refused_on_loopback(emulator):
    """On loopback signatures are not verified, so presign parameters in an <img> URL prove nothing."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    conn.request("GET", "/?X-Amz-Credential=a/20250101/us-east-1/s3/aws4_request&X-Amz-Signature=00",
                 headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"})
    response = conn.getresponse()
    assert response.status == 403 and b"ListAllMyBucketsResult" not in response.read()


def test_crafted_pagination_tokens_are_validation_errors(sm):
    """Deep JSON inside a base64 token, and a digit string longer than Python parses: 400, never a 500."""
    import base64

    from botocore.exceptions import ClientError

    deep = base64.urlsafe_b64encode(b"[" * 6000).decode()
    for call, kwargs in ((sm.list_training_jobs, {"NextToken": deep}),
                         (sm.list_tags, {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
                                         "NextToken": "9" * 5000})):
        with pytest.raises(ClientError) as exc:
            call(**kwargs)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, exc.value.response
