"""Keyed values kept between executions: cooldowns, deduplication, storage, windows.

The port is :class:`StateStore`; values are JSON-serialisable and may expire (TTL). Every
write that decides something (a cooldown taken, an event seen) is conditional, so two
executions racing on the same key cannot both win — the same guarantee DynamoDB's
conditional writes give in the cloud. Adapters: :class:`MemoryStateStore` (one run) and
:class:`SqliteStateStore` (kept on disk across runs and restarts).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

Clock = Callable[[], float]
"""Wall-clock time in seconds since the epoch (``time.time``)."""


class StateStore(Protocol):
    """Namespaced keys to JSON values, with optional expiry."""

    def get(self, namespace: str, key: str) -> Any | None:
        """Return the value, or ``None`` when absent or expired."""
        ...

    def put(self, namespace: str, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        """Store ``value``; it expires ``ttl_seconds`` from now (``None``: never)."""
        ...

    def put_if_absent(
        self, namespace: str, key: str, value: Any, ttl_seconds: float | None = None
    ) -> bool:
        """Store ``value`` only if the key is absent or expired; return whether it was stored.

        A key holding JSON ``null`` is present (``get`` returns ``None`` for it all the same).
        """
        ...

    def update(
        self,
        namespace: str,
        key: str,
        fn: Callable[[Any | None], Any],
        ttl_seconds: float | None = None,
    ) -> Any:
        """Atomically replace the value with ``fn(old)`` (``old`` is ``None`` if absent).

        Returns the new value.
        """
        ...

    def delete(self, namespace: str, key: str) -> None:
        """Remove the key (no error if absent)."""
        ...


def _expiry(now: float, ttl_seconds: float | None) -> float | None:
    """Return the expiry instant for a TTL; raise ``ValueError`` unless it is finite and > 0."""
    if ttl_seconds is None:
        return None
    if not math.isfinite(ttl_seconds) or ttl_seconds <= 0:
        raise ValueError(
            f"ttl_seconds must be a positive number of seconds (None: never expires), "
            f"got {ttl_seconds}"
        )
    return now + ttl_seconds


class MemoryStateStore:
    """In-memory store for one process; thread-safe."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._items: dict[tuple[str, str], tuple[str, float | None]] = {}
        self._lock = threading.Lock()

    def _text(self, namespace: str, key: str) -> str | None:
        """Return the stored JSON text, or ``None`` when absent or expired (then dropped)."""
        item = self._items.get((namespace, key))
        if item is None:
            return None
        text, expires = item
        if expires is not None and expires <= self._clock():
            del self._items[(namespace, key)]
            return None
        return text

    def _live(self, namespace: str, key: str) -> Any | None:
        text = self._text(namespace, key)
        return None if text is None else json.loads(text)

    def get(self, namespace: str, key: str) -> Any | None:
        """Return the value, or ``None`` when absent or expired."""
        with self._lock:
            return self._live(namespace, key)

    def put(self, namespace: str, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        """Store ``value`` with an optional TTL."""
        text = json.dumps(value)
        with self._lock:
            self._items[(namespace, key)] = (text, _expiry(self._clock(), ttl_seconds))

    def put_if_absent(
        self, namespace: str, key: str, value: Any, ttl_seconds: float | None = None
    ) -> bool:
        """Store only if absent or expired."""
        text = json.dumps(value)
        with self._lock:
            if self._text(namespace, key) is not None:
                return False
            self._items[(namespace, key)] = (text, _expiry(self._clock(), ttl_seconds))
            return True

    def update(
        self,
        namespace: str,
        key: str,
        fn: Callable[[Any | None], Any],
        ttl_seconds: float | None = None,
    ) -> Any:
        """Atomically replace the value with ``fn(old)``."""
        with self._lock:
            new = fn(self._live(namespace, key))
            self._items[(namespace, key)] = (
                json.dumps(new),
                _expiry(self._clock(), ttl_seconds),
            )
            return new

    def delete(self, namespace: str, key: str) -> None:
        """Remove the key."""
        with self._lock:
            self._items.pop((namespace, key), None)


class SqliteStateStore:
    """A store in one SQLite file (WAL), safe for threads of one process.

    Expired rows are ignored on read and purged on write.
    """

    _SCHEMA = """
    CREATE TABLE IF NOT EXISTS state (
        namespace TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at REAL,
        PRIMARY KEY (namespace, key)
    );
    CREATE INDEX IF NOT EXISTS state_expiry ON state (expires_at) WHERE expires_at IS NOT NULL;
    """

    def __init__(self, path: Path, clock: Clock = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(self._SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _text(self, namespace: str, key: str, now: float) -> str | None:
        """Return the stored JSON text, or ``None`` when absent or expired."""
        row = self._db.execute(
            "SELECT value FROM state WHERE namespace = ? AND key = ? "
            "AND (expires_at IS NULL OR expires_at > ?)",
            (namespace, key, now),
        ).fetchone()
        return None if row is None else str(row[0])

    def _live(self, namespace: str, key: str, now: float) -> Any | None:
        text = self._text(namespace, key, now)
        return None if text is None else json.loads(text)

    def _write(
        self, namespace: str, key: str, value: Any, now: float, ttl_seconds: float | None
    ) -> None:
        self._db.execute(
            "INSERT INTO state (namespace, key, value, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, "
            "expires_at = excluded.expires_at",
            (namespace, key, json.dumps(value), _expiry(now, ttl_seconds)),
        )
        self._db.execute(
            "DELETE FROM state WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        )

    def get(self, namespace: str, key: str) -> Any | None:
        """Return the value, or ``None`` when absent or expired."""
        with self._lock:
            return self._live(namespace, key, self._clock())

    def put(self, namespace: str, key: str, value: Any, ttl_seconds: float | None = None) -> None:
        """Store ``value`` with an optional TTL."""
        with self._lock:
            self._write(namespace, key, value, self._clock(), ttl_seconds)

    def put_if_absent(
        self, namespace: str, key: str, value: Any, ttl_seconds: float | None = None
    ) -> bool:
        """Store only if absent or expired."""
        with self._lock:
            now = self._clock()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                stored = self._text(namespace, key, now) is None
                if stored:
                    self._write(namespace, key, value, now, ttl_seconds)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return stored

    def update(
        self,
        namespace: str,
        key: str,
        fn: Callable[[Any | None], Any],
        ttl_seconds: float | None = None,
    ) -> Any:
        """Atomically replace the value with ``fn(old)``."""
        with self._lock:
            now = self._clock()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = fn(self._live(namespace, key, now))
                self._write(namespace, key, new, now, ttl_seconds)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return new

    def delete(self, namespace: str, key: str) -> None:
        """Remove the key."""
        with self._lock:
            self._db.execute("DELETE FROM state WHERE namespace = ? AND key = ?", (namespace, key))
