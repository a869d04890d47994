"""Who may talk to smlocal, tried as a browser page and a remote client would: raw HTTP and real boto3."""

from __future__ import annotations

import http.client
import io
import json
import os
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import ROLE, SKLEARN_IMAGE, aws_error, unique
from smlocal.config import load_settings
from smlocal.server import Emulator

OK_ORIGIN = "https://ok.example"
EVIL_ORIGIN = "https://evil.example"
JSON = "application/x-amz-json-1.1"



@pytest.fixture(scope="module")
def local(tmp_path_factory, runtime_dir):
    """A loopback server that allows one browser origin and one extra Host name."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("boundary-local"), port=0,
                             allow_origins=(OK_ORIGIN,), allowed_hosts=("smlocal.test",))
    with Emulator(settings) as emu:
        yield emu


@pytest.fixture(scope="module")
def wide(tmp_path_factory, runtime_dir):
    """A server bound to every interface, as in compose: signatures are verified."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("boundary-wide"), port=0, host="0.0.0.0")
    with Emulator(settings) as emu:
        yield emu


def _raw(emu, method: str, path: str, body: bytes = b"", **headers: str):
    """(status, headers as a list, body) of one raw HTTP request; ``host`` overrides the Host header."""
    connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=30)
    names = {name.replace("_", "-"): value for name, value in headers.items()}
    connection.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
    for name, value in names.items():
        connection.putheader(name, value)
    if body or method in ("POST", "PUT"):
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, response.getheaders(), data


def _header(headers, name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name.lower()]


def _processing_request(name: str, marker: Path) -> dict:
    return {
        "ProcessingJobName": name,
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE, "ContainerEntrypoint": [
            "python3", "-c", f"open({str(marker)!r}, 'w').write('pwned')"]},
        "RoleArn": ROLE,
    }


def _processing_names(emu) -> list[str]:
    return [job["ProcessingJobName"]
            for job in emu.client("sagemaker").list_processing_jobs(MaxResults=100)["ProcessingJobSummaries"]]


# ---- browsers
def test_cross_origin_create_processing_job_is_refused_and_runs_nothing(local, tmp_path):
    name, marker = unique("evil"), tmp_path / "marker"
    for origin in (EVIL_ORIGIN, "null"):
        status, headers, body = _raw(local, "POST", "/", json.dumps(_processing_request(name, marker)).encode(),
                                     Origin=origin, X_Amz_Target="SageMaker.CreateProcessingJob", Content_Type=JSON)
        assert status == 403, body
        assert json.loads(body)["__type"] == "AccessDeniedException"
        assert _header(headers, "x-amzn-ErrorType") == ["AccessDeniedException"]
        assert not _header(headers, "Access-Control-Allow-Origin")
    time.sleep(1.0)
    assert name not in _processing_names(local)
    assert not marker.exists()


def test_foreign_preflight_gets_no_cors_permission(local):
    for path in ("/", "/endpoints/e/invocations", "/_smlocal/reset-all", "/some-bucket/key"):
        status, headers, _ = _raw(local, "OPTIONS", path, Origin=EVIL_ORIGIN, Access_Control_Request_Method="POST",
                                  Access_Control_Request_Headers="x-amz-target,content-type")
        assert status == 403
        assert not [key for key, _ in headers if key.lower().startswith("access-control-")], (path, headers)


def test_allowed_origin_gets_an_exact_cors_echo(local):
    status, headers, _ = _raw(local, "OPTIONS", "/", Origin=OK_ORIGIN, Access_Control_Request_Method="POST",
                              Access_Control_Request_Headers="authorization,x-amz-target,x-amz-date,content-type")
    assert status == 200
    assert _header(headers, "Access-Control-Allow-Origin") == [OK_ORIGIN]
    assert "POST" in _header(headers, "Access-Control-Allow-Methods")[0]
    assert "x-amz-target" in _header(headers, "Access-Control-Allow-Headers")[0]
    status, headers, body = _raw(local, "POST", "/", b"{}", Origin=OK_ORIGIN, Content_Type=JSON,
                                 X_Amz_Target="SageMaker.ListProcessingJobs")
    assert status == 200 and "ProcessingJobSummaries" in json.loads(body)
    assert _header(headers, "Access-Control-Allow-Origin") == [OK_ORIGIN]


def test_moto_cors_answers_do_not_leak(local):
    bucket = unique("cors-bucket")
    local.client("s3").create_bucket(Bucket=bucket)
    status, headers, _ = _raw(local, "GET", f"/{bucket}", Origin=OK_ORIGIN)
    assert status == 200
    assert _header(headers, "Access-Control-Allow-Origin") == [OK_ORIGIN]  # ours only, not moto's
    status, headers, _ = _raw(local, "OPTIONS", f"/{bucket}", Access_Control_Request_Method="PUT")
    assert not [key for key, _ in headers if key.lower().startswith("access-control-")]


def test_unsigned_request_from_another_sites_page_is_refused(local):
    status, _, _ = _raw(local, "GET", "/iam_us-east-1/?Action=CreateUser&UserName=intruder",
                        Sec_Fetch_Site="cross-site", Sec_Fetch_Mode="no-cors")
    assert status == 403
    users = [user["UserName"] for user in local.client("iam").list_users()["Users"]]
    assert "intruder" not in users


# ---- admin calls
def test_get_of_admin_paths_does_nothing(local):
    bucket = unique("kept-bucket")
    local.client("s3").create_bucket(Bucket=bucket)
    for path in ("/_smlocal/reset-all", "/_smlocal/reset", "/moto-api/reset"):
        status, _, _ = _raw(local, "GET", path)
        assert status in (403, 405), path
    assert bucket in [b["Name"] for b in local.client("s3").list_buckets()["Buckets"]]


def test_post_without_the_admin_token_is_refused(local):
    bucket = unique("kept-bucket")
    local.client("s3").create_bucket(Bucket=bucket)
    for path in ("/_smlocal/reset-all", "/moto-api/reset"):
        for token in ({}, {"X_Smlocal_Admin_Token": "guess-" + "x" * 40}):
            status, _, body = _raw(local, "POST", path, **token)
            assert status == 403, (path, body)
    assert bucket in [b["Name"] for b in local.client("s3").list_buckets()["Buckets"]]


def test_post_with_the_admin_token_resets(local, runtime_dir):
    from smlocal.client import admin_post

    s3 = local.client("s3")
    s3.create_bucket(Bucket=unique("gone-bucket"))
    status, _, body = _raw(local, "POST", "/_smlocal/reset-all", X_Smlocal_Admin_Token=local.admin_token)
    assert status == 200 and json.loads(body)["status"] == "reset"
    assert s3.list_buckets()["Buckets"] == []
    s3.create_bucket(Bucket=unique("gone-bucket"))
    assert admin_post(local.endpoint, "reset-all")["status"] == "reset"  # the token from the record file
    assert s3.list_buckets()["Buckets"] == []
    local.client("iam").get_role(RoleName="SageMakerExecutionRole")  # recreated after the reset


def test_server_record_is_private_and_removed_on_stop(tmp_path, runtime_dir):
    emu = Emulator(load_settings(data_dir=tmp_path / "data", port=0)).start()
    try:
        record = runtime_dir / f"server-{emu.port}.json"
        data = json.loads(record.read_text())
        assert data["adminToken"] == emu.admin_token and data["endpoint"] == emu.endpoint
        assert data["pid"] == os.getpid()
        assert stat.S_IMODE(record.stat().st_mode) == 0o600
        assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
        assert emu.admin_token not in json.dumps(emu.runtime.base_env())  # never in a job's environment
        assert emu.admin_token not in json.dumps(emu.client_env())
    finally:
        emu.stop()
    assert not record.exists()


# ---- Host header (DNS rebinding)
def test_rebinding_host_header_is_refused(local):
    for host in (f"attacker.example:{local.port}", "attacker.example", f"localhost.attacker.example:{local.port}"):
        status, _, body = _raw(local, "POST", "/", b"{}", host=host, Content_Type=JSON,
                               X_Amz_Target="SageMaker.ListProcessingJobs")
        assert status == 403 and b"AccessDeniedException" in body, host
    for host in (f"localhost:{local.port}", f"127.0.0.1:{local.port}", "localhost", f"smlocal.test:{local.port}"):
        status, _, body = _raw(local, "POST", "/", b"{}", host=host, Content_Type=JSON,
                               X_Amz_Target="SageMaker.ListProcessingJobs")
        assert status == 200, (host, body)


def test_virtual_hosted_s3_names_keep_working(local):
    bucket = unique("vhost-bucket")
    local.client("s3").create_bucket(Bucket=bucket)
    local.client("s3").put_object(Bucket=bucket, Key="k", Body=b"v")
    for host in (f"{bucket}.localhost:{local.port}", f"{bucket}.s3.localhost:{local.port}"):
        request = AWSRequest("GET", f"http://{host}/k")  # what a virtual-addressing client sends
        S3SigV4Auth(Credentials("smlocal", "smlocal-secret"), "s3", "us-east-1").add_auth(request)
        headers = {name.replace("-", "_"): value for name, value in request.prepare().headers.items()}
        status, _, body = _raw(local, "GET", "/k", host=host, **headers)
        assert (status, body) == (200, b"v"), host


# ---- beyond loopback: signatures verified
def _client(emu, service: str, secret: str = "smlocal-secret", key: str = "smlocal", **config):
    return boto3.client(service, endpoint_url=emu.endpoint, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}, **config))


def test_wide_server_refuses_unsigned_requests(wide, tmp_path):
    name, marker = unique("unsigned"), tmp_path / "marker"
    status, headers, body = _raw(wide, "POST", "/", json.dumps(_processing_request(name, marker)).encode(),
                                 X_Amz_Target="SageMaker.CreateProcessingJob", Content_Type=JSON)
    assert status == 403 and json.loads(body)["__type"] == "MissingAuthenticationTokenException"
    status, _, body = _raw(wide, "GET", "/")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    status, _, body = _raw(wide, "POST", "/", b"Action=GetCallerIdentity&Version=2011-06-15",
                           Content_Type="application/x-www-form-urlencoded")
    assert status == 403 and b"<Code>MissingAuthenticationToken</Code>" in body
    assert _raw(wide, "GET", "/_smlocal/health")[0] == 200
    assert name not in _processing_names(wide)
    assert not marker.exists()


@pytest.mark.parametrize("service,call,code", [
    ("sagemaker", lambda c: c.list_training_jobs(), "InvalidSignatureException"),
    ("s3", lambda c: c.list_buckets(), "SignatureDoesNotMatch"),
    ("sts", lambda c: c.get_caller_identity(), "SignatureDoesNotMatch"),
    ("logs", lambda c: c.describe_log_groups(), "InvalidSignatureException"),
])
def test_wide_server_refuses_a_wrong_secret(wide, service, call, code):
    with pytest.raises(ClientError) as caught:
        call(_client(wide, service, secret="not-the-secret"))
    assert aws_error(caught)[0] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_wide_server_refuses_keys_it_does_not_hold(wide):
    with pytest.raises(ClientError) as caught:
        _client(wide, "sagemaker", key="AKIAIOSFODNN7EXAMPLE", secret="x").list_training_jobs()
    assert aws_error(caught)[0] == "UnrecognizedClientException"
    with pytest.raises(ClientError) as caught:
        _client(wide, "s3", key="AKIAIOSFODNN7EXAMPLE", secret="x").list_buckets()
    assert aws_error(caught)[0] == "InvalidAccessKeyId"


def test_wide_server_accepts_correctly_signed_boto3_clients(wide):
    sm, s3, logs, sts = (_client(wide, s) for s in ("sagemaker", "s3", "logs", "sts"))
    seen_payloads = []
    s3.meta.events.register("before-send.s3", lambda request, **_: seen_payloads.append(
        request.headers.get("X-Amz-Content-SHA256")))
    bucket = unique("signed-bucket")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="dir/a b+c é.txt", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="dir/a b+c é.txt")["Body"].read() == b"hello"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="dir/")["Contents"]] == ["dir/a b+c é.txt"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big.bin")
    parts = []
    for number, data in ((1, b"x" * (5 * 1024 * 1024)), (2, b"tail")):
        etag = s3.upload_part(Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"], PartNumber=number,
                              Body=data)["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
    s3.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ContentLength"] == 5 * 1024 * 1024 + 4
    s3.upload_fileobj(io.BytesIO(b"y" * (9 * 1024 * 1024)), bucket, "managed.bin")  # TransferManager
    assert s3.head_object(Bucket=bucket, Key="managed.bin")["ContentLength"] == 9 * 1024 * 1024
    assert seen_payloads and all(value for value in seen_payloads)
    presigner = _client(wide, "s3", signature_version="s3v4")
    url = presigner.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/a b+c é.txt"},
                                           ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"hello"
    logs.create_log_group(logGroupName="/smlocal/boundary")
    assert "/smlocal/boundary" in [g["logGroupName"] for g in logs.describe_log_groups()["logGroups"]]
    assert sts.get_caller_identity()["Arn"].endswith(":assumed-role/SageMakerExecutionRole/smlocal")
    assert "ProcessingJobSummaries" in sm.list_processing_jobs()


def test_wide_server_accepts_a_streaming_trailer_put(wide):
    """PutObject as boto3 sends it over HTTPS: aws-chunked body with STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
    bucket = unique("trailer-bucket")
    _client(wide, "s3").create_bucket(Bucket=bucket)
    chunked = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    request = AWSRequest("PUT", f"{wide.endpoint}/{bucket}/trailer.txt", data=chunked, headers={
        "Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": "5",
        "X-Amz-Trailer": "x-amz-checksum-crc32", "Content-Length": str(len(chunked))})
    request.context["checksum"] = {"request_algorithm": {"in": "trailer", "algorithm": "crc32",
                                                         "name": "x-amz-checksum-crc32"}}
    S3SigV4Auth(Credentials("smlocal", "smlocal-secret"), "s3", "us-east-1").add_auth(request)
    headers = dict(request.prepare().headers)
    assert headers["X-Amz-Content-SHA256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    status, _, body = _raw(wide, "PUT", f"/{bucket}/trailer.txt", chunked,
                           **{name.replace("-", "_"): value for name, value in headers.items()
                              if name.lower() != "content-length"})
    assert status == 200, body
    assert _client(wide, "s3").get_object(Bucket=bucket, Key="trailer.txt")["Body"].read() == b"hello"
    tampered = {**headers, "Authorization": headers["Authorization"][:-4] + "0000"}
    status, _, body = _raw(wide, "PUT", f"/{bucket}/trailer.txt", chunked,
                           **{name.replace("-", "_"): value for name, value in tampered.items()
                              if name.lower() != "content-length"})
    assert status == 403 and b"SignatureDoesNotMatch" in body


def test_wide_server_refuses_a_signed_request_replayed_with_another_body(wide, tmp_path):
    name = unique("replayed")
    signed_body = json.dumps({"MaxResults": 5}).encode()
    request = AWSRequest("POST", wide.endpoint + "/", data=signed_body,
                         headers={"X-Amz-Target": "SageMaker.ListProcessingJobs", "Content-Type": JSON})
    SigV4Auth(Credentials("smlocal", "smlocal-secret"), "sagemaker", "us-east-1").add_auth(request)
    headers = {name.replace("-", "_"): value for name, value in request.prepare().headers.items()
               if name.lower() != "content-length"}
    assert _raw(wide, "POST", "/", signed_body, **headers)[0] == 200
    evil = json.dumps(_processing_request(name, tmp_path / "marker")).encode()
    status, _, body = _raw(wide, "POST", "/", evil, **{**headers, "X_Amz_Target": "SageMaker.CreateProcessingJob"})
    assert status == 403 and b"InvalidSignatureException" in body
    status, _, body = _raw(wide, "POST", "/", evil, **headers)
    assert status == 403 and b"InvalidSignatureException" in body
    s3_body = b"original"
    bucket = unique("replay-bucket")
    _client(wide, "s3").create_bucket(Bucket=bucket)
    put = AWSRequest("PUT", f"{wide.endpoint}/{bucket}/k", data=s3_body)
    S3SigV4Auth(Credentials("smlocal", "smlocal-secret"), "s3", "us-east-1").add_auth(put)
    put_headers = {name.replace("-", "_"): value for name, value in put.prepare().headers.items()
                   if name.lower() != "content-length"}
    status, _, body = _raw(wide, "PUT", f"/{bucket}/k", b"replaced", **put_headers)
    assert status == 400 and b"XAmzContentSHA256Mismatch" in body
    with pytest.raises(ClientError):
        _client(wide, "s3").head_object(Bucket=bucket, Key="k")


def test_wide_server_runs_a_job_whose_code_calls_aws(wide):
    """The server's own clients and a job's boto3 (its environment's key pair) pass verification."""
    sm, s3 = _client(wide, "sagemaker"), _client(wide, "s3")
    bucket, name = unique("job-bucket"), unique("signed-job")
    s3.create_bucket(Bucket=bucket)
    script = ("import boto3\n"
              f"boto3.client('s3').put_object(Bucket={bucket!r}, Key='from-job.txt', Body=b'signed')\n"
              "print('caller', boto3.client('sts').get_caller_identity()['Arn'])\n")
    s3.put_object(Bucket=bucket, Key="code/job.py", Body=script.encode())
    sm.create_processing_job(
        ProcessingJobName=name, RoleArn=ROLE,
        ProcessingInputs=[{"InputName": "code", "S3Input": {
            "S3Uri": f"s3://{bucket}/code/job.py", "LocalPath": "/opt/ml/processing/input/code",
            "S3DataType": "S3Prefix", "S3InputMode": "File"}}],
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                               "VolumeSizeInGB": 30}},
        AppSpecification={"ImageUri": SKLEARN_IMAGE,
                          "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/job.py"]})
    deadline = time.time() + 120
    while (job := sm.describe_processing_job(ProcessingJobName=name))["ProcessingJobStatus"] == "InProgress":
        assert time.time() < deadline
        time.sleep(0.2)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert s3.get_object(Bucket=bucket, Key="from-job.txt")["Body"].read() == b"signed"


# ---- the command line
def test_up_allow_origin_flag_and_reset_command(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SMLOCAL_")) and k != "PYTHONPATH"}
    env.update(SMLOCAL_AUTODETECT="0", SMLOCAL_RUNTIME_DIR=str(tmp_path / "run"))
    server = subprocess.Popen([sys.executable, "-m", "smlocal.cli", "up", "--port", str(port), "--data-dir",
                               str(tmp_path / "data"), "--allow-origin", OK_ORIGIN],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        record = tmp_path / "run" / f"server-{port}.json"
        deadline = time.time() + 60
        while not record.exists() or (json.loads(record.read_text() or "{}").get("port") != port):
            assert server.poll() is None and time.time() < deadline, server.stdout.read() if server.poll() else ""
            time.sleep(0.2)
        endpoint = f"http://127.0.0.1:{port}"
        while True:  # up once it says so ("starting" while it still replays its logs, say)
            try:
                if json.loads(urllib.request.urlopen(f"{endpoint}/_smlocal/health", timeout=1).read())["status"] == "ok":
                    break
            except OSError:
                pass
            assert time.time() < deadline
            time.sleep(0.2)
        fake = type("Server", (), {"port": port})()
        status, headers, _ = _raw(fake, "OPTIONS", "/", Origin=OK_ORIGIN, Access_Control_Request_Method="POST")
        assert status == 200 and _header(headers, "Access-Control-Allow-Origin") == [OK_ORIGIN]
        assert _raw(fake, "OPTIONS", "/", Origin=EVIL_ORIGIN, Access_Control_Request_Method="POST")[0] == 403
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="smlocal",
                          aws_secret_access_key="smlocal-secret")
        s3.create_bucket(Bucket="reset-me-bucket")
        done = subprocess.run([sys.executable, "-m", "smlocal.cli", "reset", "--all"], capture_output=True, text=True,
                              env={**env, "SMLOCAL_ENDPOINT": endpoint}, timeout=60)
        assert done.returncode == 0, done.stderr
        assert s3.list_buckets()["Buckets"] == []
        refused = subprocess.run([sys.executable, "-m", "smlocal.cli", "reset"], capture_output=True, text=True,
                                 env={**env, "SMLOCAL_ENDPOINT": endpoint, "SMLOCAL_ADMIN_TOKEN": "w" * 40},
                                 timeout=60)
        assert refused.returncode == 1 and "403" in refused.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not record.exists()
