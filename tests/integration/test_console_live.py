"""The console while things run, in a real Chromium (Debian's, via Playwright) against real pipelines.

A running execution's graph follows its steps without a reload (Executing → Succeeded, the next step
after it) and stops polling once the execution ends; Stop stops a running execution (the API and the
page say Stopped, the running step too); Retry resumes a Failed execution whose step failed for a
transient cause (a missing S3 object the test then writes) and is not offered once it Succeeded; a
call the API refuses shows the API's own error on the page; a running job's log tail shows each new
line as it is printed and stops polling when the job ends.
CI installs Chromium and sets ``SMLOCAL_CI=1``, where a missing browser fails instead of skipping.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from conftest import script_job, unique, upload_sourcedir
from console_support import console_page, open_console, open_execution
from pipeline_support import (
    condition_step, create_pipeline, start, steps_of, training_code, training_step, wait_execution, wait_step,
)  # fmt: skip
from test_browser_boundary import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = pytest.mark.slow

WAIT = 60_000
QUIET_S = 3.0  # how long the page is watched after the end for requests it should no longer make
TICKING = """
import time
for i in range(7):
    print(f"tick {i}", flush=True)
    time.sleep(1)
print("all ticks done", flush=True)
"""


@pytest.fixture
def page(browser, emulator):  # noqa: F811 - the imported fixture
    """A page that lists its requests in ``page.calls``: (time, kind, what) with kind "graph" for the
    execution-graph API, "sagemaker"/"logs" for API calls (what: the operation), "document" for a load."""
    with console_page(browser, emulator, timeout=WAIT) as page:
        page.calls = []

        def seen(request):
            target = request.headers.get("x-amz-target", "")
            if "/api/execution-graph" in request.url:
                page.calls.append((time.monotonic(), "graph", request.url))
            elif "/api/log-events" in request.url:  # the console's log API: one page of a stream's events
                page.calls.append((time.monotonic(), "logs", "GetLogEvents"))
            elif target:
                service, _, operation = target.partition(".")
                page.calls.append((time.monotonic(), "logs" if service.startswith("Logs") else "sagemaker", operation))
            elif request.resource_type == "document":
                page.calls.append((time.monotonic(), "document", request.url))

        page.on("request", seen)
        yield page


def _node(page, step: str, status: str) -> None:
    """Waits until the graph shows ``step`` with ``status`` (the page's polling, never a reload)."""
    page.wait_for_selector(f'svg.graph g.node[data-step="{step}"][data-status="{status}"]')


def _execution_status(page, status: str) -> None:
    page.locator(f'[data-execution-status="{status}"]').wait_for()


def _calls_after(page, since: float, kinds: set[str]) -> list:
    return [c for c in page.calls if c[0] > since and c[1] in kinds]


def _documents(page) -> int:
    return len([c for c in page.calls if c[1] == "document"])


def test_a_running_execution_updates_live_and_stops_polling_at_its_end(page, emulator, sm, s3, bucket):
    code = training_code(s3, bucket)
    steps = [training_step("Slow", bucket, code, env={"MODE": "sleep", "SLEEP": "6"}),
             training_step("Later", bucket, code, env={"MODE": "sleep", "SLEEP": "3"}, DependsOn=["Slow"])]
    arn = start(sm, create_pipeline(sm, steps, prefix="console-live"))
    wait_step(sm, arn, "Slow")
    open_execution(page, emulator, arn)
    _node(page, "Slow", "Executing")
    assert page.get_attribute('svg.graph g.node[data-step="Later"]', "data-status") == "NotStarted"
    _execution_status(page, "Executing")
    assert page.locator("button[data-action=stop]").is_enabled()
    _node(page, "Later", "Executing")
    assert page.get_attribute('svg.graph g.node[data-step="Slow"]', "data-status") == "Succeeded"
    _node(page, "Later", "Succeeded")
    _execution_status(page, "Succeeded")
    ended = time.monotonic()
    assert _documents(page) == 1  # every change came by polling: the page was never reloaded
    assert len([c for c in page.calls if c[1] == "graph"]) >= 4
    assert sm.describe_pipeline_execution(PipelineExecutionArn=arn)["PipelineExecutionStatus"] == "Succeeded"
    assert {n: s["StepStatus"] for n, s in steps_of(sm, arn).items()} == {"Slow": "Succeeded", "Later": "Succeeded"}
    page.wait_for_timeout(QUIET_S * 1000)  # (Playwright delivers the request events while it waits)
    assert len(_calls_after(page, ended, {"graph"})) <= 1, page.calls[-5:]  # polling ended with the execution
    assert page.locator("button[data-action=stop]").is_disabled()
    assert page.locator("button[data-action=retry]").count() == 0


def test_stop_stops_the_running_execution(page, emulator, sm, s3, bucket):
    code = training_code(s3, bucket)
    steps = [training_step("Slow", bucket, code, env={"MODE": "sleep", "SLEEP": "120"}),
             training_step("Later", bucket, code, DependsOn=["Slow"])]
    arn = start(sm, create_pipeline(sm, steps, prefix="console-stop"))
    wait_step(sm, arn, "Slow")
    open_execution(page, emulator, arn)
    _node(page, "Slow", "Executing")
    page.click("button[data-action=stop]")
    _execution_status(page, "Stopped")
    _node(page, "Slow", "Stopped")
    assert page.get_attribute('svg.graph g.node[data-step="Later"]', "data-status") == "NotStarted"
    assert wait_execution(sm, arn, timeout=30)["PipelineExecutionStatus"] == "Stopped"
    assert {n: s["StepStatus"] for n, s in steps_of(sm, arn).items()} == {"Slow": "Stopped"}
    assert [c[2] for c in page.calls if c[1] == "sagemaker"] == ["StopPipelineExecution"]
    assert page.locator("button[data-action=stop]").is_disabled()
    # the API retries a Stopped execution (RetryPipelineExecution: Failed or Stopped), so the page offers it
    assert page.locator("button[data-action=retry]").count() == 1
    assert page.locator(".error-box").count() == 0


def test_an_execution_link_fetches_its_graph_once_and_an_unknown_one_shows_the_apis_error(page, emulator, sm):
    check = condition_step("Check", [{"Type": "Equals", "LeftValue": 1, "RightValue": 1}])
    arn = start(sm, create_pipeline(sm, [check], prefix="console-open"))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    open_execution(page, emulator, arn)  # a document load: prefetch.js asks for the graph before the modules run
    _execution_status(page, "Succeeded")
    page.wait_for_timeout(1000)
    assert len([c for c in page.calls if c[1] == "graph"]) == 1  # the page drew the prefetched answer, no second call
    unknown = arn.rsplit("/", 1)[0] + "/execution/aaaaaaaaaaaa"
    page.goto("about:blank")
    open_console(page, emulator, f"/executions/{quote(unknown, safe='')}")
    box = page.locator(".error-box", has_text="ResourceNotFound")
    box.wait_for()
    assert box.text_content() == f"ResourceNotFound: Pipeline execution '{unknown}' does not exist."
    assert page.locator("svg.graph").count() == 0
    page.wait_for_timeout(1500)
    # the prefetched refusal, then the page's own call (whose error it shows), then no polling of a missing execution
    assert len([c for c in page.calls if c[1] == "graph" and quote(unknown, safe="") in c[2]]) == 2


def _gated_pipeline(sm, s3, bucket: str) -> tuple[str, str]:
    """A pipeline Good → Gated → Last whose Gated step fails until ``gate`` exists: (name, gate key)."""
    code = training_code(s3, bucket)
    gate = f"side-channel/{unique('gate')}"
    steps = [training_step("Good", bucket, code),
             training_step("Gated", bucket, code, env={"MODE": "gate", "GATE": f"s3://{bucket}/{gate}"},
                           DependsOn=["Good"]),
             training_step("Last", bucket, code, env={"MODE": "sleep", "SLEEP": "4"}, DependsOn=["Gated"])]
    return create_pipeline(sm, steps, prefix="console-retry"), gate


def test_retry_resumes_a_failed_execution_and_a_refused_call_shows_the_apis_error(page, emulator, sm, s3, bucket):
    pipeline, gate = _gated_pipeline(sm, s3, bucket)
    clicked, refused = start(sm, pipeline), start(sm, pipeline)
    for arn in (clicked, refused):
        described = wait_execution(sm, arn)
        assert described["PipelineExecutionStatus"] == "Failed", described
    open_execution(page, emulator, clicked)
    _node(page, "Gated", "Failed")
    assert page.get_attribute('svg.graph g.node[data-step="Last"]', "data-status") == "NotStarted"
    s3.put_object(Bucket=bucket, Key=gate, Body=b"open")  # the transient cause is gone
    page.click("button[data-action=retry]")
    # resumed, and the page (which had stopped polling a Failed execution) follows it to the end without a
    # reload; no transient state is awaited: under load one poll can outlast a step's few seconds of Executing
    _execution_status(page, "Succeeded")
    for step in ("Good", "Gated", "Last"):
        _node(page, step, "Succeeded")
    described = sm.describe_pipeline_execution(PipelineExecutionArn=clicked)
    assert described["PipelineExecutionStatus"] == "Succeeded" and "FailureReason" not in described
    assert {n: s["StepStatus"] for n, s in steps_of(sm, clicked).items()} == dict.fromkeys(
        ("Good", "Gated", "Last"), "Succeeded")
    assert page.locator("button[data-action=retry]").count() == 0  # never offered on a Succeeded execution
    assert _documents(page) == 1

    # a page left showing Failed while someone else retried: the API refuses, the page says why and catches up
    open_execution(page, emulator, refused)
    _execution_status(page, "Failed")
    sm.retry_pipeline_execution(PipelineExecutionArn=refused)
    page.click("button[data-action=retry]")
    box = page.locator("[data-action-answer] .error-box", has_text="ConflictException")
    box.wait_for()
    assert box.text_content() == (f"ConflictException: Pipeline execution {refused} is in status Executing; only "
                                  "Failed or Stopped executions can be retried.")
    _execution_status(page, "Succeeded")  # the page polls again after the refusal
    assert wait_execution(sm, refused)["PipelineExecutionStatus"] == "Succeeded"


def test_the_job_log_tail_follows_a_running_job_and_stops_at_its_end(page, emulator, sm, s3, bucket):
    code = upload_sourcedir(s3, bucket, {"train.py": TICKING})
    name = unique("console-tail")
    sm.create_training_job(**script_job(name, bucket, code))
    open_console(page, emulator, f"/jobs/training/{name}")
    log = page.locator("pre.log")
    log.filter(has_text="tick 1").wait_for()
    early = log.text_content()
    assert "all ticks done" not in early, "the job ended before the page saw it run: no live tail was shown"
    assert page.locator(".job-header .status").text_content() == "InProgress"
    page.locator(".log-note", has_text="live").wait_for()
    log.filter(has_text="tick 4").wait_for()  # lines printed after the page opened arrive without a reload
    log.filter(has_text="all ticks done").wait_for()
    page.locator(".job-header .status", has_text="Completed").wait_for()
    ended = time.monotonic()
    text = log.text_content()
    assert [line for line in text.splitlines() if line.startswith("tick ")] == [f"tick {i}" for i in range(7)]
    assert text.count("all ticks done") == 1  # each line once, however many polls it took
    assert sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "Completed"
    assert _documents(page) == 1
    assert len([c for c in page.calls if c[2] == "GetLogEvents"]) >= 4
    page.wait_for_timeout(QUIET_S * 1000)  # (Playwright delivers the request events while it waits)
    late = _calls_after(page, ended, {"sagemaker", "logs"})
    # the round that saw Completed may still be reading the log's last page; no new round starts
    assert [c for c in late if c[2] == "DescribeTrainingJob"] == [] and len(late) <= 3, late
    assert page.text_content(".log-note") == ""
