"""Job output → CloudWatch Logs, batched, as SageMaker streams it."""

from __future__ import annotations

import threading
import time

from botocore.exceptions import ClientError


class LogStreamWriter:
    """Buffers lines and ships them to one log stream; flushes by size, by age and on close.

    Each line is also kept in memory (bounded) so failures can quote the job's output.
    """

    def __init__(self, logs_client, group: str, stream: str, *, flush_seconds: float = 0.25):
        self._client = logs_client
        self.group = group
        self.stream = stream
        self._buffer: list[dict] = []
        self._lock = threading.Lock()
        self._flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self._closed = threading.Event()
        _ensure(logs_client, group, stream)
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True)
        self._flusher.start()

    def write(self, line: str) -> None:
        if not line:  # PutLogEvents rejects empty messages (min length 1): a blank line is dropped
            return
        with self._lock:
            self._buffer.append({"timestamp": int(time.time() * 1000), "message": line})
            if len(self._buffer) >= 1000:
                self._flush_locked()

    def close(self) -> None:
        self._closed.set()
        self._flusher.join(timeout=5)
        with self._lock:
            self._flush_locked()

    def _flush_loop(self) -> None:
        while not self._closed.wait(self._flush_seconds):
            with self._lock:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        events, self._buffer = self._buffer, []
        try:
            self._client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)
        except ClientError:
            # a log write must never fail the job; the lines are lost from CloudWatch only
            pass


def _ensure(client, group: str, stream: str) -> None:
    for call, kwargs in (
        (client.create_log_group, {"logGroupName": group}),
        (client.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
    ):
        try:
            call(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
