"""Job output → CloudWatch Logs, batched within PutLogEvents' limits, as SageMaker streams it.

The limits (PutLogEvents API reference, CloudWatch Logs quotas): an event is at most 256 KB
(262,144 bytes including 26 bytes of per-event overhead), a batch holds at most 10,000 events
and 1,048,576 bytes (UTF-8 message bytes plus 26 per event), in chronological order. A longer
line becomes several consecutive events. The writer holds at most one batch: when it is full, the
caller's ``write`` sends it before returning, so a job writing faster than the logs client reads
is slowed down (its pipe fills) instead of growing the server's memory.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterator, Protocol

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)

EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576


class LogJournal(Protocol):
    """Receives every batch right after CloudWatch Logs accepted it (e.g. to keep it durably)."""

    def append(self, group: str, stream: str, events: list[dict]) -> None: ...


def split_message(line: str, limit: int = MAX_EVENT_BYTES) -> Iterator[str]:
    """The pieces of ``line``, in order, each at most ``limit`` UTF-8 bytes, never splitting a character."""
    if len(line) * 4 <= limit:  # no UTF-8 character is longer than 4 bytes: fits without encoding
        yield line
        return
    data = line.encode("utf-8", errors="surrogatepass")
    start = 0
    while start < len(data):
        end = min(start + limit, len(data))
        while end < len(data) and end > start and (data[end] & 0xC0) == 0x80:
            end -= 1  # back off a continuation byte: cut before the character starts
        yield data[start:end].decode("utf-8", errors="replace")
        start = end


class LogStreamWriter:
    """Buffers lines and ships them to one log stream; flushes when a batch is full, by age and on close.

    Args:
        logs_client: A boto3 CloudWatch Logs client.
        group, stream: Where the events go (both are created if missing).
        flush_seconds: The longest a line waits before it is sent.
        journal: Optional; its ``append(group, stream, events)`` is called with every batch right
            after PutLogEvents accepted it.
    """

    def __init__(self, logs_client, group: str, stream: str, *, flush_seconds: float = 0.25,
                 journal: LogJournal | None = None):
        self._client = logs_client
        self.group = group
        self.stream = stream
        self._journal = journal
        self._buffer: list[dict] = []
        self._bytes = 0
        self._last_stamp = 0
        self._lock = threading.Lock()  # held while a batch is sent: writers wait (backpressure)
        self._flush_seconds = flush_seconds
        self._closed = threading.Event()
        ensure_log_stream(logs_client, group, stream)
        self._flusher = threading.Thread(target=self._flush_loop, name=f"smlocal-logs-{stream}", daemon=True)
        self._flusher.start()

    def write(self, line: str) -> None:
        """Queues one line (several events if it is longer than an event may be)."""
        if not line:  # PutLogEvents rejects empty messages (min length 1): a blank line is dropped
            return
        with self._lock:
            stamp = max(int(time.time() * 1000), self._last_stamp)  # chronological even if the clock steps back
            self._last_stamp = stamp
            for piece in split_message(line):
                size = EVENT_OVERHEAD + (len(piece) if piece.isascii()
                                         else len(piece.encode("utf-8", errors="surrogatepass")))
                if self._buffer and (len(self._buffer) >= MAX_BATCH_EVENTS
                                     or self._bytes + size > MAX_BATCH_BYTES):
                    self._flush_locked()
                self._buffer.append({"timestamp": stamp, "message": piece})
                self._bytes += size

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
        events, self._buffer, self._bytes = self._buffer, [], 0
        try:
            self._client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)
        except ClientError as exc:
            # a log write must never fail the job; the lines are lost from CloudWatch only
            log.warning("PutLogEvents to %s/%s failed: %s", self.group, self.stream, exc)
            return
        if self._journal is not None:
            try:
                self._journal.append(self.group, self.stream, events)
            except Exception:  # noqa: BLE001 - the journal must not fail the job either
                log.exception("the log journal refused a batch of %s/%s", self.group, self.stream)


def ensure_log_stream(client, group: str, stream: str) -> None:
    """Creates the log group and stream unless they exist."""
    for call, kwargs in (
        (client.create_log_group, {"logGroupName": group}),
        (client.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
    ):
        try:
            call(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise


def job_log_streams(client, group: str, job_name: str) -> list[dict]:
    """A job's log streams (``<job_name>/...`` in ``group``, every DescribeLogStreams page), by name.

    Args:
        client: a boto3 CloudWatch Logs client.
        group: the job kind's log group (``/aws/sagemaker/TrainingJobs`` ...).
        job_name: the job's name.

    Returns:
        DescribeLogStreams' ``logStreams`` entries, sorted by name; empty when the group does not exist
        (no job of that kind has logged yet).
    """
    streams: list[dict] = []
    token = None
    try:
        while True:
            page = client.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job_name}/",
                                               **({"nextToken": token} if token else {}))
            streams += page.get("logStreams", [])
            token = page.get("nextToken")
            if not token:
                break
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        raise
    return sorted(streams, key=lambda stream: stream["logStreamName"])


def read_log_stream(client, group: str, stream: str, token: str | None = None,
                    max_pages: int | None = None) -> tuple[list[dict], str | None]:
    """A stream's events from ``token`` (the head when None) forward, GetLogEvents page after page until
    one brings nothing new (or ``max_pages`` pages were read).

    Returns:
        The events (GetLogEvents' shape) and the forward token to continue from.
    """
    events: list[dict] = []
    pages = 0
    while max_pages is None or pages < max_pages:
        page = client.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                                     **({"nextToken": token} if token else {}))
        pages += 1
        events += page.get("events", [])
        forward = page.get("nextForwardToken")
        if not page.get("events") or forward in (None, token):
            token = forward or token
            break
        token = forward
    return events, token
