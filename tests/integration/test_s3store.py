"""The durable S3 store (`rclone serve s3` over DATA_DIR/s3): the S3 smlocal and its clients need, and its lifecycle."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.config import Config

from smlocal.s3store import DurableS3Store, S3StoreError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with DurableS3Store(tmp_path_factory.mktemp("durable")) as running:
        yield running


@pytest.fixture
def s3(store):
    return store.client()


def _bucket(s3, name: str) -> str:
    s3.create_bucket(Bucket=name)
    return name


def test_objects_are_files_and_listings_page_like_s3(store, s3):
    bucket = _bucket(s3, "contract-list")
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"p/d{i % 2}/k{i}.csv", Body=b"v%d" % i)
    assert (store.root / bucket / "p" / "d0" / "k0.csv").read_bytes() == b"v0"
    assert s3.get_object(Bucket=bucket, Key="p/d1/k1.csv")["Body"].read() == b"v1"
    assert s3.head_object(Bucket=bucket, Key="p/d0/k2.csv")["ContentLength"] == 2
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="p/d0/k")["Contents"]] == [
        "p/d0/k0.csv", "p/d0/k2.csv", "p/d0/k4.csv"]
    delimited = s3.list_objects_v2(Bucket=bucket, Prefix="p/", Delimiter="/")
    assert [p["Prefix"] for p in delimited["CommonPrefixes"]] == ["p/d0/", "p/d1/"]
    pages, kwargs = [], {}
    while True:
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, **kwargs)
        pages.append([o["Key"] for o in page["Contents"]])
        if not page["IsTruncated"]:
            break
        kwargs = {"ContinuationToken": page["NextContinuationToken"]}
    assert [len(p) for p in pages] == [2, 2, 1] and sum(pages, []) == sorted(sum(pages, []))
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=bucket, Key="p/none")
    s3.delete_object(Bucket=bucket, Key="p/d0/k0.csv")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "p/d1/k1.csv"}, {"Key": "p/d1/k3.csv"}]})
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["p/d0/k2.csv", "p/d0/k4.csv"]


def test_multipart_upload_copy_and_presigned_get(store, s3, tmp_path):
    bucket = _bucket(s3, "contract-multipart")
    data = os.urandom(9 * 1024 * 1024 + 123)  # above boto3's 8 MB multipart threshold
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    s3.upload_file(str(source), bucket, "big/part.bin")
    assert s3.head_object(Bucket=bucket, Key="big/part.bin")["ContentLength"] == len(data)
    s3.download_file(bucket, "big/part.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    assert not list(store.root.rglob(".rclone_temp_*"))
    s3.copy_object(Bucket=bucket, Key="copy/part.bin", CopySource={"Bucket": bucket, "Key": "big/part.bin"})
    copied = s3.get_object(Bucket=bucket, Key="copy/part.bin")["Body"].read()
    assert hashlib.sha256(copied).digest() == hashlib.sha256(data).digest()
    import boto3

    key, secret = store.credentials
    v4 = boto3.client("s3", endpoint_url=store.endpoint, region_name="us-east-1", aws_access_key_id=key,
                      aws_secret_access_key=secret, config=Config(signature_version="s3v4"))
    url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "big/part.bin"}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.read() == data


def test_unsigned_and_foreign_origin_requests_are_refused(store, s3):
    bucket = _bucket(s3, "contract-private")
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"s")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{store.endpoint}/{bucket}/secret.txt", timeout=10)
    assert refused.value.code in (400, 403)
    preflight = urllib.request.Request(f"{store.endpoint}/{bucket}/secret.txt", method="OPTIONS",
                                       headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    with urllib.request.urlopen(preflight, timeout=10) as response:
        assert response.headers.get("Access-Control-Allow-Origin") in (None, store.endpoint)


def test_credentials_are_private_and_reused(tmp_path):
    with DurableS3Store(tmp_path) as first:
        pair = first.credentials
        first.client().create_bucket(Bucket="kept-bucket")
    path = tmp_path / "s3-credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tuple(json.loads(path.read_text()).values()) == pair
    with DurableS3Store(tmp_path) as second:
        assert second.credentials == pair
        assert [b["Name"] for b in second.client().list_buckets()["Buckets"]] == ["kept-bucket"]
    assert not (tmp_path / "s3-store.json").exists()


def test_the_store_dies_with_its_parent_and_a_stale_one_is_killed(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys, time
        from smlocal.s3store import DurableS3Store
        store = DurableS3Store({str(tmp_path)!r}).start()
        print(store.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert Path(f"/proc/{child}").exists()
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.time() + 10
    while Path(f"/proc/{child}").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists(), "rclone outlived the smlocal that started it"
    # a stale server of this folder (e.g. started by hand) is killed by the next start
    stale = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record = json.loads((tmp_path / "s3-store.json").read_text())
    try:
        (tmp_path / "s3-store.json").write_text(json.dumps({**record, "pid": stale.pid, "owner": 999999999}))
        with DurableS3Store(tmp_path) as store:  # not rclone: left alone, the store starts anyway
            assert store.client().list_buckets()["Buckets"] == []
        assert stale.poll() is None
    finally:
        stale.kill()
        stale.wait()


def test_a_data_dir_in_use_is_refused(tmp_path):
    script = textwrap.dedent(f"""
        import time
        from smlocal.s3store import DurableS3Store
        DurableS3Store({str(tmp_path)!r}).start()
        print("up", flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "up"
        with pytest.raises(S3StoreError, match="in use"):
            DurableS3Store(tmp_path).start()
    finally:
        owner.kill()
        owner.wait()


def test_an_emulator_with_the_store_uses_it_and_reset_all_empties_it(tmp_path):
    from smlocal.config import load_settings
    from smlocal.server import Emulator

    from smlocal.auth import CLIENT_ACCESS_KEY

    store = DurableS3Store(tmp_path)
    with Emulator(load_settings(data_dir=tmp_path, port=0), s3_store=store) as emu:
        env = emu.client_env()
        assert "AWS_ENDPOINT_URL_S3" not in env  # S3 goes through the gateway (tests/integration/test_s3_proxy.py)
        assert env["AWS_ACCESS_KEY_ID"] == CLIENT_ACCESS_KEY
        s3 = emu.s3_client()
        assert s3.meta.endpoint_url == store.endpoint  # the server's own client talks to the store directly
        s3.create_bucket(Bucket="reset-me")
        s3.put_object(Bucket="reset-me", Key="a/b.txt", Body=b"x")
        assert (tmp_path / "s3" / "reset-me" / "a" / "b.txt").read_bytes() == b"x"
        logs = emu.client("logs")
        emu.log_journal.append("/smlocal/test", "s", [{"timestamp": int(time.time() * 1000), "message": "m"}])
        emu.reset_all()
        assert s3.list_buckets()["Buckets"] == [] and not (tmp_path / "s3" / "reset-me").exists()
        assert emu.log_journal.files() == []
        assert logs.describe_log_groups(logGroupNamePrefix="/smlocal/test")["logGroups"] == []
    assert store.pid is None
