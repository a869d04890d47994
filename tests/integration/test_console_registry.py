"""The console's model registry and experiments pages in a real Chromium (Debian's, via Playwright).

Approve / Reject on a version's page must change the package through the API (DescribeModelPackage) and on
the page; its registered evaluation report (ModelMetrics → an S3 JSON, read through the console's s3-object
API) is shown; names and descriptions are text, never markup. The experiments page puts two training
jobs' trial components side by side with their differing hyperparameters marked.
CI installs Chromium and sets ``SMLOCAL_CI=1``, where a missing browser fails instead of skipping.
"""

from __future__ import annotations

import json

import pytest

from conftest import script_job, unique, upload_sourcedir, wait_for
from console_support import console_page, open_console, wait_text
from test_browser_boundary import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = pytest.mark.slow

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3"
REPORT = {"regression_metrics": {"mse": {"value": 4.321, "standard_deviation": 2.5}}}
EVIL = '<img src=x onerror="window.pwned=1">'
WAIT = 20_000


@pytest.fixture
def page(browser, emulator):  # noqa: F811 - the imported fixture
    with console_page(browser, emulator, timeout=WAIT) as page:
        yield page


def _register(sm, s3, bucket: str) -> tuple[str, list[str]]:
    """A group (its description markup-like) with two PendingManualApproval versions, as RegisterModel makes them."""
    group = unique("console-group")
    key = f"evaluation/{group}/evaluation.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(REPORT).encode())
    sm.create_model_package_group(ModelPackageGroupName=group, ModelPackageGroupDescription=EVIL)
    arns = []
    for model in ("first", "second"):
        spec = {"Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/{model}/model.tar.gz"}],
                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]}
        arns.append(sm.create_model_package(
            ModelPackageGroupName=group, InferenceSpecification=spec, ModelApprovalStatus="PendingManualApproval",
            ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                          "S3Uri": f"s3://{bucket}/{key}"}}},
            CustomerMetadataProperties={"trained-by": model})["ModelPackageArn"])
    return group, arns


def test_approve_and_reject_versions_from_the_group_page(page, emulator, sm, s3, bucket):
    group, (first, second) = _register(sm, s3, bucket)
    open_console(page, emulator, "/registry")
    row = page.locator(f'tr[data-group="{group}"]')
    assert row.locator("td.versions").inner_text() == "2"
    assert row.locator("td.latest-status").inner_text() == "PendingManualApproval"

    open_console(page, emulator, f"/registry/{group}")
    page.wait_for_selector("section.model-version")
    assert page.locator("section.model-version").evaluate_all("s => s.map(e => e.dataset.version)") == ["2", "1"]
    assert page.get_by_text(EVIL, exact=True).count() == 1  # the description as text
    assert page.evaluate("window.pwned") is None and page.locator(".group-header img").count() == 0
    newest = page.locator('section.model-version[data-version="2"]')
    assert newest.locator(".approval").inner_text() == "PendingManualApproval"
    assert f"s3://{bucket}/second/model.tar.gz" in newest.locator(".model-data").inner_text()
    assert IMAGE in newest.locator(".image").inner_text()
    assert f"s3://{bucket}/evaluation/{group}/evaluation.json" in newest.locator(".metric-source").inner_text()
    report = newest.locator('.metric-report tr[data-metric="regression_metrics.mse.value"] td.num')
    assert report.inner_text() == "4.321"  # the evaluation JSON, read from S3 through the console
    assert "second" in newest.locator(".customer-metadata").inner_text()

    newest.locator("input.approval-description").fill("mse below the threshold")
    newest.locator("button.approve").click()
    wait_text(newest.locator(".approval"), "Approved", timeout=WAIT)
    described = sm.describe_model_package(ModelPackageName=second)
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == "mse below the threshold"
    assert newest.locator("button.approve").is_disabled()
    assert "mse below the threshold" in newest.inner_text()
    assert sm.describe_model_package(ModelPackageName=first)["ModelApprovalStatus"] == "PendingManualApproval"

    newest.locator("button.reject").click()  # an Approved version may be rejected, as on AWS
    wait_text(newest.locator(".approval"), "Rejected", timeout=WAIT)
    assert sm.describe_model_package(ModelPackageName=second)["ModelApprovalStatus"] == "Rejected"

    oldest = page.locator('section.model-version[data-version="1"]')
    oldest.locator("button.reject").click()
    wait_text(oldest.locator(".approval"), "Rejected", timeout=WAIT)
    assert sm.describe_model_package(ModelPackageName=first)["ModelApprovalStatus"] == "Rejected"


def test_a_failed_update_is_shown_plainly(page, emulator, sm, s3, bucket):
    group, (first, _second) = _register(sm, s3, bucket)
    open_console(page, emulator, f"/registry/{group}")
    oldest = page.locator('section.model-version[data-version="1"]')
    oldest.locator("button.approve").wait_for()
    sm.delete_model_package(ModelPackageName=first)  # gone behind the page's back
    oldest.locator("button.approve").click()
    error = oldest.locator(".error-box")
    error.wait_for()
    assert "ValidationException" in error.inner_text() and "does not exist" in error.inner_text()
    assert oldest.locator(".approval").inner_text() == "PendingManualApproval"
    assert not oldest.locator("button.approve").is_disabled()


def test_a_report_too_large_to_show_is_refused_by_the_server_not_fetched(page, emulator, sm, s3, bucket):
    group = unique("console-big-report")
    key = f"evaluation/{group}/evaluation.json"
    big = json.dumps({"values": list(range(200_000))}).encode()  # over the page's 512 KiB
    assert len(big) > 512 * 1024
    s3.put_object(Bucket=bucket, Key=key, Body=big)
    sm.create_model_package_group(ModelPackageGroupName=group)
    sm.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/m/model.tar.gz"}],
                                "SupportedContentTypes": ["text/csv"], "SupportedResponseMIMETypes": ["text/csv"]},
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": f"s3://{bucket}/{key}"}}})
    answers = []
    page.on("response", lambda r: answers.append(r) if "/api/s3-object?" in r.url else None)
    open_console(page, emulator, f"/registry/{group}")
    refusal = page.locator(".metric-values .report-too-large .error-box")
    refusal.wait_for()
    assert "EntityTooLarge" in refusal.inner_text() and f"{len(big)} bytes" in refusal.inner_text()
    assert page.locator(".metric-values a.download").get_attribute("data-uri") == f"s3://{bucket}/{key}"
    assert [(a.status, "maxBytes=524288" in a.url) for a in answers] == [(400, True)]  # never the object's bytes


TRAIN = """
import json, os
hps = json.load(open('/opt/ml/input/config/hyperparameters.json'))
lr = float(hps['lr'])
for epoch in range(3):
    print(f'epoch={epoch} loss={1.0 / (1 + lr * (epoch + 1) * 10):.4f}', flush=True)
"""


def test_experiment_compares_two_training_jobs_side_by_side(page, emulator, sm, s3, bucket):
    experiment, trial = unique("console-exp"), unique("console-trial")
    sm.create_experiment(ExperimentName=experiment)
    sm.create_trial(TrialName=trial, ExperimentName=experiment)
    code = upload_sourcedir(s3, bucket, {"train.py": TRAIN})
    jobs = {}
    for lr in ("0.1", "0.5"):
        name = unique("console-lr")
        request = script_job(name, bucket, code, hyperparameters={"lr": lr, "epochs": "3"},
                             ExperimentConfig={"ExperimentName": experiment, "TrialName": trial})
        request["AlgorithmSpecification"]["MetricDefinitions"] = [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}]
        sm.create_training_job(**request)
        jobs[lr] = name
    for name in jobs.values():
        assert wait_for(sm, name)["TrainingJobStatus"] == "Completed"

    open_console(page, emulator, "/experiments")
    page.locator(f'tr[data-experiment="{experiment}"] a').click()
    page.wait_for_selector("table.compare")
    headers = page.locator("th.component").evaluate_all("hs => hs.map(h => h.dataset.component)")
    assert sorted(headers) == sorted(f"{n}-aws-training-job" for n in jobs.values())
    lr_row = page.locator('tr[data-row="Parameters:lr"]')
    assert "differs" in lr_row.get_attribute("class")
    cells = lr_row.locator("td").all_inner_texts()
    assert sorted(cells) == ["0.1", "0.5"]
    epochs = page.locator('tr[data-row="Parameters:epochs"]')
    assert "differs" not in epochs.get_attribute("class") and epochs.locator("td").all_inner_texts() == ["3", "3"]
    # each column links to its job's page
    links = page.locator("th.component a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert sorted(links) == sorted(f"#/jobs/training/{n}" for n in jobs.values())
    loss = page.locator('tr[data-row="Metrics:loss"]')
    assert "differs" in loss.get_attribute("class")
    by_job = dict(zip(headers, loss.locator("td").all_inner_texts()))
    for lr, name in jobs.items():
        last = round(1.0 / (1 + float(lr) * 3 * 10), 4)
        assert by_job[f"{name}-aws-training-job"].startswith(f"{last:g}"), by_job
        assert "count 3" in by_job[f"{name}-aws-training-job"], by_job

    page.locator("input.only-differing").check()
    page.wait_for_selector('tr[data-row="Parameters:epochs"]', state="detached")
    assert page.locator('tr[data-row="Parameters:lr"]').count() == 1
