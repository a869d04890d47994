"""Persistent record store: SQLite under the data dir, with an in-memory read cache.

Every SageMaker resource is one JSON document keyed by (kind, name). Describe calls read the cache
(no SQL on the hot path); every change is written through to SQLite before the call returns, so a
restarted server sees exactly what clients were last told. In the kinds whose names AWS matches
regardless of case (:func:`smlocal.service.common.case_insensitive_kinds`) a name finds its document
under any case; the document stays keyed by the name it was first stored under.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from smlocal.service.common import case_insensitive_kinds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
"""


class DataDirInUse(RuntimeError):
    """Another live smlocal holds the data dir."""


class DataDirLock:
    """An exclusive ``flock`` on ``<data dir>/smlocal.lock``, held while a server serves the data dir.

    Two servers on one data dir would share one state store: the second one's crash recovery would
    mark the first one's running jobs Failed. The kernel drops the lock when its holder dies (a
    ``kill -9`` included), so a dead server never blocks the next one.
    """

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "smlocal.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise DataDirInUse(f"the data dir {data_dir} is in use by another smlocal (pid {holder}); "
                               "stop it or choose another --data-dir") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = None


class Store:
    """Thread-safe document store. Documents are plain JSON-able dicts."""

    def __init__(self, path: Path | None, case_insensitive: Iterable[str] | None = None):
        self._lock = threading.RLock()
        self._folded_kinds = frozenset(case_insensitive_kinds() if case_insensitive is None else case_insensitive)
        self._folded: dict[str, dict[str, str]] = {}  # kind → lower-cased name → the name it is stored under
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._cache: dict[str, dict[str, dict[str, Any]]] = {}
        self._seq = 0
        for kind, name, seq, data in self._db.execute(
            "SELECT kind, name, seq, data FROM records ORDER BY seq"
        ):
            self._cache.setdefault(kind, {})[name] = json.loads(data)
            self._index(kind, name)
            self._seq = max(self._seq, seq)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, kind: str, name: str, doc: dict[str, Any]) -> bool:
        """Adds a new document; returns False (and changes nothing) if the name is taken."""
        with self._lock:
            bucket = self._cache.setdefault(kind, {})
            if self._key(kind, name) in bucket:
                return False
            self._write(kind, name, doc)
            return True

    def put(self, kind: str, name: str, doc: dict[str, Any]) -> None:
        """Creates or replaces a document."""
        with self._lock:
            self._write(kind, self._key(kind, name), doc)

    def update(self, kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Applies ``change`` to a copy of the document atomically and stores it; returns the copy."""
        with self._lock:
            name = self._key(kind, name)
            doc = copy.deepcopy(self._cache[kind][name])
            change(doc)
            self._write(kind, name, doc)
            return copy.deepcopy(doc)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """A deep copy of the document, or None."""
        with self._lock:
            doc = self._cache.get(kind, {}).get(self._key(kind, name))
            return copy.deepcopy(doc) if doc is not None else None

    def exists(self, kind: str, name: str) -> bool:
        with self._lock:
            return self._key(kind, name) in self._cache.get(kind, {})

    def delete(self, kind: str, name: str) -> bool:
        with self._lock:
            name = self._key(kind, name)
            if self._cache.get(kind, {}).pop(name, None) is None:
                return False
            self._folded.get(kind, {}).pop(name.lower(), None)
            self._db.execute("DELETE FROM records WHERE kind=? AND name=?", (kind, name))
            self._db.commit()
            return True

    def all(self, kind: str) -> list[dict[str, Any]]:
        """Deep copies of every document of a kind, oldest first."""
        with self._lock:
            return [copy.deepcopy(d) for d in self._cache.get(kind, {}).values()]

    def names(self, kind: str) -> Iterator[str]:
        with self._lock:
            return iter(list(self._cache.get(kind, {})))

    def clear(self) -> None:
        """Forgets everything (used by reset)."""
        with self._lock:
            self._cache.clear()
            self._folded.clear()
            self._db.execute("DELETE FROM records")
            self._db.commit()

    def _write(self, kind: str, name: str, doc: dict[str, Any]) -> None:
        self._seq += 1
        self._db.execute(
            "INSERT INTO records(kind, name, seq, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(kind, name) DO UPDATE SET data=excluded.data",
            (kind, name, self._seq, json.dumps(doc)),
        )
        self._db.commit()
        self._cache.setdefault(kind, {})[name] = copy.deepcopy(doc)
        self._index(kind, name)

    def _key(self, kind: str, name: str) -> str:
        """The name ``name``'s document is stored under (itself unless its kind ignores case)."""
        if kind not in self._folded_kinds:
            return name
        return self._folded.get(kind, {}).get(name.lower(), name)

    def _index(self, kind: str, name: str) -> None:
        if kind in self._folded_kinds:
            self._folded.setdefault(kind, {}).setdefault(name.lower(), name)
