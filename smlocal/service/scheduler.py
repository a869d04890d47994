"""Runs jobs in the background, at most N at once, the rest queued in order of creation."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

from smlocal.runtime.backends.base import RunControl

log = logging.getLogger(__name__)


class JobScheduler:
    """A fixed pool of worker threads; each job gets a RunControl its Stop call can set."""

    def __init__(self, workers: int):
        self._queue: queue.Queue[tuple[str, Callable[[RunControl], None], RunControl] | None] = queue.Queue()
        self._controls: dict[str, RunControl] = {}
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, name=f"smlocal-job-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, key: str, run: Callable[[RunControl], None]) -> RunControl:
        control = RunControl()
        with self._lock:
            self._controls[key] = control
        self._queue.put((key, run, control))
        return control

    def control(self, key: str) -> RunControl | None:
        with self._lock:
            return self._controls.get(key)

    def stop_all(self, grace: float = 1.0, wait: float = 10.0) -> int:
        """Asks every running and queued job to stop and waits up to ``wait`` s for them to end.

        Returns how many jobs were asked. The workers stay up for new jobs.
        """
        with self._lock:
            controls = list(self._controls.values())
        for control in controls:
            control.grace_seconds = min(control.grace_seconds, grace)
            control.stop.set()
        deadline = time.monotonic() + wait
        while controls and time.monotonic() < deadline:
            with self._lock:
                if not self._controls:
                    break
            time.sleep(0.01)
        return len(controls)

    def shutdown(self, wait: float = 10.0) -> None:
        """Stops every running job and ends the workers."""
        with self._lock:
            for control in self._controls.values():
                control.grace_seconds = min(control.grace_seconds, 2.0)
                control.stop.set()
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=wait)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            key, run, control = item
            try:
                run(control)
            except Exception:  # noqa: BLE001 - a worker must survive any job
                log.exception("job %s crashed its runner", key)
            finally:
                with self._lock:
                    self._controls.pop(key, None)
