"""The console's job and endpoint pages in a real Chromium (Debian's, via Playwright).

A real training job with MetricDefinitions: its page shows the log lines, a uPlot chart holding one point
per metric line of the log, and the final values; a failed job shows its FailureReason (as text, never
markup); a download link delivers the object's bytes; a pipeline step's page shows its PropertyFile
JSON; an endpoint answers the page's "invoke" form.
CI installs Chromium and sets ``SMLOCAL_CI=1``, where a missing browser fails instead of skipping.
"""

from __future__ import annotations

import json
import textwrap
import time

import pytest
from playwright.sync_api import expect

from conftest import SKLEARN_IMAGE, ROLE, put_s3, read_s3, unique, wait_for
from console_support import console_page, create_metric_job, metrics_script, open_console
from pipeline_support import create_pipeline, start, wait_execution
from test_browser_boundary import browser  # noqa: F401 - the shared Chromium fixture
from test_serving import _create_sklearn_model, _deploy, _wait_endpoint

pytestmark = pytest.mark.slow

WAIT = 30_000
EVIL = '<img src=x onerror="window.pwned=1">'
EPOCH = "[{epoch}] train_loss={1.0 / (epoch + 1):.4f} validation:rmse={3.0 - epoch * 0.5:.2f}"
TRAIN = metrics_script(EPOCH, 6, 0.05, "training finished <b>bold?</b>")


@pytest.fixture
def page(browser, emulator):  # noqa: F811 - the imported fixture
    with console_page(browser, emulator, timeout=WAIT) as page:
        yield page


def _training(sm, s3, bucket: str, script: str, prefix: str) -> tuple[str, dict]:
    name = unique(prefix)
    create_metric_job(sm, s3, bucket, name, script)
    return name, wait_for(sm, name)


def test_training_job_page_shows_log_metric_chart_and_final_values(page, emulator, sm, s3, bucket):
    name, job = _training(sm, s3, bucket, TRAIN, "console-metrics")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    open_console(page, emulator, "/jobs/training")
    page.locator(f'a.job-link:text-is("{name}")').wait_for()
    page.fill("input.filter-name", name[-8:])
    # the list re-renders once the filtered answer arrives: wait for it, not for the unfiltered list
    expect(page.locator("a.job-link")).to_have_count(1)
    assert page.locator("a.job-link").all_text_contents() == [name]
    page.click(f'a.job-link:text-is("{name}")')

    log = page.locator("pre.log")
    log.filter(has_text="training finished").wait_for()
    text = log.text_content()
    assert "[5] train_loss=0.1667 validation:rmse=0.50" in text
    assert "training finished <b>bold?</b>" in text  # markup in a log is text
    chart = page.locator(".metric-chart[data-points]")
    chart.locator("canvas").wait_for()
    assert json.loads(chart.get_attribute("data-points")) == {"validation:rmse": 6, "train:loss": 6}
    # the chart holds the log's values, in the log's order (read back from the uPlot instance that drew them)
    drawn = json.loads(chart.get_attribute("data-values"))
    assert drawn == {"validation:rmse": [3.0, 2.5, 2.0, 1.5, 1.0, 0.5],
                     "train:loss": [1.0, 0.5, 0.3333, 0.25, 0.2, 0.1667]}
    finals = {row.locator("td").nth(0).text_content(): float(row.locator("td").nth(1).text_content())
              for row in page.locator(".metric-final tbody tr").all()}
    assert finals == {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert finals == {"validation:rmse": 0.5, "train:loss": pytest.approx(0.1667)}
    assert page.locator(".status").first.text_content() == "Completed"
    page.locator("details.raw-json summary").click()
    assert json.loads(page.locator("details.raw-json pre").text_content())["TrainingJobName"] == name


SLOW_TRAIN = metrics_script(EPOCH, 6, 1.3)


def test_a_running_jobs_metrics_are_asked_for_every_5_s_and_once_when_it_ends(page, emulator, sm, s3, bucket):
    # each api/metrics answer replays the job's whole log: not once a second
    name = unique("console-metrics-poll")
    asked: list[float] = []
    page.on("request", lambda r: asked.append(time.monotonic()) if "/api/metrics?" in r.url else None)
    create_metric_job(sm, s3, bucket, name, SLOW_TRAIN)
    open_console(page, emulator, f"/jobs/training/{name}")
    page.locator('.job-header .status:text-is("Completed")').wait_for(timeout=60_000)
    assert wait_for(sm, name)["TrainingJobStatus"] == "Completed"
    chart = page.locator(".metric-chart[data-values]")
    chart.wait_for()
    assert json.loads(chart.get_attribute("data-values"))["validation:rmse"] == [3.0, 2.5, 2.0, 1.5, 1.0, 0.5]
    page.wait_for_timeout(2500)  # the page stopped polling: no more asks
    gaps = [later - earlier for earlier, later in zip(asked, asked[1:])]
    assert len(asked) >= 3, asked  # the job ran over 7 s: asked at its start, 5 s later, and when it ended
    assert all(gap >= 4.5 for gap in gaps[:-1]), gaps  # the last one: when the job ended


def test_download_link_delivers_the_objects_bytes(page, emulator, sm, s3, bucket):
    name, job = _training(sm, s3, bucket, "print('hi')\n", "console-download")
    model_uri = job["ModelArtifacts"]["S3ModelArtifacts"]
    open_console(page, emulator, f"/jobs/training/{name}")
    row = page.locator(f'tr[data-uri="{model_uri}"]')
    row.locator("button.s3-list").click()
    link = row.locator("a.download", has_text="model.tar.gz")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "model.tar.gz"
    assert open(download.value.path(), "rb").read() == read_s3(s3, model_uri)


def test_failed_job_shows_its_failure_reason_as_text(page, emulator, sm, s3, bucket):
    script = f"raise ValueError({EVIL!r})\n"
    name, job = _training(sm, s3, bucket, script, "console-failed")
    assert job["TrainingJobStatus"] == "Failed"
    open_console(page, emulator, f"/jobs/training/{name}")
    box = page.locator(".failure-reason pre")
    box.wait_for()
    assert box.text_content() == job["FailureReason"]
    assert EVIL in box.text_content()
    assert page.locator(".failure-reason img").count() == 0
    assert page.evaluate("() => window.pwned") is None
    assert page.locator(".status").first.text_content() == "Failed"


def test_pipeline_step_page_shows_its_property_file_json(page, emulator, sm, s3, bucket):
    report = {"regression_metrics": {"mse": {"value": 2.25, "standard_deviation": 0.5}}, "note": EVIL}
    script = textwrap.dedent(f"""
        import json, os
        os.makedirs("/opt/ml/processing/evaluation", exist_ok=True)
        json.dump({report!r}, open("/opt/ml/processing/evaluation/evaluation.json", "w"))
        print("evaluated")
    """)
    code = put_s3(s3, bucket, f"code/{unique('eval')}/evaluate.py", script)
    output = f"s3://{bucket}/{unique('evaluation')}"
    arguments = {
        "ProcessingInputs": [{"InputName": "code", "S3Input": {
            "S3Uri": code, "LocalPath": "/opt/ml/processing/input/code", "S3DataType": "S3Prefix",
            "S3InputMode": "File"}}],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "evaluation", "S3Output": {
            "S3Uri": output, "LocalPath": "/opt/ml/processing/evaluation", "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                  "VolumeSizeInGB": 30}},
        "AppSpecification": {"ImageUri": SKLEARN_IMAGE,
                             "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/evaluate.py"]},
        "RoleArn": ROLE,
    }
    step = {"Name": "Evaluate", "Type": "Processing", "Arguments": arguments,
            "PropertyFiles": [{"PropertyFileName": "EvaluationReport", "OutputName": "evaluation",
                               "FilePath": "evaluation.json"}]}
    arn = start(sm, create_pipeline(sm, [step], prefix="console-pf"))
    assert wait_execution(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    graph_step = sm.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"][0]
    job_name = graph_step["Metadata"]["ProcessingJob"]["Arn"].rsplit("/", 1)[-1]
    open_console(page, emulator, f"/jobs/processing/{job_name}?execution={arn}&step=Evaluate")
    shown = page.locator("pre.property-json")
    shown.filter(has_text="regression_metrics").wait_for()
    assert json.loads(shown.text_content()) == report
    assert shown.text_content() == json.dumps(report, indent=2)  # pretty-printed
    page.locator("pre.log").filter(has_text="evaluated").wait_for()  # the real job name's log (the ARN's is lower-case)
    assert page.evaluate("() => window.pwned") is None


def test_endpoint_answers_the_invoke_form(page, emulator, sm, s3, bucket):
    model, endpoint = unique("console-model"), unique("console-endpoint")
    _create_sklearn_model(sm, s3, bucket, model)
    _deploy(sm, model, endpoint)
    assert _wait_endpoint(sm, endpoint)["EndpointStatus"] == "InService"
    body = "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3"
    expected = emulator.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, ContentType="text/csv", Body=body)["Body"].read().decode()
    open_console(page, emulator, "/endpoints")
    page.click(f'a.endpoint-link:text-is("{endpoint}")')
    page.locator(".endpoint-config td", has_text="ml.m5.large").wait_for()
    assert page.locator(".status").first.text_content() == "InService"
    page.select_option("select.invoke-type", "text/csv")
    page.fill("textarea.invoke-body", body)
    page.click("button.invoke-send")
    page.locator(".invoke-status", has_text="200").wait_for()
    assert page.locator("pre.invoke-response").text_content() == expected
    # a bad request's error is shown with its status
    page.select_option("select.invoke-type", "application/json")
    page.fill("textarea.invoke-body", "{not json")
    page.click("button.invoke-send")
    page.locator(".invoke-status.failed").wait_for()
    assert page.locator(".invoke-status").text_content().split()[0] in ("400", "415", "424")
