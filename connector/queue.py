"""The connector's durable outbound queue: store and forward, in SQLite.

Everything the connector sends to the platform is written here first and deleted only
when the broker has acknowledged it (MQTT PUBACK), so an outage of any length — bounded
by ``max_bytes`` and the disk — loses nothing, and a connector killed mid-run resends on
its next start what had been accepted but not acknowledged.

Durability: the database runs in WAL mode with ``synchronous=FULL``, so :meth:`put` and
:meth:`put_many` return only after the commit has reached the disk (SQLite documentation,
"PRAGMA synchronous": FULL syncs the WAL on every commit). Acknowledgements commit with
``synchronous=NORMAL``: an acknowledgement lost with the power is harmless — the message
is sent again and the receiver drops it by its ``message_id`` (QoS 1 is at least once
anyway).

Sequence numbers (``seq``) come from an ``AUTOINCREMENT`` key: strictly increasing in the
order of the commits and never reused, even after the queue has been emptied — the order
in which messages are sent, and the key the caller keeps.

A message the broker refuses (a PUBACK reason code of 0x80 or more: 0x87 not authorized,
0x97 quota exceeded, 0x95 packet too large…) is not retried: :meth:`reject` moves it to a
dead-letter table (the newest :data:`DEAD_LETTERS_KEPT` are kept for inspection) and
counts it.

Thread-safe: one connection guarded by a lock; callers on any thread.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the queue database."""

DEAD_LETTERS_KEPT = 10_000
"""Rejected messages kept in the dead-letter table (the oldest are deleted beyond)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbound (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    enqueued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    rejected_at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counter (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counter (name, value) VALUES ('rejected', 0);
"""


class QueueFull(Exception):
    """The queue holds ``max_bytes`` already: the platform has been unreachable for long
    enough to fill it. The message was not queued."""


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """One message waiting for the broker's acknowledgement.

    ``seq``: position in the queue (increasing, never reused); ``enqueued_at``: Unix
    time, s, when it was queued.
    """

    seq: int
    topic: str
    payload: bytes
    retain: bool
    enqueued_at: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the broker refused: never retried, kept for inspection."""

    message: QueuedMessage
    reason: str
    rejected_at: float


def _size(topic: str, payload: bytes) -> int:
    return len(topic.encode("utf-8")) + len(payload)


class OutboundQueue:
    """A durable FIFO of MQTT messages (topic, payload, retain) in the SQLite file ``path``.

    ``max_bytes``: the most the pending messages may hold (topic UTF-8 bytes + payload
    bytes, summed); a :meth:`put` beyond raises :class:`QueueFull`.

    Raises:
        ValueError: ``max_bytes`` < 1.
        sqlite3.DatabaseError: ``path`` is not a queue database (or is unreadable).
    """

    def __init__(self, path: Path, *, max_bytes: int = 1 << 30) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            self._db.close()
            raise sqlite3.DatabaseError(
                f"{self.path} is a queue of schema version {version}; this connector reads "
                f"version {SCHEMA_VERSION}: upgrade the connector or move the file away"
            )
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(length(CAST(topic AS BLOB)) + length(payload)), 0) "
            "FROM outbound"
        ).fetchone()
        self._depth: int = row[0]
        self._bytes: int = row[1]
        self._closed = False

    # ------------------------------------------------------------------ writing

    def put(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Queue one message; return its ``seq`` once it is on disk.

        Raises:
            QueueFull: the queue would hold more than ``max_bytes``.
            ValueError: empty topic, or payload not bytes.
        """
        return self._put_all([(topic, payload, retain)])[0]

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """Queue ``(topic, payload)`` pairs (not retained) in one transaction; return their
        ``seq`` in order. All or none are queued.

        Raises:
            QueueFull: they would not all fit in ``max_bytes``.
            ValueError: an empty topic, or a payload that is not bytes.
        """
        return self._put_all([(t, p, False) for t, p in items])

    def _put_all(self, items: Sequence[tuple[str, bytes, bool]]) -> list[int]:
        for topic, payload, _ in items:
            if not topic:
                raise ValueError("topic is empty")
            if not isinstance(payload, bytes | bytearray):
                raise ValueError(f"payload must be bytes, not {type(payload).__name__}")
        added = sum(_size(t, p) for t, p, _ in items)
        now = time.time()
        with self._lock:
            self._check_open()
            if self._bytes + added > self.max_bytes:
                raise QueueFull(
                    f"the outbound queue holds {self._bytes} bytes in {self._depth} messages; "
                    f"{added} more would exceed max_bytes={self.max_bytes}: the platform has "
                    "been unreachable too long (raise queue.max_bytes if the disk allows)"
                )
            seqs: list[int] = []
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for topic, payload, retain in items:
                    cursor = self._db.execute(
                        "INSERT INTO outbound (topic, payload, retain, enqueued_at) "
                        "VALUES (?, ?, ?, ?)",
                        (topic, bytes(payload), int(retain), now),
                    )
                    assert cursor.lastrowid is not None
                    seqs.append(cursor.lastrowid)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += len(items)
            self._bytes += added
            return seqs

    def ack(self, seq: int) -> None:
        """The broker acknowledged message ``seq``: delete it (unknown ``seq``: no-op)."""
        self.ack_many([seq])

    def ack_many(self, seqs: Iterable[int]) -> None:
        """:meth:`ack` several messages in one transaction."""
        seqs = list(seqs)
        if not seqs:
            return
        with self._lock:
            self._check_open()
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                removed = 0
                freed = 0
                try:
                    for seq in seqs:
                        row = self._db.execute(
                            "DELETE FROM outbound WHERE seq = ? "
                            "RETURNING length(CAST(topic AS BLOB)) + length(payload)",
                            (seq,),
                        ).fetchone()
                        if row is not None:
                            removed += 1
                            freed += row[0]
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            finally:
                self._db.execute("PRAGMA synchronous=FULL")
            self._depth -= removed
            self._bytes -= freed

    def reject(self, seq: int, reason: str) -> None:
        """The broker refused message ``seq`` (``reason``: e.g. ``"0x87 Not authorized"``):
        move it to the dead-letter table; it is never sent again. Unknown ``seq``: no-op."""
        now = time.time()
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "DELETE FROM outbound WHERE seq = ? "
                    "RETURNING topic, payload, retain, enqueued_at",
                    (seq,),
                ).fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return
                self._db.execute(
                    "INSERT OR REPLACE INTO dead_letter "
                    "(seq, topic, payload, retain, enqueued_at, rejected_at, reason) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (seq, row[0], row[1], row[2], row[3], now, reason[:500]),
                )
                self._db.execute("UPDATE counter SET value = value + 1 WHERE name = 'rejected'")
                self._db.execute(
                    "DELETE FROM dead_letter WHERE seq <= "
                    "(SELECT seq FROM dead_letter ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (DEAD_LETTERS_KEPT,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            self._bytes -= _size(row[0], row[1])

    # ------------------------------------------------------------------ reading

    def pending(self, limit: int, *, after: int = 0) -> list[QueuedMessage]:
        """Up to ``limit`` messages waiting for acknowledgement with ``seq > after``,
        oldest first."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain, enqueued_at FROM outbound "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [QueuedMessage(r[0], r[1], bytes(r[2]), bool(r[3]), r[4]) for r in rows]

    def depth(self) -> int:
        """Messages waiting for acknowledgement."""
        with self._lock:
            return self._depth

    def size_bytes(self) -> int:
        """Bytes (topics + payloads) of the messages waiting for acknowledgement."""
        with self._lock:
            return self._bytes

    def rejected_count(self) -> int:
        """Messages ever rejected by the broker (the dead-letter table keeps the newest)."""
        with self._lock:
            self._check_open()
            row = self._db.execute("SELECT value FROM counter WHERE name = 'rejected'").fetchone()
        return int(row[0])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The newest ``limit`` rejected messages, oldest first."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain, enqueued_at, reason, rejected_at "
                "FROM dead_letter ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            DeadLetter(QueuedMessage(r[0], r[1], bytes(r[2]), bool(r[3]), r[4]), r[5], r[6])
            for r in reversed(rows)
        ]

    def close(self) -> None:
        """Close the database (idempotent); later calls raise ``sqlite3.ProgrammingError``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError(f"the outbound queue {self.path} is closed")

    def __enter__(self) -> OutboundQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
