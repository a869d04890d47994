"""The console's execution graph in a real browser (Debian's Chromium through Playwright).

The abalone pipeline runs twice against the test server: with the default threshold (the model is
registered; the Fail branch is not taken) and with ``MseThreshold=3.0`` (the Fail step fails the
execution with its message). Every request the page makes to another origin is blocked and recorded:
the console works offline. CI sets ``SMLOCAL_CI=1``, where a missing browser fails instead of skipping.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from conftest import ROLE, SKLEARN_IMAGE, unique
from console_support import console_page, open_console, open_execution, wait_text
from pipeline_support import steps_of, wait_execution
from test_browser_boundary import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = pytest.mark.slow

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console-execution.png"


@pytest.fixture(scope="module")
def runs(client_env, emulator):
    """(passing ARN, failing ARN) of two abalone executions started together, both ended."""
    import sagemaker

    sm = emulator.client("sagemaker")
    from smlocal.workflows.abalone import fixtures_dir
    from smlocal.workflows.abalone.main import build_pipeline, upload_data

    session = sagemaker.Session()
    bucket = session.default_bucket()
    input_uri, batch_uri = upload_data(session, bucket, fixtures_dir() / "data")
    pipeline = build_pipeline(sagemaker.get_execution_role(), bucket, input_uri, batch_uri, fixtures_dir() / "code")
    pipeline.upsert(role_arn=sagemaker.get_execution_role())
    passing, failing = pipeline.start(), pipeline.start(parameters={"MseThreshold": 3.0})
    passed, failed = (wait_execution(sm, run.arn, timeout=900) for run in (passing, failing))
    assert passed["PipelineExecutionStatus"] == "Succeeded", steps_of(sm, passing.arn)
    assert failed["PipelineExecutionStatus"] == "Failed"
    return passing.arn, failing.arn


@pytest.fixture()
def page(browser, emulator):  # noqa: F811 - the fixture imported above
    """A page whose requests beyond the server are aborted and listed in ``page.foreign``."""
    with console_page(browser, emulator) as page:
        yield page


def _open_execution(page, emulator, arn: str) -> dict[str, dict]:
    open_execution(page, emulator, arn)
    return {n["step"]: n for n in page.eval_on_selector_all(
        "svg.graph g.node", "nodes => nodes.map(n => ({step: n.dataset.step, status: n.dataset.status, "
        "cls: n.getAttribute('class'), text: n.textContent, "
        "stroke: getComputedStyle(n.querySelector('rect')).stroke}))")}


def test_the_execution_graph_shows_every_step_with_its_final_status(page, emulator, sm, runs):
    passing, _ = runs
    nodes = _open_execution(page, emulator, passing)
    steps = steps_of(sm, passing)
    assert set(nodes) == set(steps) | {"AbaloneMSEFail"}
    for name, step in steps.items():
        assert nodes[name]["status"] == step["StepStatus"] == "Succeeded", name
    assert nodes["AbaloneMSEFail"]["status"] == "Skipped" and "st-skipped" in nodes["AbaloneMSEFail"]["cls"]
    edges = page.eval_on_selector_all("svg.graph g.edge", "edges => edges.map(e => [e.dataset.from, e.dataset.to, "
                                      "e.dataset.kind, e.getAttribute('class'), e.textContent])")
    from_condition = {(to, kind): (cls, text) for source, to, kind, cls, text in edges if source == "AbaloneMSECond"}
    assert from_condition[("AbaloneMSEFail", "false")] == ("edge false not-taken", "false")
    assert from_condition[("AbaloneRegisterModel-RegisterModel", "true")][1] == "true"
    assert ("AbaloneTrain", "AbaloneEval", "data") in {(e[0], e[1], e[2]) for e in edges}
    assert page.text_content("[data-execution-status]") == "Succeeded"
    assert page.locator("button[data-action=retry]").count() == 0
    assert page.locator("button[data-action=stop]").is_disabled()
    assert "MseThreshold" in page.text_content("main")  # the parameters
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.locator(".graph-wrap").screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
    # a step with a job opens its job page
    page.click("svg.graph g.node[data-step=AbaloneTrain]")
    page.wait_for_url("**#/jobs/training/**")  # (the console's CSP forbids evaluating strings: no wait_for_function)
    job = steps["AbaloneTrain"]["Metadata"]["TrainingJob"]["Arn"].rsplit("/", 1)[-1]
    hash_ = page.evaluate("location.hash")
    assert hash_.startswith(f"#/jobs/training/{job}?") and "step=AbaloneTrain" in hash_
    assert page.foreign == [] and not [p for p in page.problems if "Content Security Policy" in p], page.problems


def test_a_failing_execution_shows_the_fail_step_red_with_its_message(page, emulator, sm, runs):
    _, failing = runs
    nodes = _open_execution(page, emulator, failing)
    message = steps_of(sm, failing)["AbaloneMSEFail"]["Metadata"]["Fail"]["ErrorMessage"]
    fail = nodes["AbaloneMSEFail"]
    assert fail["status"] == "Failed" and "st-failed" in fail["cls"]
    assert fail["stroke"] == "rgb(207, 34, 46)"  # red
    assert message[:20] in fail["text"]
    assert page.text_content("[data-failure=AbaloneMSEFail]") == message  # the side panel, opened by itself
    for name in ("AbaloneRegisterModel-RegisterModel", "AbaloneCreateModel-CreateModel", "AbaloneTransform"):
        assert nodes[name]["status"] == "Skipped", name
    assert page.text_content("[data-execution-status]") == "Failed"
    assert page.locator("button[data-action=retry]").count() == 1
    page.click("svg.graph g.node[data-step=AbaloneMSECond]")  # no job: the side panel shows its outcome
    page.wait_for_selector("[data-panel=AbaloneMSECond]")
    assert "false" in page.text_content("[data-panel=AbaloneMSECond]")
    assert page.foreign == []


def test_an_s3_object_holding_html_cannot_use_the_console_origin(page, emulator, sm, s3, bucket):
    """evil.html stored in S3 and opened from the server's own origin: sandboxed, its script never runs
    (without the sandbox it would read the console's token from index.html and call the API)."""
    name = unique("from-s3-page")
    job = {"ProcessingJobName": name, "RoleArn": ROLE,
           "AppSpecification": {"ImageUri": SKLEARN_IMAGE, "ContainerEntrypoint": ["true"]},
           "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large",
                                                     "VolumeSizeInGB": 1}}}
    evil = """<html><head><title>idle</title></head><body><script>
    document.title = "ran";
    (async () => {
      const index = await (await fetch("/_smlocal/console/")).text();
      const token = /smlocal-console-token" content="([^"]*)"/.exec(index)[1];
      await fetch("/", {method: "POST", body: JSON.stringify(%s), headers: {"X-Amz-Target": "SageMaker.CreateProcessingJob",
        "Content-Type": "application/x-amz-json-1.1", "X-Smlocal-Console-Token": token}});
      document.title = "done";
    })();
    </script></body></html>""" % json.dumps(job)
    s3.put_object(Bucket=bucket, Key="evil.html", Body=evil.encode(), ContentType="text/html")
    # a presigned link (as a colleague or a job would hand out) opens it from the server's own origin
    page.goto(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "evil.html"}))
    page.wait_for_timeout(1500)
    assert page.title() == "idle"
    assert name not in {j["ProcessingJobName"] for j in sm.list_processing_jobs(MaxResults=100)["ProcessingJobSummaries"]}


def test_the_abalone_training_step_shows_its_log_and_its_rmse_chart(page, emulator, sm, runs):
    passing, _ = runs
    _open_execution(page, emulator, passing)
    page.click("svg.graph g.node[data-step=AbaloneTrain]")
    page.wait_for_url("**#/jobs/training/**")
    job = sm.describe_training_job(
        TrainingJobName=steps_of(sm, passing)["AbaloneTrain"]["Metadata"]["TrainingJob"]["Arn"].rsplit("/", 1)[-1])
    log = page.locator("pre.log")
    log.filter(has_text="validation-rmse").first.wait_for(timeout=30_000)
    rounds = [line for line in log.text_content().splitlines() if "#011validation-rmse:" in line or
              "\tvalidation-rmse:" in line]
    assert rounds, "the built-in XGBoost's evaluation lines are in the log"
    chart = page.locator(".metric-chart[data-points]")
    chart.locator("canvas").wait_for()
    points = json.loads(chart.get_attribute("data-points"))
    assert points["validation:rmse"] == len(rounds)  # one point per logged round, from the built-in definitions
    drawn = json.loads(chart.get_attribute("data-values"))["validation:rmse"]
    final = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert drawn[-1] == pytest.approx(final["validation:rmse"])
    finals = {row.locator("td").nth(0).text_content(): float(row.locator("td").nth(1).text_content())
              for row in page.locator(".metric-final tbody tr").all()}
    assert finals["validation:rmse"] == pytest.approx(final["validation:rmse"])
    assert page.foreign == []


def test_the_package_abalone_registered_is_approved_from_the_registry_page(page, emulator, sm, runs):
    passing, _ = runs
    package_arn = steps_of(sm, passing)["AbaloneRegisterModel-RegisterModel"]["Metadata"]["RegisterModel"]["Arn"]
    package = sm.describe_model_package(ModelPackageName=package_arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    group, version = package["ModelPackageGroupName"], package["ModelPackageVersion"]
    open_console(page, emulator, f"/registry/{quote(group, safe='')}")
    section = page.locator(f'section.model-version[data-version="{version}"]')
    section.wait_for(timeout=30_000)
    assert section.locator(".approval").text_content() == "PendingManualApproval"
    section.locator("button.approve").click()
    deadline = time.time() + 15
    while sm.describe_model_package(ModelPackageName=package_arn)["ModelApprovalStatus"] != "Approved":
        assert time.time() < deadline, "the page's Approve did not reach the API"
        time.sleep(0.2)
    wait_text(section.locator(".approval"), "Approved")
    assert page.foreign == []
