"""InvokeEndpoint latency on loopback for a scikit-learn model.

One endpoint serves a LogisticRegression trained on iris (the scikit-learn image's contract: the
user's model_fn, default CSV decoding and encoding). A raw ``http.client`` connection with
keep-alive sends many sequential ``POST /endpoints/<name>/invocations`` requests, as the SageMaker
runtime API receives them. For the breakdown, the same request also goes straight to the model
server (``ModelServer.invoke``: Unix socket -> worker -> model), skipping the HTTP gateway.
"""

from __future__ import annotations

import http.client
import io
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import emulator, summary, write  # noqa: E402

REQUESTS = 3000
WARMUP = 200
BODY = b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
INFERENCE = (b"import joblib, os\n\n"
             b"def model_fn(model_dir):\n    return joblib.load(os.path.join(model_dir, 'model.joblib'))\n")


def model_archive() -> bytes:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=500).fit(x, y), model)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in (("model.joblib", model.getvalue()), ("code/inference.py", INFERENCE)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def deploy(emu, name: str) -> float:
    sm, s3 = emu.client("sagemaker"), emu.client("s3")
    s3.create_bucket(Bucket="bench-models")
    s3.put_object(Bucket="bench-models", Key="iris/model.tar.gz", Body=model_archive())
    sm.create_model(ModelName=name, ExecutionRoleArn=emu.role_arn, PrimaryContainer={
        "Image": IMAGE, "ModelDataUrl": "s3://bench-models/iris/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}})
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])
    start = time.perf_counter()
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    while sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating":
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    status = sm.describe_endpoint(EndpointName=name)
    assert status["EndpointStatus"] == "InService", status.get("FailureReason")
    return elapsed


def through_gateway(port: int, name: str) -> tuple[list[float], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "text/csv", "Accept": "text/csv",
               "Authorization": "AWS4-HMAC-SHA256 Credential=smlocal/20260101/us-east-1/sagemaker/aws4_request"}
    latencies = []
    reconnects = 0
    for i in range(WARMUP + REQUESTS):
        sock = conn.sock
        start = time.perf_counter()
        conn.request("POST", f"/endpoints/{name}/invocations", BODY, headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        assert response.status == 200 and data == b"0\n2\n", (response.status, data)
        if i >= WARMUP:
            latencies.append(elapsed)
            reconnects += int(sock is not None and conn.sock is not sock)
    conn.close()
    return latencies, reconnects


def direct(server) -> list[float]:
    latencies = []
    for i in range(WARMUP + REQUESTS):
        start = time.perf_counter()
        status, data, _ = server.invoke(BODY, "text/csv", "text/csv")
        elapsed = time.perf_counter() - start
        assert status == 200 and data == b"0\n2\n"
        if i >= WARMUP:
            latencies.append(elapsed)
    return latencies


def main() -> None:
    name = "latency-iris"
    with emulator() as emu:
        startup = deploy(emu, name)
        gateway_s, reconnects = through_gateway(emu.port, name)
        server = emu.endpoints._live[name].variants[0].server  # noqa: SLF001 - breakdown only
        direct_s = direct(server)
    gateway_ms = [x * 1000 for x in gateway_s]
    direct_ms = [x * 1000 for x in direct_s]
    write("invoke_latency", {
        "requests": REQUESTS,
        "payload": "2 CSV rows of iris features, text/csv in and out",
        "endpoint_startup_seconds": round(startup, 3),
        "invoke_endpoint_ms": summary(gateway_ms),
        "keep_alive_reconnects": reconnects,
        "model_server_direct_ms": summary(direct_ms),
        "target": {"p50_ms": 5},
    })


if __name__ == "__main__":
    main()
