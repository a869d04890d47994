"""S3 put/get throughput (MB/s): the durable store (`rclone serve s3` over files) against the in-memory one.

The in-memory store is moto behind the smlocal gateway (what embedded runs and tests use); the
durable one is what `smlocal up --data-dir D` runs, measured twice: directly on rclone's port, and
through the gateway's S3 proxy (what clients and jobs use: re-signed, streamed). Each writes then reads 1 GiB of objects in two
shapes, 64 x 16 MiB and 1024 x 1 MiB, with PutObject / GetObject from the same boto3 client
configuration (path style, 4 threads sharing one client, a pool of 8 connections). Rounds alternate
between the stores; the best round of each is reported (``BENCH_ROUNDS``, default 2).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402

from _common import write  # noqa: E402

MIB = 1024 * 1024
SHAPES = {"64x16MiB": (64, 16 * MIB), "1024x1MiB": (1024, MIB)}
THREADS = 4


def _client(endpoint: str, key: str, secret: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret,
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=8,
                                      retries={"max_attempts": 2, "mode": "standard"}))


def _round(s3, bucket: str, count: int, size: int) -> dict:
    body = os.urandom(size)
    keys = [f"bench/{i:05d}.bin" for i in range(count)]

    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    def get(key: str) -> int:
        return len(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(THREADS) as pool:
        start = time.perf_counter()
        list(pool.map(put, keys))
        put_seconds = time.perf_counter() - start
        start = time.perf_counter()
        read = sum(pool.map(get, keys))
        get_seconds = time.perf_counter() - start
    assert read == count * size
    for first in range(0, count, 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[first:first + 1000]],
                                                 "Quiet": True})
    total_mb = count * size / MIB
    return {"put_mb_s": total_mb / put_seconds, "get_mb_s": total_mb / get_seconds,
            "put_seconds": put_seconds, "get_seconds": get_seconds}


def main() -> None:
    from smlocal.auth import CLIENT_ACCESS_KEY, client_secret_key
    from smlocal.config import load_settings
    from smlocal.s3store import DurableS3Store
    from smlocal.server import Emulator

    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    folder = Path(tempfile.mkdtemp(prefix="smlocal-s3bench-"))
    try:
        with Emulator(load_settings(data_dir=folder / "memory", port=0)) as memory, \
                DurableS3Store(folder / "durable") as durable, \
                Emulator(load_settings(data_dir=folder / "proxied", port=0),
                         s3_store=DurableS3Store(folder / "proxied")) as proxied:
            stores = {
                "memory": _client(memory.endpoint, CLIENT_ACCESS_KEY, client_secret_key()),
                "durable": _client(durable.endpoint, *durable.credentials),
                "gateway": _client(proxied.endpoint, CLIENT_ACCESS_KEY, client_secret_key()),
            }
            for s3 in stores.values():
                s3.create_bucket(Bucket="bench-bucket")
            best: dict = {name: {} for name in stores}
            for _ in range(rounds):
                for shape, (count, size) in SHAPES.items():
                    for name, s3 in stores.items():
                        result = _round(s3, "bench-bucket", count, size)
                        kept = best[name].get(shape)
                        best[name][shape] = {
                            key: (max if key.endswith("mb_s") else min)(value, kept[key]) if kept else value
                            for key, value in result.items()}
                        print(f"{name:8} {shape:10} put {result['put_mb_s']:7.1f} MB/s  "
                              f"get {result['get_mb_s']:7.1f} MB/s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    def ratios(name: str, base: str) -> dict:
        return {shape: {op: best[name][shape][f"{op}_mb_s"] / best[base][shape][f"{op}_mb_s"] for op in ("put", "get")}
                for shape in SHAPES}

    write("s3_store_throughput", {"total_bytes_per_round": 1024 * MIB, "threads": THREADS, "rounds": rounds,
                                  "memory_moto_via_gateway": best["memory"], "durable_rclone": best["durable"],
                                  "durable_via_gateway": best["gateway"],
                                  "durable_over_memory": ratios("durable", "memory"),
                                  "durable_via_gateway_over_memory": ratios("gateway", "memory"),
                                  "durable_via_gateway_over_durable": ratios("gateway", "durable")})


if __name__ == "__main__":
    main()
