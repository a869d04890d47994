"""A job whose runner fails in any way still ends: Failed, with a reason naming the error."""

from __future__ import annotations

import time

import pytest

from smlocal.service.common import Account
from smlocal.service.job_family import JobFamily
from smlocal.service.scheduler import JobScheduler
from smlocal.service.store import Store


class _Jobs(JobFamily):
    """A family whose runner does what the job's ``Plan`` says: finish, raise, or return unfinished."""

    KIND = "TrainingJob"
    NOUN = "training job"
    fail_bookkeeping = False

    def _run(self, name, control):
        plan = self._store.get(self.KIND, name)["Plan"]
        if plan == "raise":
            raise KeyError("ResourceConfig")
        if plan == "finish":
            self._store.update(self.KIND, name, lambda d: d.update(TrainingJobStatus="Completed"))

    def _fail(self, name, reason):
        if self.fail_bookkeeping:
            raise RuntimeError("the family's own end-of-job bookkeeping failed")
        self._store.update(self.KIND, name, lambda d: d.update(TrainingJobStatus="Failed", FailureReason=reason,
                                                               TrainingEndTime=1.0))


@pytest.fixture
def family():
    scheduler = JobScheduler(1)
    yield _Jobs(Store(None), scheduler, Account("us-east-1", "123456789012"), runtime=None)
    scheduler.shutdown()


def _ended(family: JobFamily, name: str, plan: str) -> dict:
    family._store.insert(family.KIND, name, {"TrainingJobName": name, "TrainingJobStatus": "InProgress",
                                             "Plan": plan})
    family.submit(name)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if family._scheduler.control(f"{family.KIND}/{name}") is None:  # the worker is done with it
            doc = family._store.get(family.KIND, name)
            assert doc["TrainingJobStatus"] != "InProgress"
            return doc
        time.sleep(0.01)
    raise AssertionError(f"{name} is still running")


def test_a_runner_that_raises_ends_the_job_failed_with_the_error(family):
    doc = _ended(family, "raises", "raise")
    assert doc["TrainingJobStatus"] == "Failed" and doc["TrainingEndTime"] == 1.0
    assert doc["FailureReason"] == ("InternalServerError: smlocal could not run this training job: "
                                    "KeyError: 'ResourceConfig'")


def test_a_runner_that_returns_without_ending_the_job_ends_it_failed(family):
    doc = _ended(family, "unfinished", "return")
    assert doc["TrainingJobStatus"] == "Failed"
    assert doc["FailureReason"] == "InternalServerError: smlocal's runner ended without recording the job's end."


def test_a_job_ends_even_when_the_family_cannot_record_its_failure(family):
    family.fail_bookkeeping = True
    doc = _ended(family, "bookkeeping", "raise")
    assert doc["TrainingJobStatus"] == "Failed" and "TrainingEndTime" not in doc
    assert doc["FailureReason"].endswith("KeyError: 'ResourceConfig'")


def test_a_finished_job_keeps_its_own_end(family):
    assert _ended(family, "finishes", "finish")["TrainingJobStatus"] == "Completed"
    assert "FailureReason" not in family._store.get(family.KIND, "finishes")
