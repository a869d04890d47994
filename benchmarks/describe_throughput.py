"""DescribeTrainingJob throughput and latency on loopback.

The emulator runs in this process; load comes from separate client processes (so they do not share
the server's GIL), each with one keep-alive HTTP connection issuing requests back to back.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import emulator, summary, write  # noqa: E402

DURATION = 10.0
CLIENTS = int(__import__("os").environ.get("BENCH_CLIENTS", "2"))


def client(port: int, name: str, duration: float, out) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = json.dumps({"TrainingJobName": name})
    headers = {"X-Amz-Target": "SageMaker.DescribeTrainingJob", "Content-Type": "application/x-amz-json-1.1",
               "Authorization": "AWS4-HMAC-SHA256 Credential=smlocal/20260101/us-east-1/sagemaker/aws4_request"}
    latencies = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        start = time.perf_counter()
        conn.request("POST", "/", body, headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        latencies.append(time.perf_counter() - start)
    out.put(latencies)


def main() -> None:
    with emulator() as emu:
        sm, s3 = emu.client("sagemaker"), emu.client("s3")
        s3.create_bucket(Bucket="bench")
        name = "describe-target"
        sm.create_training_job(
            TrainingJobName=name,
            AlgorithmSpecification={"TrainingImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1",
                                    "TrainingInputMode": "File"},
            RoleArn=emu.role_arn,
            OutputDataConfig={"S3OutputPath": "s3://bench/out"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 600},
        )
        queue = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=client, args=(emu.port, name, DURATION, queue))
                 for _ in range(CLIENTS)]
        for proc in procs:
            proc.start()
        latencies = []
        for _ in procs:
            latencies.extend(queue.get())
        for proc in procs:
            proc.join()
    ms = [x * 1000 for x in latencies]
    write("describe_throughput", {
        "clients": CLIENTS,
        "seconds": DURATION,
        "requests": len(ms),
        "requests_per_second": len(ms) / DURATION,
        "latency_ms": summary(ms),
        "target": {"requests_per_second": 500, "p99_ms": 10},
    })


if __name__ == "__main__":
    main()
