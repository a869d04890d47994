"""The pure helpers of the transform runner: data-log lines, batch environment, output keys."""

from __future__ import annotations

from datetime import datetime, timezone

from smlocal.runtime.transform import data_log_line, environment_for, model_error_lines, output_uri


def test_data_log_line_has_the_aws_format():
    stamp = datetime(2023, 3, 29, 13, 16, 50, 587000, tzinfo=timezone.utc).timestamp()
    assert data_log_line("MaxConcurrentTransforms=1, MaxPayloadInMB=6, BatchStrategy=MULTI_RECORD", stamp) == (
        "2023-03-29T13:16:50.587:[sagemaker logs]: MaxConcurrentTransforms=1, MaxPayloadInMB=6, "
        "BatchStrategy=MULTI_RECORD"
    )


def test_model_error_lines_for_a_client_error():
    assert model_error_lines("b/in/x.csv", 400, b"bad payload\nsecond line\n") == [
        "b/in/x.csv: ClientError: 400",
        "b/in/x.csv: ",
        "b/in/x.csv: Message:",
        "b/in/x.csv: bad payload",
        "b/in/x.csv: second line",
    ]


def test_model_error_lines_for_a_server_error():
    assert model_error_lines("b/k", 500, b"boom")[0] == "b/k: Bad HTTP status received from algorithm: 500"


def test_environment_only_names_what_the_request_set():
    assert environment_for({}) == {"SAGEMAKER_BATCH": "true"}
    env = environment_for({"MaxPayloadInMB": 0, "BatchStrategy": "SingleRecord", "MaxConcurrentTransforms": 4,
                           "Environment": {"A": "1"}})
    assert env == {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "0",
                   "SAGEMAKER_BATCH_STRATEGY": "SINGLE_RECORD", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
                   "A": "1"}
    assert environment_for({"BatchStrategy": "MultiRecord"})["SAGEMAKER_BATCH_STRATEGY"] == "MULTI_RECORD"


def test_output_uri():
    assert output_uri("s3://b/out", "a/x.csv") == "s3://b/out/a/x.csv.out"
    assert output_uri("s3://b/out/", "x.csv") == "s3://b/out/x.csv.out"
