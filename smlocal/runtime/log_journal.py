"""CloudWatch Logs that survive a restart: an append-only journal of every batch sent, replayed at start.

The emulator's CloudWatch Logs is moto, in memory. For a durable data dir (``smlocal up``) each batch a
:class:`~smlocal.runtime.logs.LogStreamWriter` sends is also appended, as one JSON line, to
``D/logs/journal-NNNNNN.jsonl`` and flushed to the OS (so a kill -9 of the server loses nothing that
was sent); at the next start :meth:`LogJournal.replay` puts the groups, streams and events back into
moto, in the order they were written.

Bounds: a file is closed at ``max_file_bytes`` (32 MiB by default) and a new one begun; at most
``max_files`` (8) are kept, so the journal never exceeds about 256 MiB and the oldest file's events
are the first forgotten (by the next restart; the running server keeps them). Replay goes through
PutLogEvents, so, as on CloudWatch, events more than 14 days old or 2 hours ahead are not accepted
again. A line cut short by a crash is skipped (the next server ends it before appending), and so is a
line that is not what :meth:`LogJournal.append` writes (wrong types, over 16 MiB) or whose group or
stream CloudWatch refuses: one bad line never stops a server from starting.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Iterator

from botocore.exceptions import ClientError

from smlocal.runtime.logs import EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, ensure_log_stream

log = logging.getLogger(__name__)

_NAME = re.compile(r"journal-(\d{6})\.jsonl")
_MAX_LINE_BYTES = 16 << 20  # a batch append() writes: 1 MiB of messages, JSON-escaped, plus 10,000 stamps


class LogJournal:
    """Append-only JSON-lines journal of CloudWatch Logs batches under ``path``.

    Args:
        path: the folder of the journal files (created on first use).
        max_file_bytes: size at which the current file is closed and a new one begun.
        max_files: files kept; the oldest is removed when a new one would exceed this.
    """

    def __init__(self, path: Path | str, *, max_file_bytes: int = 32 * 1024 * 1024, max_files: int = 8):
        self.path = Path(path)
        self.max_file_bytes = max_file_bytes
        self.max_files = max(1, max_files)
        self._lock = threading.Lock()
        self._out = None
        self._size = 0

    # ---- writing
    def append(self, group: str, stream: str, events: list[dict]) -> None:
        """Records one batch (``[{"timestamp": ms, "message": str}, ...]``) sent to ``group``/``stream``."""
        if not events:
            return
        line = json.dumps({"group": group, "stream": stream,
                           "events": [{"timestamp": int(e["timestamp"]), "message": e["message"]} for e in events]},
                          ensure_ascii=False, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        with self._lock:
            try:
                out = self._writable(len(data))
                out.write(data)
                out.flush()  # in the kernel before the writer moves on: survives a kill -9 of the server
                self._size += len(data)
            except OSError as exc:  # a journal failure must never fail a job
                log.warning("log journal %s: %s", self.path, exc)

    def close(self) -> None:
        with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None

    def clear(self) -> None:
        """Removes every journal file (after a reset, nothing is to come back)."""
        with self._lock:
            if self._out is not None:
                self._out.close()
                self._out = None
            for file in self.files():
                file.unlink(missing_ok=True)

    def files(self) -> list[Path]:
        """The journal files, oldest first."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if _NAME.fullmatch(p.name))

    def _writable(self, incoming: int):
        if self._out is not None and self._size + incoming <= self.max_file_bytes:
            return self._out
        existing = self.files()
        if self._out is None and existing and existing[-1].stat().st_size + incoming <= self.max_file_bytes:
            target = existing[-1]  # this server's first write: go on with the last file
            if not _ends_a_line(target):  # a line torn by a crash: end it, or the next line is lost with it
                with open(target, "ab") as out:
                    out.write(b"\n")
        else:
            if self._out is not None:
                self._out.close()
                self._out = None
            number = int(_NAME.fullmatch(existing[-1].name).group(1)) + 1 if existing else 1
            target = self.path / f"journal-{number:06d}.jsonl"
            existing.append(target)
        self.path.mkdir(parents=True, exist_ok=True)
        for old in existing[:-self.max_files]:
            old.unlink(missing_ok=True)
        self._out = open(target, "ab")
        self._size = target.stat().st_size
        return self._out

    # ---- replay
    def batches(self) -> Iterator[tuple[str, str, list[dict]]]:
        """Every recorded batch, in the order written (unreadable, oversized or ill-shaped lines skipped)."""
        for file in self.files():
            with open(file, "rb") as source:
                for raw in _lines(source, _MAX_LINE_BYTES):
                    batch = _batch(raw)
                    if batch is None:
                        log.warning("log journal %s: skipped an unreadable line", file.name)
                    else:
                        yield batch

    def replay(self, logs_client) -> int:
        """Recreates the groups, streams and events in ``logs_client``'s service; returns events accepted.

        Consecutive batches of one stream are merged into PutLogEvents calls within CloudWatch's
        limits; groups and streams that already exist are used as they are.
        """
        known: set[tuple[str, str]] = set()
        pending: list[dict] = []
        current: tuple[str, str] | None = None
        accepted = 0

        def send() -> int:
            if not pending or current is None:
                return 0
            return _put(logs_client, current[0], current[1], pending)

        refused: set[tuple[str, str]] = set()
        for group, stream, events in self.batches():
            key = (group, stream)
            if key in refused:
                continue
            if key != current:
                accepted += send()
                pending = []
                current = key
                if key not in known:
                    try:
                        ensure_log_stream(logs_client, group, stream)
                    except ClientError as exc:  # e.g. a name CloudWatch refuses: that stream only is lost
                        log.warning("log journal: %s/%s not replayed: %s", group, stream, exc)
                        refused.add(key)
                        current = None
                        continue
                    known.add(key)
            pending.extend(events)
        accepted += send()
        return accepted


def _ends_a_line(path: Path) -> bool:
    """Whether ``path`` is empty or ends with a newline."""
    with open(path, "rb") as source:
        if source.seek(0, 2) == 0:
            return True
        source.seek(-1, 2)
        return source.read(1) == b"\n"


def _lines(source, limit: int) -> Iterator[bytes]:
    """The lines of ``source``; a line longer than ``limit`` bytes is skipped without being held in memory."""
    while True:
        line = source.readline(limit)
        if not line:
            return
        if len(line) >= limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # the rest of the oversized line
                line = source.readline(limit)
            log.warning("log journal: skipped a line longer than %d bytes", limit)
            continue
        yield line


def _batch(raw: bytes) -> tuple[str, str, list[dict]] | None:
    """(group, stream, events) of one journal line; None unless it has exactly the shape append() writes."""
    try:
        item = json.loads(raw)
    except ValueError:  # includes UnicodeDecodeError
        return None
    if not isinstance(item, dict):
        return None
    group, stream, events = item.get("group"), item.get("stream"), item.get("events")
    if not (isinstance(group, str) and group and isinstance(stream, str) and stream and isinstance(events, list)):
        return None
    for event in events:
        if not (isinstance(event, dict) and type(event.get("timestamp")) is int
                and isinstance(event.get("message"), str)):
            return None
    return group, stream, [{"timestamp": e["timestamp"], "message": e["message"]} for e in events]


def _put(client, group: str, stream: str, events: list[dict]) -> int:
    """PutLogEvents in chronological chunks of at most 10,000 events / 1 MiB; returns events accepted."""
    ordered = sorted(events, key=lambda event: event["timestamp"])  # stable: equal stamps keep their order
    accepted = 0
    chunk: list[dict] = []
    size = 0
    for event in ordered:
        cost = len(event["message"].encode("utf-8")) + EVENT_OVERHEAD
        if chunk and (len(chunk) >= MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
            accepted += _put_chunk(client, group, stream, chunk)
            chunk, size = [], 0
        chunk.append(event)
        size += cost
    if chunk:
        accepted += _put_chunk(client, group, stream, chunk)
    return accepted


def _put_chunk(client, group: str, stream: str, chunk: list[dict]) -> int:
    try:
        answer = client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=chunk)
    except ClientError as exc:
        log.warning("log journal: %d event(s) of %s/%s not replayed: %s", len(chunk), group, stream, exc)
        return 0
    rejected = answer.get("rejectedLogEventsInfo") or {}
    too_old = rejected.get("tooOldLogEventEndIndex", -1) + 1
    too_new = len(chunk) - rejected["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in rejected else 0
    return len(chunk) - too_old - too_new
