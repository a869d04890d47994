"""What the training, processing and transform job families share: the List and Stop calls, the
operation table, running a job to its end and the server-shutdown flag. Each family brings its
create, describe and runner."""

from __future__ import annotations

import logging
from typing import Any

from smlocal.errors import ValidationError
from smlocal.runtime.backends.base import RunControl
from smlocal.runtime.job import RuntimeContext, kill_orphans
from smlocal.service.common import Account, list_page, now, pick
from smlocal.service.scheduler import JobScheduler
from smlocal.service.store import Store

log = logging.getLogger(__name__)

CRASH_REASON = ("InternalServerError: the smlocal server stopped while this job was running; its "
                "process ended with it.")
SHUTDOWN_REASON = "InternalServerError: the smlocal server shut down while this job was running."


class JobFamily:
    """Base of a job family; ``KIND`` is the API noun ("TrainingJob"), ``NOUN`` its wording in errors."""

    KIND: str = ""
    NOUN: str = ""  # "training job"
    SUMMARY_KEYS: tuple[str, ...] = ()
    SORT_KEYS: dict[str, str] | None = None
    RUNTIME_KIND: str = ""  # the runtime's name for the kind, which tags the job's processes

    def __init__(self, store: Store, scheduler: JobScheduler, account: Account, runtime: RuntimeContext):
        self._store = store
        self._scheduler = scheduler
        self._account = account
        self._runtime = runtime
        self._closing = False

    def close(self) -> None:
        """The server is shutting down: jobs it ends now end Failed, not as if a user stopped them."""
        self._closing = True

    def operations(self) -> dict:
        return {
            f"Create{self.KIND}": self.create,
            f"Describe{self.KIND}": self.describe,
            f"List{self.KIND}s": self.list,
            f"Stop{self.KIND}": self.stop,
        }

    def create(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def not_found(self, name: str) -> ValidationError:
        """The family's error for an unknown job name (AWS words it differently per family)."""
        raise NotImplementedError

    def list(self, request: dict[str, Any]) -> dict[str, Any]:
        page, token = list_page(self._store.all(self.KIND), request, name_key=f"{self.KIND}Name",
                                status_key=f"{self.KIND}Status", sort_keys=self.SORT_KEYS)
        result: dict[str, Any] = {f"{self.KIND}Summaries": [pick(d, self.SUMMARY_KEYS) for d in page]}
        if token:
            result["NextToken"] = token
        return result

    def stop(self, request: dict[str, Any]) -> dict[str, Any]:
        status_key = f"{self.KIND}Status"
        doc = self._get(request[f"{self.KIND}Name"])
        name = doc[f"{self.KIND}Name"]  # as created: the request may spell it in another case
        if doc[status_key] != "InProgress":
            raise ValidationError(f"The request was rejected because the {self.NOUN} is in status {doc[status_key]}.")
        control = self._scheduler.control(f"{self.KIND}/{name}")
        if control is not None:
            control.stop.set()
        self._store.update(self.KIND, name, lambda d: d.update({status_key: "Stopping", "LastModifiedTime": now()}))
        return {}

    def submit(self, name: str) -> None:
        """Queues job ``name`` to run in the background; it always ends (see :meth:`_run_to_end`)."""
        self._scheduler.submit(f"{self.KIND}/{name}", lambda control: self._run_to_end(name, control))

    def _run(self, name: str, control: RunControl) -> None:
        """Runs the job and records how it ended (the family's runner)."""
        raise NotImplementedError

    def _run_to_end(self, name: str, control: RunControl) -> None:
        """:meth:`_run`, and the job recorded Failed if the runner raised or left it InProgress/Stopping.

        Jobs never stay InProgress: whatever goes wrong in preparing, running or recording a job, it
        ends Failed with a reason naming the error.
        """
        try:
            self._run(name, control)
            reason = "InternalServerError: smlocal's runner ended without recording the job's end."
        except Exception as exc:  # noqa: BLE001 - any failure of smlocal's own ends the job, never hangs it
            log.exception("the runner of %s %s failed", self.NOUN, name)
            reason = f"InternalServerError: smlocal could not run this {self.NOUN}: {type(exc).__name__}: {exc}"
        status_key = f"{self.KIND}Status"
        doc = self._store.get(self.KIND, name)
        if doc is None or doc[status_key] not in ("InProgress", "Stopping"):
            return
        try:
            self._fail(name, reason)
        except Exception:  # noqa: BLE001 - the family's own bookkeeping failed too: the bare minimum
            log.exception("could not record %s %s as Failed", self.NOUN, name)
            self._store.update(self.KIND, name, lambda d: d.update(
                {status_key: "Failed", "FailureReason": reason, "LastModifiedTime": now()}))

    def recover(self) -> int:
        """Marks jobs left InProgress/Stopping by a previous server process as Failed (their
        orphaned processes are killed); returns how many."""
        count = 0
        for doc in self._store.all(self.KIND):
            if doc[f"{self.KIND}Status"] in ("InProgress", "Stopping"):
                name = doc[f"{self.KIND}Name"]
                kill_orphans(self._runtime, self.RUNTIME_KIND, name)
                self._fail(name, CRASH_REASON)
                count += 1
        return count

    def _fail(self, name: str, reason: str) -> None:
        """Records the job as Failed with ``reason`` (the family's own end-of-job bookkeeping)."""
        raise NotImplementedError

    def _stopped_by_shutdown(self, name: str, status: str) -> bool:
        """A job that ended Stopped while the server shuts down, without a user's Stop call: it is
        recorded Failed with SHUTDOWN_REASON, not as if a user had stopped it."""
        current = self._store.get(self.KIND, name) or {}
        return self._closing and status == "Stopped" and current.get(f"{self.KIND}Status") != "Stopping"

    def _get(self, name: str) -> dict[str, Any]:
        """The job's record: its name matches in any case, as on AWS (see common.NAMING)."""
        doc = self._store.get(self.KIND, name)
        if doc is None:
            raise self.not_found(name)
        return doc
