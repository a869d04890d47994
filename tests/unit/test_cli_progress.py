"""The pure parts of `smlocal run`'s progress and the CLI tables: rows (from the execution graph), plain lines,
changes, piped tables."""

from __future__ import annotations

import datetime as dt
import io

from smlocal.cli_console import execution_fragment
from smlocal.cli_progress import ChangeLog, execution_rows, job_row, plain_line
from smlocal.cli_tables import print_table, short_arn
from smlocal.pipelines.definition import parse_definition

UTC = dt.timezone.utc
T0 = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
ARN = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/abc123"


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _processing(name: str, **extra) -> dict:
    return {"Name": name, "Type": "Processing", "Arguments": {"ProcessingResources": {}}, **extra}


DEFINITION = parse_definition({"Version": "2020-12-01", "Steps": [
    _processing("Prep"),
    {"Name": "Train", "Type": "Training", "Arguments": {}, "DependsOn": ["Prep"]},
    {"Name": "Check", "Type": "Condition", "DependsOn": ["Train"], "Arguments": {
        "Conditions": [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}],
        "IfSteps": [_processing("Register")],
        "ElseSteps": [{"Name": "Stop", "Type": "Fail", "Arguments": {"ErrorMessage": "MSE too high"}}]}},
    {"Name": "Wait", "Type": "Callback", "Arguments": {}, "DependsOn": ["Prep"]},
]})


def test_step_rows_are_the_graph_nodes_started_first_in_start_order():
    steps = [
        {"StepName": "Train", "StepStatus": "Succeeded", "StartTime": _at(2), "EndTime": _at(14.34),
         "AttemptCount": 2, "Metadata": {"TrainingJob": {"Arn": "arn:aws:sagemaker:r:1:training-job/x"}}},
        {"StepName": "Prep", "StepStatus": "Succeeded", "StartTime": _at(0), "EndTime": _at(2), "AttemptCount": 1,
         "CacheHitResult": {"SourcePipelineExecutionArn": "arn:aws:sagemaker:r:1:pipeline/p/execution/old"}},
        {"StepName": "Check", "StepStatus": "Succeeded", "StartTime": _at(15), "EndTime": _at(15),
         "Metadata": {"Condition": {"Outcome": "False"}}},
        {"StepName": "Stop", "StepStatus": "Failed", "StartTime": _at(16), "EndTime": _at(16),
         "Metadata": {"Fail": {"ErrorMessage": "MSE too high\nsecond line"}}},
        {"StepName": "Wait", "StepStatus": "Executing", "StartTime": _at(17),
         "Metadata": {"Callback": {"CallbackToken": "tok123"}}},
    ]
    rows = execution_rows(ARN, DEFINITION, steps, now=_at(20))
    # every step of the definition; the branch not taken (Register) after those that started
    assert [r.name for r in rows] == ["Prep", "Train", "Check", "Stop", "Wait", "Register"]
    assert [r.type for r in rows] == ["Processing", "Training", "Condition", "Fail", "Callback", "Processing"]
    assert rows[-1].status == "Skipped" and rows[-1].seconds is None
    assert rows[0].detail == "cache hit from old"
    assert rows[1].detail == "2 attempts" and round(rows[1].seconds, 2) == 12.34
    assert rows[1].job == "training-job/x"
    assert rows[2].detail == "outcome False"
    assert rows[3].detail == "MSE too high"  # the Fail step's ErrorMessage, first line only
    assert rows[4].seconds == 3.0 and not rows[4].done and rows[4].detail == "token tok123"  # running: to now
    assert plain_line(rows[1]) == "step Train  Training  Succeeded  12.3s  2 attempts"
    assert plain_line(rows[4]) == "step Wait  Callback  Executing  token tok123"


def test_job_rows_measure_creation_to_end():
    summary = {"TrainingJobName": "job-1", "TrainingJobStatus": "Completed", "CreationTime": _at(0),
               "TrainingEndTime": _at(3.25), "LastModifiedTime": _at(9)}
    row = job_row("training", "TrainingJob", summary, now=_at(30))
    assert (row.kind, row.type, row.status) == ("job", "Training", "Completed")
    assert plain_line(row) == "job job-1  Training  Completed  3.2s"
    running = job_row("processing", "ProcessingJob", {"ProcessingJobName": "p", "ProcessingJobStatus": "InProgress",
                                                      "CreationTime": _at(0)}, now=_at(4))
    assert running.seconds == 4.0 and plain_line(running) == "job p  Processing  InProgress"
    failed = {"TrainingJobName": "job-2", "TrainingJobStatus": "Failed", "CreationTime": _at(0),
              "TrainingEndTime": _at(1)}
    row = job_row("training", "TrainingJob", failed, now=_at(2), reason="AlgorithmError: boom\nTraceback ...")
    assert plain_line(row) == "job job-2  Training  Failed  1.0s  AlgorithmError: boom"


def test_change_log_reports_each_status_once_from_the_first_start():
    log = ChangeLog()
    waiting = execution_rows(ARN, DEFINITION, [], now=_at(0))
    assert {r.status for r in waiting} == {"NotStarted"} and log.changed(waiting) == []  # nothing happened yet
    first = execution_rows(ARN, DEFINITION, [{"StepName": "Prep", "StepStatus": "Executing", "StartTime": _at(0)}],
                           now=_at(1))
    assert [r.name for r in log.changed(first)] == ["Prep"]
    again = execution_rows(ARN, DEFINITION, [{"StepName": "Prep", "StepStatus": "Executing", "StartTime": _at(0)}],
                           now=_at(2))
    assert log.changed(again) == []  # only its duration moved
    done = execution_rows(ARN, DEFINITION, [{"StepName": "Prep", "StepStatus": "Succeeded", "StartTime": _at(0),
                                             "EndTime": _at(3)}], now=_at(4))
    assert [plain_line(r) for r in log.changed(done)] == ["step Prep  Processing  Succeeded  3.0s"]


def test_piped_table_is_plain_aligned_and_never_cut():
    out = io.StringIO()  # not a terminal
    detail = "a reason " * 30
    print_table(("NAME", "STATUS", "DETAIL"), [("short", "Failed", detail), ("a-much-longer-name", "Completed", "")],
                status_column=1, shrink_column=2, stream=out)
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()
    assert lines[0] == "NAME                STATUS     DETAIL"
    assert lines[1] == "short               Failed     " + detail.rstrip()
    assert lines[2] == "a-much-longer-name  Completed"


def test_arn_shortening_and_console_route():
    assert short_arn("arn:aws:sagemaker:us-east-1:123456789012:training-job/my-job") == "training-job/my-job"
    assert short_arn("not-an-arn") == "not-an-arn"
    assert execution_fragment(ARN) == ("/executions/arn%3Aaws%3Asagemaker%3Aus-east-1%3A123456789012%3Apipeline"
                                       "%2Fp%2Fexecution%2Fabc123")
