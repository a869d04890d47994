"""S3 through the gateway's port when smlocal runs the durable store (`smlocal up --data-dir D`).

Every S3 request sent to the gateway reaches the durable store (`rclone serve s3`), re-signed by the
proxy (smlocal/gateway/s3proxy.py): clients and jobs need one endpoint and smlocal's key pair.
Real boto3 clients against a real emulator with a real store; botocore's aws-chunked uploads (it
only uses them over TLS) go through a small TLS relay in front of the gateway.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
import base64
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import script_job, unique, upload_sourcedir, wait_for
from smlocal.auth import CLIENT_ACCESS_KEY, CLIENT_SECRET_KEY, sign_sigv4, verify_sigv4
from smlocal.config import load_settings
from smlocal.gateway.s3proxy import is_s3_request, virtual_bucket
from smlocal.s3store import DurableS3Store
from smlocal.server import Emulator

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    data = tmp_path_factory.mktemp("proxied")
    with Emulator(load_settings(data_dir=data, port=0), s3_store=DurableS3Store(data)) as running:
        yield running


def _gateway_s3(endpoint: str, **config):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=CLIENT_ACCESS_KEY,
                        aws_secret_access_key=CLIENT_SECRET_KEY, verify=False,
                        config=Config(retries={"max_attempts": 1}, **config))


@pytest.fixture(scope="module")
def s3(emu):
    return _gateway_s3(emu.endpoint)


@pytest.fixture
def bucket(s3):
    name = unique("proxy")
    s3.create_bucket(Bucket=name)
    return name


def _stored(emu, bucket: str, key: str) -> Path:
    return emu.s3_store.root / bucket / key


def _code(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


def test_clients_and_jobs_get_one_endpoint_and_smlocals_key_pair(emu, tmp_path):
    env = emu.client_env()
    assert "AWS_ENDPOINT_URL_S3" not in env
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (CLIENT_ACCESS_KEY, CLIENT_SECRET_KEY)
    job_env = emu.runtime.base_env()
    assert "AWS_ENDPOINT_URL_S3" not in job_env and job_env["AWS_ENDPOINT_URL"] == emu.endpoint
    assert job_env["AWS_ACCESS_KEY_ID"] == CLIENT_ACCESS_KEY
    assert emu._health()["s3Endpoint"] == emu.endpoint and emu._health()["s3External"] is False
    script = tmp_path / "s.py"
    script.write_text("import boto3\nprint(boto3.client('s3').meta.endpoint_url)\n")
    out = subprocess.run([sys.executable, str(script)], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == [emu.endpoint]


def test_objects_put_get_head_list_copy_delete_through_the_gateway(emu, s3, bucket):
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"p/d{i % 2}/k{i}.csv", Body=b"v%d" % i)
    assert _stored(emu, bucket, "p/d0/k0.csv").read_bytes() == b"v0"  # in the durable store, not moto
    s3.put_object(Bucket=bucket, Key="odd/a b+c=d~e!'()*&é.txt", Body=b"odd")
    assert s3.get_object(Bucket=bucket, Key="odd/a b+c=d~e!'()*&é.txt")["Body"].read() == b"odd"
    assert s3.get_object(Bucket=bucket, Key="p/d1/k1.csv")["Body"].read() == b"v1"
    assert s3.get_object(Bucket=bucket, Key="p/d1/k1.csv", Range="bytes=1-1")["Body"].read() == b"1"
    assert s3.head_object(Bucket=bucket, Key="p/d0/k2.csv")["ContentLength"] == 2
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="p/d0/k")["Contents"]] == [
        "p/d0/k0.csv", "p/d0/k2.csv", "p/d0/k4.csv"]
    delimited = s3.list_objects_v2(Bucket=bucket, Prefix="p/", Delimiter="/")
    assert [p["Prefix"] for p in delimited["CommonPrefixes"]] == ["p/d0/", "p/d1/"]
    pages, kwargs = [], {}
    while True:
        page = s3.list_objects_v2(Bucket=bucket, Prefix="p/", MaxKeys=2, **kwargs)
        pages.append([o["Key"] for o in page["Contents"]])
        if not page["IsTruncated"]:
            break
        kwargs = {"ContinuationToken": page["NextContinuationToken"]}
    assert [len(p) for p in pages] == [2, 2, 1] and sum(pages, []) == sorted(sum(pages, []))
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="p/none")
    assert _code(missing) == "NoSuchKey"
    s3.copy_object(Bucket=bucket, Key="copy/k1.csv", CopySource={"Bucket": bucket, "Key": "p/d1/k1.csv"})
    assert _stored(emu, bucket, "copy/k1.csv").read_bytes() == b"v1"
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "p/d1/k1.csv"}, {"Key": "p/d1/k3.csv"}]})
    s3.delete_object(Bucket=bucket, Key="p/d0/k0.csv")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="p/")["Contents"]] == [
        "p/d0/k2.csv", "p/d0/k4.csv"]
    assert "moto" not in str(s3.list_buckets()) and bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


class _TlsRelay:
    """TLS in front of the gateway (self-signed), so botocore uses its TLS defaults: aws-chunked with trailers."""

    def __init__(self, target: int, folder: Path):
        cert, key = folder / "cert.pem", folder / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                        "-keyout", str(key), "-out", str(cert), "-days", "1"], check=True, capture_output=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            secure = self.context.wrap_socket(client, server_side=True)
        except (OSError, ssl.SSLError):
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))

        def pump(source, sink) -> None:
            try:
                while data := source.recv(1 << 16):
                    sink.sendall(data)
            except OSError:
                pass
            finally:
                for end in (source, sink):
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, secure), daemon=True).start()
        pump(secure, upstream)

    def close(self) -> None:
        self.listener.close()


def test_multipart_upload_with_botocores_default_aws_chunked_checksums(emu, bucket, tmp_path):
    relay = _TlsRelay(emu.port, tmp_path)
    try:
        s3 = _gateway_s3(f"https://127.0.0.1:{relay.port}")
        sent = []
        s3.meta.events.register("before-send.s3.UploadPart", lambda request, **_: sent.append(dict(request.headers)))
        data = os.urandom(9 * MIB + 123)  # above boto3's 8 MB multipart threshold
        (tmp_path / "big.bin").write_bytes(data)
        s3.upload_file(str(tmp_path / "big.bin"), bucket, "big/part.bin")
        assert len(sent) == 2 and all(h["Content-Encoding"] == b"aws-chunked" or h["Content-Encoding"] == "aws-chunked"
                                      for h in sent), sent
        assert any("STREAMING-UNSIGNED-PAYLOAD-TRAILER" in str(h.get("X-Amz-Content-SHA256")) for h in sent)
        s3.put_object(Bucket=bucket, Key="small.txt", Body=b"chunked small")
        assert _stored(emu, bucket, "small.txt").read_bytes() == b"chunked small"
    finally:
        relay.close()
    assert hashlib.sha256(_stored(emu, bucket, "big/part.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    plain = _gateway_s3(emu.endpoint)
    plain.download_file(bucket, "big/part.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data


def _raw_put(emu, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=30)
    conn.request("PUT", path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def test_a_wrong_checksum_is_refused_and_nothing_is_stored(emu, s3, bucket):
    crc = base64.b64encode(zlib.crc32(b"abc").to_bytes(4, "big")).decode()
    framed = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n"
    common = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "3",
              "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-trailer": "x-amz-checksum-crc32"}
    assert _raw_put(emu, f"/{bucket}/good.txt", framed % crc.encode(), common)[0] == 200
    assert _stored(emu, bucket, "good.txt").read_bytes() == b"abc"
    status, answer = _raw_put(emu, f"/{bucket}/bad.txt", framed % b"AAAAAA==", common)
    assert (status, b"<Code>BadDigest</Code>" in answer) == (400, True), answer
    status, answer = _raw_put(emu, f"/{bucket}/bad2.txt", b"abc", {"x-amz-content-sha256": "0" * 64})
    assert (status, b"<Code>XAmzContentSHA256Mismatch</Code>" in answer) == (400, True), answer
    time.sleep(0.2)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["good.txt"] and not _stored(emu, bucket, "bad.txt").exists()


def test_managed_copy_over_8_mb_uses_upload_part_copy(emu, s3, bucket):
    data = os.urandom(9 * MIB + 5)
    s3.put_object(Bucket=bucket, Key="src.bin", Body=data)
    s3.copy({"Bucket": bucket, "Key": "src.bin"}, bucket, "dst.bin")  # UploadPartCopy, two parts
    assert hashlib.sha256(_stored(emu, bucket, "dst.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    upload = s3.create_multipart_upload(Bucket=bucket, Key="ranged.bin")
    part = s3.upload_part_copy(Bucket=bucket, Key="ranged.bin", UploadId=upload["UploadId"], PartNumber=1,
                               CopySource={"Bucket": bucket, "Key": "src.bin"}, CopySourceRange="bytes=10-19")
    assert part["CopyPartResult"]["ETag"].strip('"') == hashlib.md5(data[10:20]).hexdigest()
    with pytest.raises(ClientError) as missing:
        s3.upload_part_copy(Bucket=bucket, Key="ranged.bin", UploadId=upload["UploadId"], PartNumber=2,
                            CopySource={"Bucket": bucket, "Key": "nothing.bin"})
    assert _code(missing) == "NoSuchKey"
    s3.complete_multipart_upload(Bucket=bucket, Key="ranged.bin", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
    assert _stored(emu, bucket, "ranged.bin").read_bytes() == data[10:20]


@pytest.mark.parametrize("signature", ["s3", "s3v4"], ids=["sigv2-default", "sigv4"])
def test_a_presigned_get_made_against_the_gateway_works(emu, bucket, signature):
    import urllib.request

    s3 = _gateway_s3(emu.endpoint, signature_version=signature)
    emu.s3_store.client().put_object(Bucket=bucket, Key="dir/pre signed.txt", Body=b"presigned body")  # the store
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/pre signed.txt"}, ExpiresIn=60)
    assert url.startswith(emu.endpoint)
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == b"presigned body"


def test_virtual_hosted_requests_reach_the_same_bucket(emu, s3, bucket):
    try:
        socket.getaddrinfo(f"{bucket}.localhost", emu.port)
        resolves = True
    except OSError:
        resolves = False  # not here: send the Host header over a connection to 127.0.0.1 instead
    if resolves:
        virtual = _gateway_s3(f"http://localhost:{emu.port}", s3={"addressing_style": "virtual"})
        virtual.put_object(Bucket=bucket, Key="v/put.txt", Body=b"virtual")
    else:
        status, answer = _raw_put(emu, "/v/put.txt", b"virtual", {"Host": f"{bucket}.localhost:{emu.port}"})
        assert status == 200, answer
    assert _stored(emu, bucket, "v/put.txt").read_bytes() == b"virtual"
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=30)
    conn.request("GET", "/v/put.txt", headers={"Host": f"{bucket}.localhost:{emu.port}"})
    assert conn.getresponse().read() == b"virtual"
    assert virtual_bucket(f"{bucket}.localhost:{emu.port}", ("localhost", "127.0.0.1")) == bucket
    assert virtual_bucket(f"127.0.0.1:{emu.port}", ("localhost", "127.0.0.1")) is None


def test_subresource_writes_are_refused_and_leave_the_object_alone(emu, s3, bucket):
    s3.put_object(Bucket=bucket, Key="kept.txt", Body=b"original body")
    refusals = [
        lambda: s3.put_object_tagging(Bucket=bucket, Key="kept.txt", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}),
        lambda: s3.put_object_acl(Bucket=bucket, Key="kept.txt", ACL="public-read"),
        lambda: s3.put_object_legal_hold(Bucket=bucket, Key="kept.txt", LegalHold={"Status": "ON"}),
        lambda: s3.put_object_retention(Bucket=bucket, Key="kept.txt",
                                        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": "2030-01-01T00:00:00Z"}),
        lambda: s3.delete_object_tagging(Bucket=bucket, Key="kept.txt"),
        lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}),
        lambda: s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}),
        lambda: s3.delete_bucket_policy(Bucket=bucket),
    ]
    for call in refusals:
        with pytest.raises(ClientError) as refused:
            call()
        assert (refused.value.response["ResponseMetadata"]["HTTPStatusCode"], _code(refused)) == (400, "InvalidRequest")
    assert s3.get_object(Bucket=bucket, Key="kept.txt")["Body"].read() == b"original body"
    assert _stored(emu, bucket, "kept.txt").read_bytes() == b"original body"
    assert s3.get_object_tagging(Bucket=bucket, Key="kept.txt")["TagSet"] == []
    assert s3.get_object_acl(Bucket=bucket, Key="kept.txt")["Grants"][0]["Permission"] == "FULL_CONTROL"
    assert s3.get_bucket_versioning(Bucket=bucket).get("Status") is None
    with pytest.raises(ClientError) as untagged:
        s3.get_bucket_tagging(Bucket=bucket)
    assert _code(untagged) == "NoSuchTagSet"
    with pytest.raises(ClientError) as absent:
        s3.get_object_tagging(Bucket=bucket, Key="absent.txt")
    assert _code(absent) == "NoSuchKey"
    with pytest.raises(ClientError) as versioned:
        s3.get_object(Bucket=bucket, Key="kept.txt", VersionId="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    assert _code(versioned) == "InvalidArgument"


def _memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_a_64_mib_object_streams_through_the_proxy_with_bounded_memory(emu, s3, bucket, tmp_path):
    source = tmp_path / "64m.bin"
    digest = hashlib.sha256()
    with source.open("wb") as out:
        for _ in range(64):
            block = os.urandom(MIB)
            digest.update(block)
            out.write(block)
    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS (VmHWM) starts again from the current RSS
    before = _memory_kib("VmRSS")
    with source.open("rb") as body:
        s3.put_object(Bucket=bucket, Key="big/64m.bin", Body=body)
    back = hashlib.sha256()
    for piece in s3.get_object(Bucket=bucket, Key="big/64m.bin")["Body"].iter_chunks(MIB):
        back.update(piece)
    growth_mib = (_memory_kib("VmHWM") - before) / 1024
    assert back.digest() == digest.digest()
    assert _stored(emu, bucket, "big/64m.bin").stat().st_size == 64 * MIB
    print(f"peak memory growth for a 64 MiB put + get through the proxy: {growth_mib:.1f} MiB")
    assert growth_mib < 100, f"the emulator's peak memory grew by {growth_mib:.0f} MiB for a 64 MiB object"


def test_a_job_reads_what_was_put_through_the_gateway_and_it_survives_a_restart(tmp_path):
    data = tmp_path / "data"
    train = ("import os, boto3\n"
             "text = open(os.path.join(os.environ['SM_CHANNEL_TRAIN'], 'x.csv')).read()\n"
             "open(os.environ['SM_MODEL_DIR'] + '/seen.txt', 'w').write(text)\n"
             "boto3.client('s3').put_object(Bucket='job-bucket', Key='from-job.txt', Body=text.upper())\n")
    with Emulator(load_settings(data_dir=data, port=0), s3_store=DurableS3Store(data)) as first:
        s3 = _gateway_s3(first.endpoint)
        s3.create_bucket(Bucket="job-bucket")
        s3.put_object(Bucket="job-bucket", Key="data/x.csv", Body=b"1,2,3\n")
        code = upload_sourcedir(s3, "job-bucket", {"train.py": train})
        sm = first.client("sagemaker")
        name = unique("proxied")
        sm.create_training_job(**script_job(name, "job-bucket", code, channels={"train": "s3://job-bucket/data/"}))
        job = wait_for(sm, name)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        port = first.port
    with Emulator(load_settings(data_dir=data, port=port), s3_store=DurableS3Store(data)) as again:
        s3 = _gateway_s3(again.endpoint)
        assert s3.get_object(Bucket="job-bucket", Key="from-job.txt")["Body"].read() == b"1,2,3\n"
        assert s3.get_object(Bucket="job-bucket", Key="data/x.csv")["Body"].read() == b"1,2,3\n"
        artefact = again.client("sagemaker").describe_training_job(TrainingJobName=name)
        bucket, key = artefact["ModelArtifacts"]["S3ModelArtifacts"][5:].split("/", 1)
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] > 0


# ---- pure parts
def test_sign_sigv4_is_what_verify_sigv4_accepts():
    headers = {"host": "127.0.0.1:9", "x-amz-meta-a": "b", "content-type": "text/plain"}
    added = sign_sigv4("PUT", "/b/k%20x", "partNumber=1&uploadId=u", headers, "AK", "secret", "us-east-1", "s3",
                       now=1_800_000_000)
    signed = {**headers, **added}
    lookup = {"AK": "secret"}.get
    assert verify_sigv4("PUT", "/b/k%20x", "partNumber=1&uploadId=u", signed, lambda: "", lookup,
                        now=1_800_000_010) is None
    assert verify_sigv4("PUT", "/b/k%20y", "partNumber=1&uploadId=u", signed, lambda: "", lookup,
                        now=1_800_000_010).kind == "mismatch"
    assert "x-amz-meta-a" in added["authorization"] and "content-type" in added["authorization"]


@pytest.mark.parametrize(("environ", "expected"), [
    ({"PATH_INFO": "/b/k", "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/s3/aws4_request, "
                                                  "SignedHeaders=host, Signature=x"}, True),
    ({"PATH_INFO": "/", "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/iam/aws4_request, "
                                               "SignedHeaders=host, Signature=x"}, False),
    ({"PATH_INFO": "/b/k", "HTTP_AUTHORIZATION": "AWS a:sig"}, True),  # SigV2: S3 for moto
    ({"PATH_INFO": "/b/k", "QUERY_STRING": "X-Amz-Credential=a%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"}, True),
    ({"PATH_INFO": "/", "QUERY_STRING": "Action=GetCallerIdentity&X-Amz-Credential=a%2F20260101%2Fus-east-1%2Fsts"
                                        "%2Faws4_request"}, False),
    ({"PATH_INFO": "/b/k"}, True),  # unsigned: moto's default service is S3
    ({"PATH_INFO": "/", "HTTP_X_AMZ_TARGET": "Logs_20140328.PutLogEvents"}, False),
    ({"PATH_INFO": "/", "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": "20"}, False),
    ({"PATH_INFO": "/moto-api/reset"}, False),
    ({"PATH_INFO": "/v20180820/accesspoint", "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=a/20260101/us-east-1/"
                                                                    "s3/aws4_request, SignedHeaders=host, Signature=x"},
     False),
])
def test_s3_requests_are_recognised_as_moto_would(environ, expected):
    assert is_s3_request(environ) is expected
