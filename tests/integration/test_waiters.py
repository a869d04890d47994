"""Waits keep the time budget the caller asked for while polling fast (smlocal.compat's fast-poll shim).

Real boto3 waiters, the SDK v2's PipelineExecution.wait and Session.logs_for_job against the emulator,
with the shim installed in this process as `smlocal exec` and the fixtures install it.
"""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import WaiterError
from pipeline_support import create_pipeline, training_code, training_step

from conftest import script_job, unique, upload_sourcedir, wait_for

SLEEPER = "import os, time\ntime.sleep(float(os.environ['SLEEP']))\n"


@pytest.fixture
def sleeping_job(client_env, sm, s3, bucket):
    """Starts a training job that sleeps ``seconds``; stops it when the test is done."""
    names = []

    def start(seconds: float) -> str:
        name = unique("sleeper")
        code = upload_sourcedir(s3, bucket, {"train.py": SLEEPER})
        sm.create_training_job(**script_job(name, bucket, code, Environment={"SLEEP": str(seconds)}))
        names.append(name)
        return name

    yield start
    for name in names:
        if sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress":
            sm.stop_training_job(TrainingJobName=name)
        wait_for(sm, name)


def test_pipeline_wait_with_a_long_delay_returns_when_the_execution_succeeds(client_env, sm, s3, bucket):
    """wait(delay=540, max_attempts=3) may wait 18 minutes on AWS: a 3 s execution is seen Succeeded."""
    import sagemaker
    from sagemaker.workflow.pipeline import _PipelineExecution

    code = training_code(s3, bucket)
    name = create_pipeline(sm, [training_step("Sleep", bucket, code, env={"MODE": "sleep", "SLEEP": "3"})])
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    execution = _PipelineExecution(arn=arn, sagemaker_session=sagemaker.Session())
    started = time.monotonic()
    execution.wait(delay=540, max_attempts=3)
    elapsed = time.monotonic() - started
    assert execution.describe()["PipelineExecutionStatus"] == "Succeeded"
    assert elapsed < 60  # polled fast, not every 540 s


def test_waiter_on_a_job_that_does_not_finish_gives_up_after_its_budget(sleeping_job, sm):
    """Delay=1, MaxAttempts=3: botocore's last attempt comes 2 s after the first, then WaiterError."""
    name = sleeping_job(120)
    waiter = sm.get_waiter("training_job_completed_or_stopped")
    started = time.monotonic()
    with pytest.raises(WaiterError, match="Max attempts exceeded"):
        waiter.wait(TrainingJobName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 3})
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 60, elapsed


def test_logs_for_job_timeout_passes_in_real_time(sleeping_job, capsys):
    """Session.logs_for_job(wait=True, timeout=3) tails a running job for 3 real seconds, not a fraction."""
    import sagemaker
    from sagemaker.exceptions import UnexpectedStatusException

    name = sleeping_job(120)
    session = sagemaker.Session()
    started = time.monotonic()
    with pytest.raises(UnexpectedStatusException, match="InProgress"):
        session.logs_for_job(name, wait=True, timeout=3)
    elapsed = time.monotonic() - started
    assert 3.0 <= elapsed < 60, elapsed
    assert "Timeout Exceeded. 3 seconds elapsed." in capsys.readouterr().out

