"""SageMaker SDK v2 experiment tracking (``sagemaker.experiments.Run``), unchanged, against the emulator.

``Run`` creates the experiment, a ``Default-Run-Group-<experiment>`` trial and a trial component
``<experiment>-<run>`` (tagged ``sagemaker:trial-component-source=run``), checks the association
with ``Search``, saves what ``log_parameter`` gathered with UpdateTrialComponent and sends each
``log_metric`` value to the SageMaker Metrics service (``PUT /BatchPutMetrics``). ``list_runs`` and
``load_run`` read the runs back through ListTrialComponents and Search, ``ExperimentAnalytics``
through Search; a training job started inside a run gets its ``ExperimentConfig`` (with ``RunName``)
and its script's ``load_run()`` logs to the same run.
"""

from __future__ import annotations

import statistics
import time

import pytest
from botocore.exceptions import ClientError

from conftest import aws_error, unique
from test_browser_boundary import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = pytest.mark.slow

LOSSES = {"0.1": [0.9, 0.5, 0.7, 0.3], "0.5": [0.8, 0.2, 0.4, 0.6]}  # the last is neither min nor max


@pytest.fixture(scope="module")
def runs(client_env):
    """Two runs of one experiment: parameters (lr differs, optimizer and epochs do not), a stepped loss."""
    import sagemaker
    from sagemaker.experiments import Run

    session = sagemaker.Session()
    experiment = unique("run-exp")
    for lr, losses in LOSSES.items():
        with Run(experiment_name=experiment, run_name=f"lr-{lr.replace('.', '')}", sagemaker_session=session) as run:
            run.log_parameter("lr", float(lr))
            run.log_parameters({"optimizer": "adam", "epochs": len(losses)})
            for step, loss in enumerate(losses):
                run.log_metric("loss", loss, step=step)
    names = {lr: f"{experiment}-lr-{lr.replace('.', '')}" for lr in LOSSES}
    return session, experiment, names


def test_run_parameters_and_metric_summaries_in_the_trial_component(runs):
    session, experiment, names = runs
    sm = session.sagemaker_client
    for lr, losses in LOSSES.items():
        component = sm.describe_trial_component(TrialComponentName=names[lr])
        assert component["Parameters"] == {"lr": {"NumberValue": float(lr)}, "optimizer": {"StringValue": "adam"},
                                           "epochs": {"NumberValue": float(len(losses))}}
        assert component["Status"]["PrimaryStatus"] == "Completed"
        assert component["StartTime"] <= component["EndTime"]
        (loss,) = component["Metrics"]
        assert loss["MetricName"] == "loss" and loss["Count"] == len(losses)
        assert (loss["Min"], loss["Max"], loss["Last"]) == (min(losses), max(losses), losses[-1])
        assert loss["Avg"] == pytest.approx(statistics.mean(losses))
        assert loss["StdDev"] == pytest.approx(statistics.stdev(losses))
        assert loss["SourceArn"] == component["TrialComponentArn"]
        trials = sm.list_trials(TrialComponentName=names[lr])["TrialSummaries"]
        assert [t["TrialName"] for t in trials] == [f"Default-Run-Group-{experiment}"]


def test_batch_get_metrics_returns_the_logged_series(runs):
    session, _, names = runs
    metrics = session.sagemaker_metrics_client
    arn = session.sagemaker_client.describe_trial_component(TrialComponentName=names["0.1"])["TrialComponentArn"]
    query = {"MetricName": "loss", "ResourceArn": arn, "Period": "IterationNumber", "XAxisType": "IterationNumber"}
    results = metrics.batch_get_metrics(MetricQueries=[{**query, "MetricStat": "Max"},
                                                       {**query, "MetricStat": "Count"},
                                                       {**query, "MetricName": "never-logged", "MetricStat": "Avg"}])
    by_step, counts, absent = results["MetricQueryResults"]
    assert by_step == {"Status": "Complete", "XAxisValues": [0, 1, 2, 3], "MetricValues": LOSSES["0.1"]}
    assert counts["MetricValues"] == [1.0] * 4
    assert absent == {"Status": "Complete", "XAxisValues": [], "MetricValues": []}
    hour = metrics.batch_get_metrics(MetricQueries=[{**query, "MetricStat": "Avg", "Period": "OneHour",
                                                     "XAxisType": "Timestamp"}])["MetricQueryResults"][0]
    assert len(hour["XAxisValues"]) in (1, 2)  # the run may straddle an hour
    assert all(x % 3600 == 0 and time.time() - 7200 < x <= time.time() for x in hour["XAxisValues"])
    if len(hour["XAxisValues"]) == 1:
        assert hour["MetricValues"] == [pytest.approx(statistics.mean(LOSSES["0.1"]))]


def test_experiment_analytics_has_one_row_per_run_and_list_runs_both(runs):
    from sagemaker.analytics import ExperimentAnalytics
    from sagemaker.experiments import list_runs

    session, experiment, names = runs
    frame = ExperimentAnalytics(experiment_name=experiment, sagemaker_session=session).dataframe()
    assert sorted(frame["TrialComponentName"]) == sorted(names.values())
    for lr, losses in LOSSES.items():
        row = frame[frame["TrialComponentName"] == names[lr]].iloc[0]
        assert (row["lr"], row["optimizer"], row["epochs"]) == (float(lr), "adam", float(len(losses)))
        assert (row["loss - Min"], row["loss - Max"], row["loss - Last"], row["loss - Count"]) == (
            min(losses), max(losses), losses[-1], len(losses))
        assert row["loss - Avg"] == pytest.approx(statistics.mean(losses))
        assert row["Experiments"] == [experiment]
    found = list_runs(experiment_name=experiment, sagemaker_session=session)
    assert sorted(r.run_name for r in found) == ["lr-01", "lr-05"]
    assert all(r.experiment_name == experiment for r in found)


TRAIN = """
import sagemaker
from sagemaker.experiments import load_run

ACCURACY = [0.5, 0.75, 0.625]
session = sagemaker.Session()
with load_run(sagemaker_session=session) as run:
    print("loaded run", run.run_name, "of", run.experiment_name, flush=True)
    run.log_parameter("job_param", "from-the-job")
    for step, value in enumerate(ACCURACY):
        run.log_metric("job_accuracy", value, step=step)
"""


def test_training_job_in_a_run_logs_to_it_with_load_run(client_env, tmp_path, capsys):
    import sagemaker
    from sagemaker.experiments import Run
    from sagemaker.sklearn import SKLearn

    session = sagemaker.Session()
    experiment = unique("job-exp")
    (tmp_path / "train.py").write_text(TRAIN)
    estimator = SKLearn(entry_point="train.py", source_dir=str(tmp_path), framework_version="1.2-1",
                        instance_type="ml.m5.large", instance_count=1, role=sagemaker.get_execution_role(),
                        sagemaker_session=session)
    with Run(experiment_name=experiment, run_name="with-job", sagemaker_session=session) as run:
        run.log_parameter("outside", 1)
        estimator.fit(wait=True, logs=True)
    assert f"loaded run with-job of {experiment}" in capsys.readouterr().out
    job = estimator.latest_training_job.describe()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ExperimentConfig"] == {"ExperimentName": experiment, "TrialName": f"Default-Run-Group-{experiment}",
                                       "RunName": f"{experiment}-with-job"}
    sm = session.sagemaker_client
    component = sm.describe_trial_component(TrialComponentName=f"{experiment}-with-job")
    assert component["Parameters"] == {"outside": {"NumberValue": 1.0}, "job_param": {"StringValue": "from-the-job"}}
    (accuracy,) = component["Metrics"]
    assert (accuracy["MetricName"], accuracy["Count"], accuracy["Min"], accuracy["Max"], accuracy["Last"]) == (
        "job_accuracy", 3, 0.5, 0.75, 0.625)
    # the job's own component joined the run's trial (its ExperimentConfig names it)
    members = sm.list_trial_components(TrialName=f"Default-Run-Group-{experiment}")["TrialComponentSummaries"]
    assert sorted(m["TrialComponentName"] for m in members) == sorted(
        [f"{experiment}-with-job", f"{job['TrainingJobName']}-aws-training-job"])


def test_bad_input_gets_aws_errors(runs, s3):
    from sagemaker.experiments import Run

    session, experiment, names = runs
    sm, metrics = session.sagemaker_client, session.sagemaker_metrics_client
    with Run(experiment_name=unique("bad-exp"), run_name="target", sagemaker_session=session) as run:
        run.log_parameters({"lr": 0.5, "optimizer": "adam", "epochs": 2})
    target = run.experiment_config["RunName"]  # the other tests' runs stay as they were logged
    now = time.time()
    with pytest.raises(ClientError) as missing:
        metrics.batch_put_metrics(TrialComponentName="no-such-component",
                                  MetricData=[{"MetricName": "m", "Timestamp": now, "Value": 1.0}])
    assert aws_error(missing)[0] == "ResourceNotFound"
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as upper:  # the Metrics service wants the name in lower case
        metrics.batch_put_metrics(TrialComponentName=names["0.1"].upper(),
                                  MetricData=[{"MetricName": "m", "Timestamp": now, "Value": 1.0}])
    code, message = aws_error(upper)
    assert code == "ValidationException" and "at 'trialComponentName' failed to satisfy constraint" in message
    # a batch with bad entries: 200, the bad ones listed by index, the good one kept
    answer = metrics.batch_put_metrics(TrialComponentName=target, MetricData=[
        {"MetricName": "extra", "Timestamp": now, "Value": 2.0, "Step": 0},
        {"MetricName": "extra", "Timestamp": now - 15 * 86400, "Value": 3.0},  # older than two weeks
        {"MetricName": "extra", "Timestamp": now + 3 * 3600, "Value": 4.0}])  # more than two hours ahead
    assert answer["Errors"] == [{"Code": "VALIDATION_ERROR", "MetricIndex": 1},
                                {"Code": "VALIDATION_ERROR", "MetricIndex": 2}]
    extra = [m for m in sm.describe_trial_component(TrialComponentName=target)["Metrics"] if m["MetricName"] == "extra"]
    assert [(m["Count"], m["Last"]) for m in extra] == [(1, 2.0)]

    with pytest.raises(ClientError) as unknown:
        sm.update_trial_component(TrialComponentName="no-such-component", DisplayName="x")
    assert aws_error(unknown)[0] == "ResourceNotFound"
    sm.update_trial_component(TrialComponentName=target, ParametersToRemove=["optimizer"],
                              Parameters={"seed": {"NumberValue": 7}})
    assert sorted(sm.describe_trial_component(TrialComponentName=target)["Parameters"]) == ["epochs", "lr", "seed"]
    with pytest.raises(ClientError) as empty:
        sm.search(Resource="ExperimentTrialComponent", SearchExpression={})
    assert aws_error(empty)[0] == "ValidationException"
    with pytest.raises(ClientError) as text:
        sm.search(Resource="ExperimentTrialComponent", SearchExpression={"Filters": [
            {"Name": "TrialComponentName", "Operator": "GreaterThan", "Value": "a"}]})
    assert aws_error(text)[0] == "ValidationException"
    found = sm.search(Resource="ExperimentTrialComponent", SearchExpression={"Filters": [
        {"Name": "Parents.ExperimentName", "Operator": "Equals", "Value": experiment},
        {"Name": "Metrics.loss.Max", "Operator": "GreaterThan", "Value": "0.85"}]})
    assert [r["TrialComponent"]["TrialComponentName"] for r in found["Results"]] == [names["0.1"]]
    # PUT /BatchPutMetrics signed for S3 is still S3's: CreateBucket of a bucket of that name (moto takes it)
    s3.create_bucket(Bucket="BatchPutMetrics")
    try:
        assert "BatchPutMetrics" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        s3.delete_bucket(Bucket="BatchPutMetrics")


def test_console_shows_two_runs_side_by_side(runs, browser, emulator):  # noqa: F811 - the imported fixture
    _, experiment, names = runs
    page = browser.new_page()
    page.set_default_timeout(20_000)
    try:
        page.goto(f"{emulator.console_url.split('#')[0]}#/experiments/{experiment}")
        page.wait_for_selector("table.compare")
        headers = page.locator("th.component").evaluate_all("hs => hs.map(h => h.dataset.component)")
        assert sorted(headers) == sorted(names.values())
        lr_row = page.locator('tr[data-row="Parameters:lr"]')
        assert "differs" in lr_row.get_attribute("class")
        by_run = dict(zip(headers, lr_row.locator("td").all_inner_texts()))
        assert by_run == {names[lr]: lr for lr in LOSSES}
        loss = dict(zip(headers, page.locator('tr[data-row="Metrics:loss"] td').all_inner_texts()))
        for lr, losses in LOSSES.items():
            assert loss[names[lr]].startswith(f"{losses[-1]:g}") and f"count {len(losses)}" in loss[names[lr]], loss
    finally:
        page.close()
