"""The console's job APIs over real HTTP: a training job's metrics over time, S3 objects as downloads.

A real training job (the SKLearn script runner in the sandbox) prints metric lines; the series the
``metrics`` API answers are checked against the job's own CloudWatch log events, read with boto3.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import put_s3, unique, wait_for
from console_support import METRIC_DEFINITIONS, create_metric_job, metrics_script

TRAIN = metrics_script("epoch {epoch}: train_loss={1.0 / (epoch + 1):.4f} validation:rmse={2.5 - epoch * 0.25:.3f}",
                       5, 0.05, "done")


def _get(emulator, name: str, params: dict, token: str | None = "") -> tuple[int, dict, bytes]:
    url = f"{emulator.endpoint}/_smlocal/console/api/{name}?{urllib.parse.urlencode(params)}"
    headers = {"X-Smlocal-Console-Token": emulator.console_token if token == "" else token} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture(scope="module")
def metric_job(emulator):
    sm, s3 = emulator.client("sagemaker"), emulator.client("s3")
    bucket = unique("console-jobs")
    s3.create_bucket(Bucket=bucket)
    name = unique("metrics")
    create_metric_job(sm, s3, bucket, name, TRAIN)
    job = wait_for(sm, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    return name, bucket, job


def _log_values(emulator, name: str, regex: str) -> list[tuple[float, float]]:
    logs = emulator.client("logs")
    found = []
    for stream in logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs",
                                            logStreamNamePrefix=f"{name}/")["logStreams"]:
        events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs",
                                     logStreamName=stream["logStreamName"], startFromHead=True)["events"]
        for event in events:
            match = re.search(regex, event["message"])
            if match:
                found.append((event["timestamp"] / 1000.0, float(match.group(1))))
    return found


def test_metrics_series_are_the_log_values_at_the_log_times(emulator, metric_job):
    name, _, job = metric_job
    status, headers, body = _get(emulator, "metrics", {"job": name})
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    answer = json.loads(body)
    assert set(answer["series"]) == {"validation:rmse", "train:loss"}
    for definition in METRIC_DEFINITIONS:
        expected = _log_values(emulator, name, definition["Regex"])
        assert len(expected) == 5
        assert [tuple(point) for point in answer["series"][definition["Name"]]] == expected
    assert [v for _, v in answer["series"]["validation:rmse"]] == pytest.approx([2.5, 2.25, 2.0, 1.75, 1.5])
    final = {m["MetricName"]: m["Value"] for m in answer["final"]}
    assert final == {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert final == pytest.approx({"validation:rmse": 1.5, "train:loss": 0.2})


def test_metrics_of_an_unknown_job_is_the_service_not_found_error(emulator):
    status, _, body = _get(emulator, "metrics", {"job": "no-such-job-anywhere"})
    assert status == 400
    assert json.loads(body) == {"__type": "ValidationException", "message": "Requested resource not found."}
    status, _, body = _get(emulator, "metrics", {})
    assert status == 400 and json.loads(body)["__type"] == "ValidationException"


def test_metrics_need_the_console_token(emulator, metric_job):
    status, _, body = _get(emulator, "metrics", {"job": metric_job[0]}, token=None)
    assert status == 403 and json.loads(body)["__type"] == "AccessDeniedException"
    status, _, _ = _get(emulator, "metrics", {"job": metric_job[0]}, token="not-the-token")
    assert status == 403


def test_s3_object_is_an_attachment_with_the_exact_bytes(emulator, metric_job):
    _, bucket, job = metric_job
    s3 = emulator.client("s3")
    payload = bytes(range(256)) * 1000 + b"<script>alert(1)</script>"
    uri = put_s3(s3, bucket, 'reports/évaluation "1".html', payload)
    status, headers, body = _get(emulator, "s3-object", {"uri": uri})
    assert status == 200 and body == payload
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Length"] == str(len(payload))
    assert headers["Content-Disposition"] == (
        "attachment; filename=\"_valuation__1_.html\"; filename*=UTF-8''%C3%A9valuation%20%221%22.html")
    # a model artefact the job wrote, by the URI its Describe gives
    status, headers, body = _get(emulator, "s3-object", {"uri": job["ModelArtifacts"]["S3ModelArtifacts"]})
    assert status == 200 and body[:2] == b"\x1f\x8b"  # gzip
    assert headers["Content-Disposition"].startswith('attachment; filename="model.tar.gz"')


def test_s3_object_size_limit_for_inline_views(emulator, metric_job):
    uri = put_s3(emulator.client("s3"), metric_job[1], "big.json", json.dumps({"x": "y" * 5000}))
    status, _, body = _get(emulator, "s3-object", {"uri": uri, "maxBytes": "1000"})
    assert status == 400 and json.loads(body)["__type"] == "EntityTooLarge"
    status, _, body = _get(emulator, "s3-object", {"uri": uri, "maxBytes": "100000"})
    assert status == 200 and json.loads(body) == {"x": "y" * 5000}
    status, _, body = _get(emulator, "s3-object", {"uri": uri, "maxBytes": "-1"})
    assert status == 400 and json.loads(body)["__type"] == "ValidationException"


@pytest.mark.parametrize("uri", ["", "http://bucket/key", "s3://", "s3://bucket-only", "s3://bucket-only/",
                                 "s3://Bad_Bucket!/key"])
def test_s3_object_bad_uri_is_a_400(emulator, uri):
    status, _, body = _get(emulator, "s3-object", {"uri": uri})
    assert status == 400, body
    assert json.loads(body)["__type"] == "InvalidURI"


def test_s3_object_missing_is_a_404_in_s3_shape(emulator, metric_job):
    status, _, body = _get(emulator, "s3-object", {"uri": f"s3://{metric_job[1]}/no/such/key.json"})
    assert status == 404 and json.loads(body)["__type"] == "NoSuchKey"
    status, _, body = _get(emulator, "s3-object", {"uri": f"s3://{unique('absent')}/key.json"})
    assert status == 404 and json.loads(body)["__type"] == "NoSuchBucket"


# ---- log-events: the job page's log tail
def _log_events(emulator, **params) -> tuple[int, dict]:
    status, _, body = _get(emulator, "log-events", params)
    return status, json.loads(body)


def test_log_events_are_the_jobs_cloudwatch_streams_and_events(emulator, metric_job):
    name = metric_job[0]
    logs = emulator.client("logs")
    group = "/aws/sagemaker/TrainingJobs"
    streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    expected = logs.get_log_events(logGroupName=group, logStreamName=streams[0]["logStreamName"],
                                   startFromHead=True)["events"]
    status, answer = _log_events(emulator, job=name, kind="training")
    assert status == 200, answer
    assert [s["logStreamName"] for s in answer["logStreams"]] == sorted(s["logStreamName"] for s in streams)
    assert answer["logStreamName"] == sorted(s["logStreamName"] for s in streams)[0]
    assert answer["events"] == expected and any("validation:rmse=1.500" in e["message"] for e in expected)
    # the forward token continues after the last event: nothing new on a finished job
    status, again = _log_events(emulator, job=name, kind="training", stream=answer["logStreamName"],
                                nextToken=answer["nextForwardToken"])
    assert status == 200 and again["events"] == [] and again["nextForwardToken"] == answer["nextForwardToken"]


def test_log_events_errors_are_aws_shaped(emulator, metric_job):
    name = metric_job[0]
    status, answer = _log_events(emulator, job="no-such-job-anywhere", kind="training")
    assert status == 400 and answer == {"__type": "ValidationException", "message": "Requested resource not found."}
    status, answer = _log_events(emulator, job=name, kind="processing")  # no processing job of that name
    assert status == 400 and answer["__type"] == "ValidationException"
    for params in ({"kind": "training"}, {"job": name}, {"job": name, "kind": "endpoint"}):
        status, answer = _log_events(emulator, **params)
        assert status == 400 and answer["__type"] == "ValidationException", params
    status, answer = _log_events(emulator, job=name, kind="training", stream="another-job/algo-1-1")
    assert status == 400 and answer == {"__type": "ResourceNotFoundException",
                                        "message": "The specified log stream does not exist."}
    status, _, body = _get(emulator, "log-events", {"job": name, "kind": "training"}, token=None)
    assert status == 403 and json.loads(body)["__type"] == "AccessDeniedException"


def test_a_job_that_has_not_logged_has_no_streams(emulator):
    sm = emulator.client("sagemaker")
    name = unique("quiet")
    bucket = unique("console-quiet")
    emulator.client("s3").create_bucket(Bucket=bucket)
    sm.create_processing_job(
        ProcessingJobName=name, RoleArn=emulator.role_arn,
        AppSpecification={"ImageUri": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
                          "ContainerEntrypoint": ["python3", "-c", "pass"]},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}})
    status, answer = _log_events(emulator, job=name, kind="processing")
    assert status == 200, answer
    assert answer["logStreamName"] is None or answer["logStreamName"].startswith(f"{name}/")
