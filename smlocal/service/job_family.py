"""What the training, processing and transform job families share: the List and Stop calls, the
operation table and the server-shutdown flag. Each family brings its create, describe and runner."""

from __future__ import annotations

from typing import Any

from smlocal.errors import ValidationError
from smlocal.runtime.job import RuntimeContext, kill_orphans
from smlocal.service.common import Account, list_page, now, pick
from smlocal.service.scheduler import JobScheduler
from smlocal.service.store import Store


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
        name = request[f"{self.KIND}Name"]
        status_key = f"{self.KIND}Status"
        doc = self._get(name)
        if doc[status_key] != "InProgress":
            raise ValidationError(f"The request was rejected because the {self.NOUN} is in status {doc[status_key]}.")
        control = self._scheduler.control(f"{self.KIND}/{name}")
        if control is not None:
            control.stop.set()
        self._store.update(self.KIND, name, lambda d: d.update({status_key: "Stopping", "LastModifiedTime": now()}))
        return {}

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
        doc = self._store.get(self.KIND, name)
        if doc is None:
            raise self.not_found(name)
        return doc
