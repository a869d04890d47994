"""Persistent record store: SQLite under the data dir, with an in-memory read cache.

Every SageMaker resource is one JSON document keyed by (kind, name). Describe calls read the cache
(no SQL on the hot path); every change is written through to SQLite before the call returns, so a
restarted server sees exactly what clients were last told.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
"""


class Store:
    """Thread-safe document store. Documents are plain JSON-able dicts."""

    def __init__(self, path: Path | None):
        self._lock = threading.RLock()
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
            self._seq = max(self._seq, seq)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, kind: str, name: str, doc: dict[str, Any]) -> bool:
        """Adds a new document; returns False (and changes nothing) if the name is taken."""
        with self._lock:
            bucket = self._cache.setdefault(kind, {})
            if name in bucket:
                return False
            self._write(kind, name, doc)
            return True

    def put(self, kind: str, name: str, doc: dict[str, Any]) -> None:
        """Creates or replaces a document."""
        with self._lock:
            self._write(kind, name, doc)

    def update(self, kind: str, name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Applies ``change`` to a copy of the document atomically and stores it; returns the copy."""
        with self._lock:
            doc = copy.deepcopy(self._cache[kind][name])
            change(doc)
            self._write(kind, name, doc)
            return copy.deepcopy(doc)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """A deep copy of the document, or None."""
        with self._lock:
            doc = self._cache.get(kind, {}).get(name)
            return copy.deepcopy(doc) if doc is not None else None

    def exists(self, kind: str, name: str) -> bool:
        with self._lock:
            return name in self._cache.get(kind, {})

    def delete(self, kind: str, name: str) -> bool:
        with self._lock:
            if self._cache.get(kind, {}).pop(name, None) is None:
                return False
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
