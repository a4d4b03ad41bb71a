"""The embedded store: every port of :mod:`aios.store.port` in one SQLite file.

Durability. The file runs in WAL journal mode with ``synchronous=FULL``: every write is one
transaction (``BEGIN IMMEDIATE`` … ``COMMIT``) and the WAL is fsynced before ``COMMIT``
returns, so a write that returned survives a killed process *and* a power loss or OS crash
(``NORMAL`` would already survive a killed process, but may lose the last commits on power
loss — the service promises no acknowledged write is lost, so it pays the fsync).
Foreign keys are enforced; ``busy_timeout`` makes a writer wait for another process's write
instead of failing at once.

Concurrency. One connection per store, serialised by a lock: any number of threads of the
process (API workers, the MQTT ingester, run threads) may share one :class:`SqliteStore`.
Several processes may open the same file: SQLite's WAL locking orders their writes and each
waits up to ``busy_timeout_seconds`` for the others.

Schema. :data:`MIGRATIONS` is numbered from 1; the file's ``PRAGMA user_version`` is the
number of migrations applied. Opening a file applies the missing ones in order, each in its
own transaction (all or nothing) and records it in ``schema_migrations``; opening a file of a
newer schema than this code knows raises :class:`SchemaVersionError`.

Layout. Each record is kept whole as JSON in a ``data`` column, beside the columns its
queries filter and sort on (indexed). Times are UTC ISO-8601 strings with microseconds
(:mod:`aios.store.codec`), so string order is time order. Lists use keyset pagination on
their sort key (stable under inserts); cursors are opaque (:func:`aios.store.codec.encode_cursor`).
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aios.domain import (
    Alert,
    AlertRule,
    AlertState,
    AuditEntry,
    Command,
    CommandStatus,
    Device,
    DeviceEvent,
    DeviceKind,
    EventRecord,
    PipelineRecord,
    PipelineRevision,
    RefreshToken,
    Run,
    RunStatus,
    TelemetryPoint,
    User,
    utcnow,
)
from aios.store.codec import (
    check_limit,
    decode_cursor,
    dump,
    encode_cursor,
    from_iso,
    load,
    normalize,
    to_iso,
    to_iso_or_none,
    utc,
)
from aios.store.port import (
    MAX_SECRET_BYTES,
    AlertStore,
    AuditStore,
    CommandStore,
    Conflict,
    DeviceEventStore,
    DeviceQuery,
    DeviceStore,
    EventQuery,
    EventStore,
    IntegrationSecretStore,
    NotFound,
    Page,
    PipelineStore,
    RefreshTokenStore,
    RunStore,
    SecretInfo,
    SettingsStore,
    Store,
    StoreError,
    TelemetryStore,
    UserStore,
    secret_hint,
)

__all__ = [
    "MEMORY",
    "MIGRATIONS",
    "Migration",
    "SchemaVersionError",
    "SqliteStore",
    "migrate",
    "schema_version",
]

DEFAULT_BUSY_TIMEOUT_SECONDS = 30.0
PRUNE_BATCH_ROWS = 5000
"""Telemetry rows :meth:`SqliteTelemetryStore.prune` deletes per transaction: each batch
holds the write lock for milliseconds, so ingestion goes on during a large prune."""
MEMORY = ":memory:"
"""The path of a private in-memory database (no file, nothing durable: for tests)."""


class SchemaVersionError(StoreError):
    """The database file's schema is newer than this code (or otherwise unusable)."""


@dataclass(frozen=True)
class Migration:
    """One schema step: ``statements`` run in order in one transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "fleet: devices, tags, device events, telemetry, commands, alert rules, alerts",
        (
            """CREATE TABLE schema_migrations (
                version INTEGER PRIMARY KEY,
                description TEXT NOT NULL,
                applied_at TEXT NOT NULL)""",
            """CREATE TABLE devices (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                site TEXT,
                parent_id TEXT,
                lat REAL,
                lon REAL,
                pending INTEGER NOT NULL,
                last_seen TEXT,
                version INTEGER NOT NULL,
                data TEXT NOT NULL)""",
            "CREATE INDEX devices_kind ON devices (kind, id)",
            "CREATE INDEX devices_site ON devices (site, id)",
            "CREATE INDEX devices_parent ON devices (parent_id, id)",
            "CREATE INDEX devices_location ON devices (lat, lon)",
            "CREATE INDEX devices_pending ON devices (pending, id)",
            """CREATE TABLE device_tags (
                device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
                tag TEXT NOT NULL,
                PRIMARY KEY (device_id, tag)) WITHOUT ROWID""",
            "CREATE INDEX device_tags_tag ON device_tags (tag, device_id)",
            """CREATE TABLE device_events (
                id TEXT PRIMARY KEY,
                device_id TEXT NOT NULL,
                time TEXT NOT NULL,
                data TEXT NOT NULL)""",
            "CREATE INDEX device_events_by_device ON device_events (device_id, time, id)",
            """CREATE TABLE telemetry (
                device_id TEXT NOT NULL,
                metric TEXT NOT NULL,
                time TEXT NOT NULL,
                value REAL NOT NULL,
                unit TEXT,
                PRIMARY KEY (device_id, metric, time)) WITHOUT ROWID""",
            "CREATE INDEX telemetry_by_time ON telemetry (device_id, time, metric)",
            """CREATE TABLE commands (
                request_id TEXT PRIMARY KEY,
                device_id TEXT NOT NULL,
                status TEXT NOT NULL,
                requested_at TEXT NOT NULL,
                deadline TEXT NOT NULL,
                data TEXT NOT NULL)""",
            "CREATE INDEX commands_by_device ON commands (device_id, requested_at, request_id)",
            """CREATE INDEX commands_pending ON commands (deadline, request_id)
                WHERE status = 'pending'""",
            """CREATE TABLE alert_rules (
                id TEXT PRIMARY KEY,
                device_id TEXT NOT NULL,
                data TEXT NOT NULL)""",
            "CREATE INDEX alert_rules_by_device ON alert_rules (device_id, id)",
            """CREATE TABLE alerts (
                id TEXT PRIMARY KEY,
                device_id TEXT NOT NULL,
                rule_id TEXT NOT NULL,
                state TEXT NOT NULL,
                raised_at TEXT NOT NULL,
                data TEXT NOT NULL)""",
            """CREATE UNIQUE INDEX alerts_one_active ON alerts (device_id, rule_id)
                WHERE state = 'active'""",
            "CREATE INDEX alerts_by_time ON alerts (raised_at, id)",
            "CREATE INDEX alerts_by_device ON alerts (device_id, raised_at, id)",
            "CREATE INDEX alerts_by_state ON alerts (state, raised_at, id)",
        ),
    ),
    Migration(
        2,
        "pipelines, revisions, runs, events",
        (
            """CREATE TABLE pipelines (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                latest_revision INTEGER NOT NULL,
                data TEXT NOT NULL)""",
            """CREATE TABLE pipeline_revisions (
                pipeline_id TEXT NOT NULL REFERENCES pipelines (id) ON DELETE CASCADE,
                revision INTEGER NOT NULL,
                data TEXT NOT NULL,
                PRIMARY KEY (pipeline_id, revision)) WITHOUT ROWID""",
            """CREATE TABLE runs (
                id TEXT PRIMARY KEY,
                pipeline_id TEXT NOT NULL,
                status TEXT NOT NULL,
                started_at TEXT NOT NULL,
                version INTEGER NOT NULL,
                data TEXT NOT NULL)""",
            "CREATE INDEX runs_by_pipeline ON runs (pipeline_id, started_at, id)",
            """CREATE INDEX runs_active ON runs (started_at, id)
                WHERE status IN ('starting', 'running', 'stopping')""",
            """CREATE TABLE events (
                id TEXT PRIMARY KEY,
                pipeline_id TEXT NOT NULL,
                run_id TEXT,
                node_id TEXT NOT NULL,
                source_id TEXT,
                type TEXT NOT NULL,
                time TEXT NOT NULL,
                data TEXT NOT NULL)""",
            "CREATE INDEX events_by_time ON events (time, id)",
            "CREATE INDEX events_by_pipeline ON events (pipeline_id, time, id)",
            "CREATE INDEX events_by_run ON events (run_id, time, id)",
            "CREATE INDEX events_by_source ON events (source_id, time, id)",
            "CREATE INDEX events_by_type ON events (type, time, id)",
        ),
    ),
    Migration(
        3,
        "users, refresh tokens, audit log, settings",
        (
            """CREATE TABLE users (
                id TEXT PRIMARY KEY,
                username TEXT NOT NULL,
                username_key TEXT NOT NULL UNIQUE,
                version INTEGER NOT NULL,
                data TEXT NOT NULL)""",
            """CREATE TABLE refresh_tokens (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                family_id TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                revoked_at TEXT,
                replaced_by TEXT,
                data TEXT NOT NULL)""",
            "CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id)",
            "CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id)",
            """CREATE TABLE audit (
                id TEXT PRIMARY KEY,
                time TEXT NOT NULL,
                actor_id TEXT,
                target_type TEXT,
                target_id TEXT,
                data TEXT NOT NULL)""",
            "CREATE INDEX audit_by_time ON audit (time, id)",
            "CREATE INDEX audit_by_actor ON audit (actor_id, time, id)",
            "CREATE INDEX audit_by_target ON audit (target_type, target_id, time, id)",
            """CREATE TABLE settings (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL)""",
        ),
    ),
    Migration(
        4,
        "telemetry: index by time alone, for retention (prune)",
        ("CREATE INDEX telemetry_by_age ON telemetry (time)",),
    ),
    Migration(
        5,
        "events: severity and acknowledgement columns; integration secrets",
        (
            "ALTER TABLE events ADD COLUMN severity TEXT NOT NULL DEFAULT 'info'",
            "ALTER TABLE events ADD COLUMN acknowledged INTEGER NOT NULL DEFAULT 0",
            """UPDATE events SET
                severity = COALESCE(json_extract(data, '$.severity'), 'info'),
                acknowledged = (json_extract(data, '$.acknowledged_at') IS NOT NULL)""",
            "CREATE INDEX events_by_severity ON events (severity, time, id)",
            """CREATE TABLE integration_secrets (
                name TEXT PRIMARY KEY,
                value BLOB NOT NULL,
                hint TEXT,
                updated_at TEXT NOT NULL,
                updated_by TEXT)""",
        ),
    ),
)
"""The schema, step by step. Append new steps; never edit a released one."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The number of migrations applied to the database of ``conn``."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    clock: Callable[[], datetime] = utcnow,
) -> int:
    """Apply the migrations the database lacks, each in one transaction; return the version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Raises
    SchemaVersionError if the database's version is newer than the last migration, or if
    ``migrations`` is not numbered 1, 2, 3…; a failing statement rolls its migration back and
    propagates (the database stays at the previous version).
    """
    for number, migration in enumerate(migrations, start=1):
        if migration.version != number:
            raise SchemaVersionError(
                f"migrations must be numbered 1, 2, 3…; position {number} is numbered "
                f"{migration.version}"
            )
    latest = len(migrations)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version(conn)
            if current > latest:
                raise SchemaVersionError(
                    f"the database schema is version {current}, newer than this version of "
                    f"AIOS knows ({latest}); upgrade AIOS, or open another database file"
                )
            if current == latest:
                conn.execute("COMMIT")
                return current
            migration = migrations[current]
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT OR REPLACE INTO schema_migrations (version, description, applied_at) "
                "VALUES (?, ?, ?)",
                (migration.version, migration.description, to_iso(clock())),
            )
            # PRAGMA takes no bound parameters; the value is an int from this module.
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _casefold(value: object) -> str | None:
    return value.casefold() if isinstance(value, str) else None


def _locked(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and "locked" in str(err)


def _enter_wal(conn: sqlite3.Connection, timeout_seconds: float) -> str:
    """Switch ``conn``'s database to WAL journal mode; return the mode now in force.

    Changing the journal mode needs an exclusive lock, and SQLite answers SQLITE_BUSY at
    once — without its busy handler — when another connection holds any lock meanwhile
    (processes or threads opening a new file together: the first one is creating the
    schema). So the change is retried, with jittered backoff, for up to the busy timeout.

    Raises:
        sqlite3.OperationalError: still locked after ``timeout_seconds``, or another error.
    """
    from tenacity import (
        Retrying,
        retry_if_exception,
        stop_after_delay,
        wait_random_exponential,
    )

    for attempt in Retrying(
        retry=retry_if_exception(_locked),
        stop=stop_after_delay(timeout_seconds),
        wait=wait_random_exponential(multiplier=0.01, max=0.5),
        reraise=True,
    ):
        with attempt:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
    raise AssertionError("unreachable: tenacity re-raises the last error")


class _Database:
    """The shared connection, its lock, and transaction and paging helpers."""

    def __init__(
        self, path: Path | str, *, clock: Callable[[], datetime], busy_timeout_seconds: float
    ) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        in_memory = str(path) == MEMORY
        if not in_memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path,
            timeout=busy_timeout_seconds,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_seconds * 1000)}")
            mode = _enter_wal(conn, busy_timeout_seconds)
            if str(mode).lower() != ("memory" if in_memory else "wal"):
                raise StoreError(f"could not put {path} in WAL journal mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.create_function("aios_casefold", 1, _casefold, deterministic=True)
            migrate(conn, clock=clock)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is closed")
        return self._conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads (one consistent snapshot per block)."""
        with self.lock:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """The connection in a write transaction, committed (durably) at the end of the
        block, rolled back if the block raises."""
        with self.lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def page(
        self,
        *,
        scope: str,
        table: str,
        keys: Sequence[str],
        descending: bool,
        where: Sequence[str],
        params: Sequence[Any],
        limit: int,
        cursor: str | None,
        columns: str = "data",
    ) -> tuple[list[sqlite3.Row], str | None]:
        """One page of ``table`` ordered by ``keys`` (all ascending or all descending).

        Rows hold the key columns first, then ``columns``. Raises ValueError for a bad
        ``limit`` or ``cursor``.
        """
        check_limit(limit)
        conditions = list(where)
        arguments = list(params)
        if cursor is not None:
            after = decode_cursor(cursor, scope)
            if (
                not isinstance(after, list)
                or len(after) != len(keys)
                or not all(
                    isinstance(v, str | int | float) and not isinstance(v, bool) for v in after
                )
            ):
                raise ValueError(
                    "invalid cursor: pass the next_cursor of the previous page unchanged"
                )
            key_tuple = ", ".join(keys)
            marks = ", ".join("?" for _ in keys)
            conditions.append(f"({key_tuple}) {'<' if descending else '>'} ({marks})")
            arguments.extend(after)
        direction = "DESC" if descending else "ASC"
        sql = (
            f"SELECT {', '.join(keys)}, {columns} FROM {table}"
            + (f" WHERE {' AND '.join(conditions)}" if conditions else "")
            + f" ORDER BY {', '.join(f'{k} {direction}' for k in keys)} LIMIT ?"
        )
        arguments.append(limit + 1)
        with self.read() as conn:
            rows = conn.execute(sql, arguments).fetchall()
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        last = rows[-1]
        return rows, encode_cursor(scope, [last[i] for i in range(len(keys))])


def _since_until(
    column: str, since: datetime | None, until: datetime | None
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append(f"{column} >= ?")
        params.append(to_iso(since, name="since"))
    if until is not None:
        where.append(f"{column} < ?")
        params.append(to_iso(until, name="until"))
    return where, params


# --------------------------------------------------------------------------- devices


class SqliteDeviceStore:
    """:class:`aios.store.port.DeviceStore` on SQLite."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    @staticmethod
    def _row(device: Device) -> tuple[Any, ...]:
        loc = device.location
        return (
            device.name,
            device.kind.value,
            device.site,
            device.parent_id,
            None if loc is None else loc.lat,
            None if loc is None else loc.lon,
            int(device.pending),
            to_iso_or_none(device.last_seen, name="last_seen"),
            device.version,
            dump(device),
            device.id,
        )

    @staticmethod
    def _write_tags(conn: sqlite3.Connection, device: Device) -> None:
        conn.execute("DELETE FROM device_tags WHERE device_id = ?", (device.id,))
        conn.executemany(
            "INSERT OR IGNORE INTO device_tags (device_id, tag) VALUES (?, ?)",
            [(device.id, tag) for tag in device.tags],
        )

    def create(self, device: Device) -> Device:
        """Store a new device. Raises Conflict if the id exists."""
        device = normalize(device)
        with self._db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO devices (name, kind, site, parent_id, lat, lon, pending, "
                    "last_seen, version, data, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    self._row(device),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"device {device.id!r} exists") from err
            self._write_tags(conn, device)
        return device

    def get(self, device_id: str) -> Device | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM devices WHERE id = ?", (device_id,)).fetchone()
        return None if row is None else load(Device, row["data"])

    def update(self, device: Device, expected_version: int) -> Device:
        """Replace the device if its stored version is ``expected_version``; return it with
        ``version`` = expected + 1. Raises NotFound, Conflict."""
        stored = normalize(device).model_copy(update={"version": expected_version + 1})
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE devices SET name = ?, kind = ?, site = ?, parent_id = ?, lat = ?, "
                "lon = ?, pending = ?, last_seen = ?, version = ?, data = ? "
                "WHERE id = ? AND version = ?",
                (*self._row(stored), expected_version),
            )
            if cur.rowcount != 1:
                row = conn.execute(
                    "SELECT version FROM devices WHERE id = ?", (device.id,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"device {device.id!r} does not exist")
                raise Conflict(
                    f"device {device.id!r} is at version {row['version']}, "
                    f"not {expected_version}: read it again"
                )
            self._write_tags(conn, stored)
        return stored

    def touch(
        self,
        device_id: str,
        seen_at: datetime,
        *,
        health: dict[str, Any] | None = None,
        firmware_version: str | None = None,
    ) -> Device:
        """Record a heartbeat: ``last_seen`` = max(stored, ``seen_at``); ``health`` and
        ``firmware_version`` replaced only when given and ``seen_at`` is not older than the
        stored ``last_seen``. Bumps ``version``; ``updated_at`` (the last edit) is kept.
        Raises NotFound."""
        seen_at = utc(seen_at, name="seen_at")
        with self._db.write() as conn:
            row = conn.execute("SELECT data FROM devices WHERE id = ?", (device_id,)).fetchone()
            if row is None:
                raise NotFound(f"device {device_id!r} does not exist")
            device = load(Device, row["data"])
            changes: dict[str, Any] = {"version": device.version + 1}
            if device.last_seen is None or seen_at >= device.last_seen:
                changes["last_seen"] = seen_at
                if health is not None:
                    changes["health"] = dict(health)
                if firmware_version is not None:
                    changes["firmware_version"] = firmware_version
            stored = device.model_copy(update=changes)
            conn.execute(
                "UPDATE devices SET last_seen = ?, version = ?, data = ? WHERE id = ?",
                (to_iso_or_none(stored.last_seen), stored.version, dump(stored), device_id),
            )
        return stored

    def delete(self, device_id: str) -> bool:
        """Remove the device (its events, telemetry, commands and rules are kept)."""
        with self._db.write() as conn:
            cur = conn.execute("DELETE FROM devices WHERE id = ?", (device_id,))
        return cur.rowcount == 1

    def list(
        self, query: DeviceQuery | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[Device]:
        """Devices matching every given filter of ``query``, by id.

        Raises ValueError for a bad limit or cursor, or a box whose min exceeds its max.
        """
        q = query or DeviceQuery()
        where: list[str] = []
        params: list[Any] = []
        if q.search:
            needle = q.search.casefold()
            where.append("(instr(aios_casefold(name), ?) > 0 OR instr(aios_casefold(id), ?) > 0)")
            params += [needle, needle]
        if q.kind is not None:
            where.append("kind = ?")
            params.append(DeviceKind(q.kind).value)
        if q.site is not None:
            where.append("site = ?")
            params.append(q.site)
        if q.tag is not None:
            where.append("id IN (SELECT device_id FROM device_tags WHERE tag = ?)")
            params.append(q.tag)
        if q.parent_id is not None:
            where.append("parent_id = ?")
            params.append(q.parent_id)
        if q.box is not None:
            b = q.box
            if b.min_lat > b.max_lat or b.min_lon > b.max_lon:
                raise ValueError(
                    "bounding box: min_lat must not exceed max_lat, nor min_lon max_lon"
                )
            where.append("lat BETWEEN ? AND ? AND lon BETWEEN ? AND ?")
            params += [b.min_lat, b.max_lat, b.min_lon, b.max_lon]
        if q.pending is not None:
            where.append("pending = ?")
            params.append(int(q.pending))
        rows, next_cursor = self._db.page(
            scope="devices",
            table="devices",
            keys=("id",),
            descending=False,
            where=where,
            params=params,
            limit=limit,
            cursor=cursor,
        )
        return Page([load(Device, r["data"]) for r in rows], next_cursor)


class SqliteDeviceEventStore:
    """:class:`aios.store.port.DeviceEventStore` on SQLite."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def append(self, event: DeviceEvent) -> None:
        """Store the event (the same id twice keeps the first)."""
        event = normalize(event)
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO device_events (id, device_id, time, data) "
                "VALUES (?, ?, ?, ?)",
                (event.id, event.device_id, to_iso(event.time), dump(event)),
            )

    def list(
        self,
        device_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[DeviceEvent]:
        """The device's events, newest first (ties by id), ``since <= time < until``."""
        where, params = _since_until("time", since, until)
        rows, next_cursor = self._db.page(
            scope=f"device_events:{device_id}",
            table="device_events",
            keys=("time", "id"),
            descending=True,
            where=["device_id = ?", *where],
            params=[device_id, *params],
            limit=limit,
            cursor=cursor,
        )
        return Page([load(DeviceEvent, r["data"]) for r in rows], next_cursor)


class SqliteTelemetryStore:
    """:class:`aios.store.port.TelemetryStore` on SQLite (one row per sample)."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def append(self, points: Sequence[TelemetryPoint]) -> None:
        """Store samples in one transaction; a sample of the same (device, metric, time)
        replaces the stored one."""
        rows = [(p.device_id, p.metric, to_iso(p.time), float(p.value), p.unit) for p in points]
        if not rows:
            return
        with self._db.write() as conn:
            conn.executemany(
                "INSERT INTO telemetry (device_id, metric, time, value, unit) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id, metric, time) "
                "DO UPDATE SET value = excluded.value, unit = excluded.unit",
                rows,
            )

    @staticmethod
    def _point(device_id: str, row: sqlite3.Row) -> TelemetryPoint:
        return TelemetryPoint(
            device_id=device_id,
            metric=row["metric"],
            time=from_iso(row["time"]),
            value=row["value"],
            unit=row["unit"],
        )

    def query(
        self,
        device_id: str,
        *,
        metric: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[TelemetryPoint]:
        """Samples oldest first (by time, then metric), ``since <= time < until``."""
        where, params = _since_until("time", since, until)
        if metric is not None:
            where.append("metric = ?")
            params.append(metric)
        rows, next_cursor = self._db.page(
            scope=f"telemetry:{device_id}",
            table="telemetry",
            keys=("time", "metric"),
            descending=False,
            where=["device_id = ?", *where],
            params=[device_id, *params],
            limit=limit,
            cursor=cursor,
            columns="value, unit",
        )
        return Page([self._point(device_id, r) for r in rows], next_cursor)

    def latest(self, device_id: str) -> dict[str, TelemetryPoint]:
        """The newest sample of each metric of the device, by metric name."""
        with self._db.read() as conn:
            # SQLite takes the bare columns of an aggregate query from the row of max().
            rows = conn.execute(
                "SELECT metric, max(time) AS time, value, unit FROM telemetry "
                "WHERE device_id = ? GROUP BY metric",
                (device_id,),
            ).fetchall()
        return {r["metric"]: self._point(device_id, r) for r in rows}

    def prune(self, before: datetime, *, batch_rows: int = PRUNE_BATCH_ROWS) -> int:
        """Delete the samples (every device) whose ``time < before``; return how many.

        Deletes ``batch_rows`` rows per transaction (the oldest first, through the
        ``telemetry_by_age`` index), releasing the write lock between batches so other
        writers (the ingester, another process) are not held up by a large prune. A batch
        that committed stays deleted if a later one fails. Raises ValueError for a naive
        ``before`` or a ``batch_rows`` below 1.
        """
        cutoff = to_iso(before, name="before")
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
        deleted = 0
        while True:
            with self._db.write() as conn:
                count = conn.execute(
                    "DELETE FROM telemetry WHERE (device_id, metric, time) IN ("
                    "SELECT device_id, metric, time FROM telemetry INDEXED BY telemetry_by_age "
                    "WHERE time < ? ORDER BY time LIMIT ?)",
                    (cutoff, batch_rows),
                ).rowcount
            deleted += count
            if count < batch_rows:
                return deleted
            time.sleep(0)  # let a thread waiting for the lock take it before the next batch


class SqliteCommandStore:
    """:class:`aios.store.port.CommandStore` on SQLite."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def create(self, command: Command) -> Command:
        """Raises Conflict if the request id exists."""
        command = normalize(command)
        with self._db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO commands (request_id, device_id, status, requested_at, "
                    "deadline, data) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        command.request_id,
                        command.device_id,
                        command.status.value,
                        to_iso(command.requested_at),
                        to_iso(command.deadline),
                        dump(command),
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"command {command.request_id!r} exists") from err
        return command

    def get(self, request_id: str) -> Command | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT data FROM commands WHERE request_id = ?", (request_id,)
            ).fetchone()
        return None if row is None else load(Command, row["data"])

    def complete(
        self,
        request_id: str,
        status: CommandStatus,
        *,
        at: datetime,
        response: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Command:
        """Record the outcome of a pending command. Raises ValueError if ``status`` is
        pending, NotFound, and Conflict if the command is no longer pending."""
        status = CommandStatus(status)
        if status is CommandStatus.PENDING:
            raise ValueError("complete a command with succeeded, failed or timed_out")
        at = utc(at, name="at")
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT data FROM commands WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"command {request_id!r} does not exist")
            command = load(Command, row["data"])
            if command.status is not CommandStatus.PENDING:
                raise Conflict(
                    f"command {request_id!r} is {command.status.value} already; "
                    "a late outcome is not recorded"
                )
            stored = command.model_copy(
                update={"status": status, "responded_at": at, "response": response, "error": error}
            )
            conn.execute(
                "UPDATE commands SET status = ?, data = ? WHERE request_id = ?",
                (status.value, dump(stored), request_id),
            )
        return stored

    def list(self, device_id: str, *, limit: int = 100, cursor: str | None = None) -> Page[Command]:
        """The device's commands, newest ``requested_at`` first (ties by request id)."""
        rows, next_cursor = self._db.page(
            scope=f"commands:{device_id}",
            table="commands",
            keys=("requested_at", "request_id"),
            descending=True,
            where=["device_id = ?"],
            params=[device_id],
            limit=limit,
            cursor=cursor,
        )
        return Page([load(Command, r["data"]) for r in rows], next_cursor)

    def list_pending(self, *, limit: int = 1000) -> builtins.list[Command]:
        """Commands still pending (any device), oldest deadline first."""
        check_limit(limit)
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM commands WHERE status = 'pending' "
                "ORDER BY deadline, request_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [load(Command, r["data"]) for r in rows]


# --------------------------------------------------------------------------- pipelines


class SqlitePipelineStore:
    """:class:`aios.store.port.PipelineStore` on SQLite."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def create(self, record: PipelineRecord, document: dict[str, Any]) -> PipelineRecord:
        """Store a new pipeline (``latest_revision`` 1) and its revision 1.
        Raises Conflict if the id exists."""
        record = normalize(record).model_copy(update={"latest_revision": 1})
        revision = PipelineRevision(
            pipeline_id=record.id,
            revision=1,
            document=document,
            created_by=record.created_by,
            created_at=record.created_at,
        )
        with self._db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO pipelines (id, name, latest_revision, data) VALUES (?, ?, 1, ?)",
                    (record.id, record.name, dump(record)),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"pipeline {record.id!r} exists") from err
            conn.execute(
                "INSERT INTO pipeline_revisions (pipeline_id, revision, data) VALUES (?, 1, ?)",
                (record.id, dump(revision)),
            )
        return record

    def get(self, pipeline_id: str) -> PipelineRecord | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM pipelines WHERE id = ?", (pipeline_id,)).fetchone()
        return None if row is None else load(PipelineRecord, row["data"])

    def add_revision(
        self,
        pipeline_id: str,
        document: dict[str, Any],
        *,
        expected_revision: int,
        name: str | None = None,
        description: str | None = None,
        created_by: str | None = None,
        at: datetime,
    ) -> PipelineRecord:
        """Store revision ``expected_revision + 1`` and make it the latest (``updated_at`` =
        ``at``; name/description replaced when given). Raises NotFound; Conflict if
        ``expected_revision`` is not the latest; pydantic ValidationError for a bad name."""
        at = utc(at, name="at")
        with self._db.write() as conn:
            row = conn.execute("SELECT data FROM pipelines WHERE id = ?", (pipeline_id,)).fetchone()
            if row is None:
                raise NotFound(f"pipeline {pipeline_id!r} does not exist")
            record = load(PipelineRecord, row["data"])
            if record.latest_revision != expected_revision:
                raise Conflict(
                    f"pipeline {pipeline_id!r} is at revision {record.latest_revision}, "
                    f"not {expected_revision}: someone saved it meanwhile; reload it"
                )
            number = expected_revision + 1
            fields = record.model_dump()
            fields.update(latest_revision=number, updated_at=at)
            if name is not None:
                fields["name"] = name
            if description is not None:
                fields["description"] = description
            stored = PipelineRecord.model_validate(fields)
            revision = PipelineRevision(
                pipeline_id=pipeline_id,
                revision=number,
                document=document,
                created_by=created_by,
                created_at=at,
            )
            conn.execute(
                "INSERT INTO pipeline_revisions (pipeline_id, revision, data) VALUES (?, ?, ?)",
                (pipeline_id, number, dump(revision)),
            )
            conn.execute(
                "UPDATE pipelines SET name = ?, latest_revision = ?, data = ? WHERE id = ?",
                (stored.name, number, dump(stored), pipeline_id),
            )
        return stored

    def get_revision(self, pipeline_id: str, revision: int) -> PipelineRevision | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT data FROM pipeline_revisions WHERE pipeline_id = ? AND revision = ?",
                (pipeline_id, revision),
            ).fetchone()
        return None if row is None else load(PipelineRevision, row["data"])

    def list_revisions(
        self, pipeline_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[PipelineRevision]:
        """Newest revision first."""
        rows, next_cursor = self._db.page(
            scope=f"pipeline_revisions:{pipeline_id}",
            table="pipeline_revisions",
            keys=("revision",),
            descending=True,
            where=["pipeline_id = ?"],
            params=[pipeline_id],
            limit=limit,
            cursor=cursor,
        )
        return Page([load(PipelineRevision, r["data"]) for r in rows], next_cursor)

    def delete(self, pipeline_id: str) -> bool:
        """Remove the pipeline and its revisions (runs and events are kept)."""
        with self._db.write() as conn:
            conn.execute("DELETE FROM pipeline_revisions WHERE pipeline_id = ?", (pipeline_id,))
            cur = conn.execute("DELETE FROM pipelines WHERE id = ?", (pipeline_id,))
        return cur.rowcount == 1

    def list(
        self, *, search: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[PipelineRecord]:
        """Pipelines by id; ``search`` is a case-insensitive substring of the name or id."""
        where: list[str] = []
        params: list[Any] = []
        if search:
            needle = search.casefold()
            where.append("(instr(aios_casefold(name), ?) > 0 OR instr(aios_casefold(id), ?) > 0)")
            params += [needle, needle]
        rows, next_cursor = self._db.page(
            scope="pipelines",
            table="pipelines",
            keys=("id",),
            descending=False,
            where=where,
            params=params,
            limit=limit,
            cursor=cursor,
        )
        return Page([load(PipelineRecord, r["data"]) for r in rows], next_cursor)


_ACTIVE_RUN_STATUSES = tuple(s.value for s in RunStatus if s.active)


class SqliteRunStore:
    """:class:`aios.store.port.RunStore` on SQLite."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def create(self, run: Run) -> Run:
        """Raises Conflict if the id exists."""
        run = normalize(run)
        with self._db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO runs (id, pipeline_id, status, started_at, version, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        run.id,
                        run.pipeline_id,
                        run.status.value,
                        to_iso(run.started_at),
                        run.version,
                        dump(run),
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"run {run.id!r} exists") from err
        return run

    def get(self, run_id: str) -> Run | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else load(Run, row["data"])

    def update(self, run: Run, expected_version: int) -> Run:
        """Replace the run if its stored version is ``expected_version``; return it with
        ``version`` = expected + 1. Raises NotFound, Conflict."""
        stored = normalize(run).model_copy(update={"version": expected_version + 1})
        with self._db.write() as conn:
            cur = conn.execute(
                "UPDATE runs SET pipeline_id = ?, status = ?, started_at = ?, version = ?, "
                "data = ? WHERE id = ? AND version = ?",
                (
                    stored.pipeline_id,
                    stored.status.value,
                    to_iso(stored.started_at),
                    stored.version,
                    dump(stored),
                    stored.id,
                    expected_version,
                ),
            )
            if cur.rowcount != 1:
                row = conn.execute("SELECT version FROM runs WHERE id = ?", (run.id,)).fetchone()
                if row is None:
                    raise NotFound(f"run {run.id!r} does not exist")
                raise Conflict(
                    f"run {run.id!r} is at version {row['version']}, not {expected_version}"
                )
        return stored

    def list(self, pipeline_id: str, *, limit: int = 100, cursor: str | None = None) -> Page[Run]:
        """The pipeline's runs, newest ``started_at`` first (ties by id)."""
        rows, next_cursor = self._db.page(
            scope=f"runs:{pipeline_id}",
            table="runs",
            keys=("started_at", "id"),
            descending=True,
            where=["pipeline_id = ?"],
            params=[pipeline_id],
            limit=limit,
            cursor=cursor,
        )
        return Page([load(Run, r["data"]) for r in rows], next_cursor)

    def list_active(self) -> builtins.list[Run]:
        """Runs starting, running or stopping (any pipeline), oldest first."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM runs WHERE status IN (?, ?, ?) ORDER BY started_at, id",
                _ACTIVE_RUN_STATUSES,
            ).fetchall()
        return [load(Run, r["data"]) for r in rows]


class SqliteEventStore:
    """:class:`aios.store.port.EventStore` on SQLite."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def put(self, event: EventRecord) -> bool:
        """Store the event unless its id is stored already; return whether it was new."""
        event = normalize(event)
        with self._db.write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (id, pipeline_id, run_id, node_id, source_id, "
                "type, time, severity, acknowledged, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.id,
                    event.pipeline_id,
                    event.run_id,
                    event.node_id,
                    event.source_id,
                    event.type,
                    to_iso(event.time),
                    event.severity,
                    int(event.acknowledged_at is not None),
                    dump(event),
                ),
            )
        return cur.rowcount == 1

    def get(self, event_id: str) -> EventRecord | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else load(EventRecord, row["data"])

    def acknowledge(self, event_id: str, *, by: str, at: datetime) -> EventRecord:
        """Mark acknowledged by ``by`` at ``at``; an acknowledged event is returned
        unchanged. Raises NotFound."""
        at = utc(at, name="at")
        with self._db.write() as conn:
            row = conn.execute("SELECT data FROM events WHERE id = ?", (event_id,)).fetchone()
            if row is None:
                raise NotFound(f"event {event_id!r} does not exist")
            event = load(EventRecord, row["data"])
            if event.acknowledged_at is not None:
                return event
            stored = event.model_copy(update={"acknowledged_by": by, "acknowledged_at": at})
            conn.execute(
                "UPDATE events SET acknowledged = 1, data = ? WHERE id = ?",
                (dump(stored), event_id),
            )
        return stored

    def list(
        self, query: EventQuery | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[EventRecord]:
        """Events matching every given filter, newest ``time`` first (ties by id),
        ``since <= time < until``."""
        q = query or EventQuery()
        where, params = _since_until("time", q.since, q.until)
        for column, value in (
            ("pipeline_id", q.pipeline_id),
            ("run_id", q.run_id),
            ("type", q.type),
            ("source_id", q.source_id),
            ("severity", q.severity),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if q.acknowledged is not None:
            where.append("acknowledged = ?")
            params.append(int(q.acknowledged))
        rows, next_cursor = self._db.page(
            scope="events",
            table="events",
            keys=("time", "id"),
            descending=True,
            where=where,
            params=params,
            limit=limit,
            cursor=cursor,
        )
        return Page([load(EventRecord, r["data"]) for r in rows], next_cursor)


# --------------------------------------------------------------------------- alerts


class SqliteAlertStore:
    """:class:`aios.store.port.AlertStore` on SQLite; a partial unique index keeps at most
    one active alert per (device, rule)."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def put_rule(self, rule: AlertRule) -> AlertRule:
        """Create or replace a rule."""
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO alert_rules (id, device_id, data) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, "
                "data = excluded.data",
                (rule.id, rule.device_id, dump(rule)),
            )
        return rule

    def get_rule(self, rule_id: str) -> AlertRule | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM alert_rules WHERE id = ?", (rule_id,)).fetchone()
        return None if row is None else load(AlertRule, row["data"])

    def delete_rule(self, rule_id: str) -> bool:
        with self._db.write() as conn:
            cur = conn.execute("DELETE FROM alert_rules WHERE id = ?", (rule_id,))
        return cur.rowcount == 1

    def list_rules(self, device_id: str | None = None) -> builtins.list[AlertRule]:
        """Rules of one device, or all rules; by id."""
        with self._db.read() as conn:
            if device_id is None:
                rows = conn.execute("SELECT data FROM alert_rules ORDER BY id").fetchall()
            else:
                rows = conn.execute(
                    "SELECT data FROM alert_rules WHERE device_id = ? ORDER BY id", (device_id,)
                ).fetchall()
        return [load(AlertRule, r["data"]) for r in rows]

    def raise_alert(self, alert: Alert) -> bool:
        """Store ``alert`` as the active alert of (device, rule) unless one is active (or its
        id is taken); return whether it was stored. Raises ValueError if it is not active."""
        if alert.state is not AlertState.ACTIVE:
            raise ValueError("raise an alert in state 'active'")
        alert = normalize(alert)
        with self._db.write() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO alerts (id, device_id, rule_id, state, raised_at, data) "
                "VALUES (?, ?, ?, 'active', ?, ?)",
                (alert.id, alert.device_id, alert.rule_id, to_iso(alert.raised_at), dump(alert)),
            )
        return cur.rowcount == 1

    def clear(self, device_id: str, rule_id: str, *, at: datetime) -> Alert | None:
        """Clear the active alert of (device, rule) at ``at``; return it, or None."""
        at = utc(at, name="at")
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT data FROM alerts WHERE device_id = ? AND rule_id = ? AND state = 'active'",
                (device_id, rule_id),
            ).fetchone()
            if row is None:
                return None
            alert = load(Alert, row["data"])
            stored = alert.model_copy(update={"state": AlertState.CLEARED, "cleared_at": at})
            conn.execute(
                "UPDATE alerts SET state = 'cleared', data = ? WHERE id = ?",
                (dump(stored), alert.id),
            )
        return stored

    def acknowledge(self, alert_id: str, *, by: str, at: datetime) -> Alert:
        """Mark acknowledged by ``by`` at ``at``; an acknowledged alert is returned unchanged.
        Raises NotFound."""
        at = utc(at, name="at")
        with self._db.write() as conn:
            row = conn.execute("SELECT data FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if row is None:
                raise NotFound(f"alert {alert_id!r} does not exist")
            alert = load(Alert, row["data"])
            if alert.acknowledged_at is not None:
                return alert
            stored = alert.model_copy(update={"acknowledged_by": by, "acknowledged_at": at})
            conn.execute("UPDATE alerts SET data = ? WHERE id = ?", (dump(stored), alert_id))
        return stored

    def get(self, alert_id: str) -> Alert | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return None if row is None else load(Alert, row["data"])

    def list(
        self,
        *,
        state: AlertState | None = None,
        device_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Alert]:
        """Alerts matching the filters (``raised_at >= since``), newest ``raised_at`` first."""
        where, params = _since_until("raised_at", since, None)
        if state is not None:
            where.append("state = ?")
            params.append(AlertState(state).value)
        if device_id is not None:
            where.append("device_id = ?")
            params.append(device_id)
        rows, next_cursor = self._db.page(
            scope="alerts",
            table="alerts",
            keys=("raised_at", "id"),
            descending=True,
            where=where,
            params=params,
            limit=limit,
            cursor=cursor,
        )
        return Page([load(Alert, r["data"]) for r in rows], next_cursor)


# --------------------------------------------------------------------------- users


class SqliteUserStore:
    """:class:`aios.store.port.UserStore` on SQLite; usernames are unique by their
    case-folded form (Unicode, not only ASCII)."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def create(self, user: User) -> User:
        """Raises Conflict if the id or the username (case-insensitive) exists."""
        user = normalize(user)
        with self._db.write() as conn:
            try:
                conn.execute(
                    "INSERT INTO users (id, username, username_key, version, data) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (user.id, user.username, user.username.casefold(), user.version, dump(user)),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"user {user.id!r} or username {user.username!r} exists") from err
        return user

    def get(self, user_id: str) -> User | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT data FROM users WHERE id = ?", (user_id,)).fetchone()
        return None if row is None else load(User, row["data"])

    def get_by_username(self, username: str) -> User | None:
        """The user whose username equals ``username`` ignoring case."""
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT data FROM users WHERE username_key = ?", (username.casefold(),)
            ).fetchone()
        return None if row is None else load(User, row["data"])

    def update(self, user: User, expected_version: int) -> User:
        """Replace the user if its stored version is ``expected_version``; return it with
        ``version`` = expected + 1. Raises NotFound; Conflict on version or a taken username."""
        stored = normalize(user).model_copy(update={"version": expected_version + 1})
        with self._db.write() as conn:
            try:
                cur = conn.execute(
                    "UPDATE users SET username = ?, username_key = ?, version = ?, data = ? "
                    "WHERE id = ? AND version = ?",
                    (
                        stored.username,
                        stored.username.casefold(),
                        stored.version,
                        dump(stored),
                        stored.id,
                        expected_version,
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"username {stored.username!r} is taken") from err
            if cur.rowcount != 1:
                row = conn.execute("SELECT version FROM users WHERE id = ?", (user.id,)).fetchone()
                if row is None:
                    raise NotFound(f"user {user.id!r} does not exist")
                raise Conflict(
                    f"user {user.id!r} is at version {row['version']}, not {expected_version}"
                )
        return stored

    def delete(self, user_id: str) -> bool:
        with self._db.write() as conn:
            cur = conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
        return cur.rowcount == 1

    def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[User]:
        """By username, case-insensitive (ties by id)."""
        rows, next_cursor = self._db.page(
            scope="users",
            table="users",
            keys=("username_key", "id"),
            descending=False,
            where=[],
            params=[],
            limit=limit,
            cursor=cursor,
        )
        return Page([load(User, r["data"]) for r in rows], next_cursor)

    def count(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT count(*) FROM users").fetchone()[0])


class SqliteRefreshTokenStore:
    """:class:`aios.store.port.RefreshTokenStore` on SQLite.

    A token is *live* while neither revoked nor replaced.
    """

    def __init__(self, db: _Database) -> None:
        self._db = db

    @staticmethod
    def _insert(conn: sqlite3.Connection, token: RefreshToken) -> None:
        try:
            conn.execute(
                "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, revoked_at, "
                "replaced_by, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token.id,
                    token.user_id,
                    token.family_id,
                    token.token_hash,
                    to_iso_or_none(token.revoked_at),
                    token.replaced_by,
                    dump(token),
                ),
            )
        except sqlite3.IntegrityError as err:
            raise Conflict(f"refresh token {token.id!r} (or its hash) exists") from err

    def put(self, token: RefreshToken) -> None:
        """Store a new token. Raises Conflict if its id or hash exists."""
        token = normalize(token)
        with self._db.write() as conn:
            self._insert(conn, token)

    def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT data FROM refresh_tokens WHERE token_hash = ?", (token_hash,)
            ).fetchone()
        return None if row is None else load(RefreshToken, row["data"])

    def rotate(self, token_id: str, replacement: RefreshToken, *, at: datetime) -> bool:
        """Store ``replacement`` and mark ``token_id`` replaced by it, only if ``token_id``
        is live; return whether it rotated (False: absent, revoked or replaced — reuse)."""
        replacement = normalize(replacement)
        utc(at, name="at")
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT data FROM refresh_tokens WHERE id = ? "
                "AND revoked_at IS NULL AND replaced_by IS NULL",
                (token_id,),
            ).fetchone()
            if row is None:
                return False
            token = load(RefreshToken, row["data"])
            stored = token.model_copy(update={"replaced_by": replacement.id})
            conn.execute(
                "UPDATE refresh_tokens SET replaced_by = ?, data = ? WHERE id = ?",
                (replacement.id, dump(stored), token_id),
            )
            self._insert(conn, replacement)
        return True

    def _revoke_where(self, column: str, value: str, at: datetime) -> int:
        at_iso = to_iso(at, name="at")
        revoked_at = from_iso(at_iso)
        with self._db.write() as conn:
            rows = conn.execute(
                f"SELECT data, replaced_by FROM refresh_tokens WHERE {column} = ? "
                "AND revoked_at IS NULL",
                (value,),
            ).fetchall()
            live = 0
            for row in rows:
                token = load(RefreshToken, row["data"])
                live += row["replaced_by"] is None
                stored = token.model_copy(update={"revoked_at": revoked_at})
                conn.execute(
                    "UPDATE refresh_tokens SET revoked_at = ?, data = ? WHERE id = ?",
                    (at_iso, dump(stored), token.id),
                )
        return live

    def revoke(self, token_id: str, *, at: datetime) -> None:
        """Revoke the token (an absent or revoked one is left as it is)."""
        self._revoke_where("id", token_id, at)

    def revoke_family(self, family_id: str, *, at: datetime) -> int:
        """Revoke every token of the family; return how many were live."""
        return self._revoke_where("family_id", family_id, at)

    def revoke_user(self, user_id: str, *, at: datetime) -> int:
        """Revoke every token of the user; return how many were live."""
        return self._revoke_where("user_id", user_id, at)


class SqliteAuditStore:
    """:class:`aios.store.port.AuditStore` on SQLite."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def append(self, entry: AuditEntry) -> None:
        """Store the entry (the same id twice keeps the first)."""
        entry = normalize(entry)
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO audit (id, time, actor_id, target_type, target_id, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.id,
                    to_iso(entry.time),
                    entry.actor_id,
                    entry.target_type,
                    entry.target_id,
                    dump(entry),
                ),
            )

    def list(
        self,
        *,
        actor_id: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[AuditEntry]:
        """Entries matching the filters (``time >= since``), newest first (ties by id)."""
        where, params = _since_until("time", since, None)
        for column, value in (
            ("actor_id", actor_id),
            ("target_type", target_type),
            ("target_id", target_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        rows, next_cursor = self._db.page(
            scope="audit",
            table="audit",
            keys=("time", "id"),
            descending=True,
            where=where,
            params=params,
            limit=limit,
            cursor=cursor,
        )
        return Page([load(AuditEntry, r["data"]) for r in rows], next_cursor)


class SqliteSettingsStore:
    """:class:`aios.store.port.SettingsStore` on SQLite (values as JSON text)."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    def get(self, key: str) -> Any | None:
        """The value stored under ``key``, or None."""
        with self._db.read() as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row["value"])

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key``. Raises TypeError if it is not JSON-serialisable,
        ValueError if it holds NaN or an infinity."""
        text = json.dumps(value, allow_nan=False)
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, text),
            )


class SqliteSecretStore:
    """:class:`aios.store.port.IntegrationSecretStore` on SQLite.

    Values are encrypted with AES-256-GCM (the secret's name as associated data, a random
    96-bit nonce per value) under a key kept in a file beside the database
    (``<database>.secrets-key``, mode 0600, created at the first :meth:`put`): a copy of
    the database alone does not hold the values. An in-memory database keeps its key in
    memory. Reading a value whose key file is gone raises StoreError.
    """

    def __init__(self, db: _Database, key_path: Path | None) -> None:
        self._db = db
        self._key_path = key_path
        self._key: bytes | None = None if key_path is not None else os.urandom(32)
        self._key_lock = threading.Lock()

    def _load_key(self, *, create: bool) -> bytes | None:
        with self._key_lock:
            if self._key is not None:
                return self._key
            path = self._key_path
            assert path is not None
            if not path.exists():
                if not create:
                    return None
                fresh = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
                fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, os.urandom(32))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    os.link(fresh, path)  # fails if another process made it first
                except FileExistsError:
                    pass
                finally:
                    fresh.unlink(missing_ok=True)
            key = path.read_bytes()
            if len(key) != 32:
                raise StoreError(f"the secrets key file {path.name} is damaged (not 32 bytes)")
            self._key = key
            return key

    def _cipher(self, *, create: bool) -> Any:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = self._load_key(create=create)
        if key is None:
            raise StoreError(
                "the secrets key file beside the database is missing; set the secrets again"
            )
        return AESGCM(key)

    @staticmethod
    def _info(row: sqlite3.Row) -> SecretInfo:
        return SecretInfo(
            name=row["name"],
            updated_at=from_iso(row["updated_at"]),
            updated_by=row["updated_by"],
            hint=row["hint"],
        )

    def get(self, name: str) -> str | None:
        """The value, or None. Raises StoreError if it cannot be decrypted."""
        from cryptography.exceptions import InvalidTag

        with self._db.read() as conn:
            row = conn.execute(
                "SELECT value FROM integration_secrets WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            return None
        blob = bytes(row["value"])
        try:
            plain = self._cipher(create=False).decrypt(blob[:12], blob[12:], name.encode())
        except InvalidTag:
            raise StoreError(
                f"secret {name!r} cannot be decrypted with the key beside the database; "
                "set it again"
            ) from None
        return bytes(plain).decode("utf-8")

    def info(self, name: str) -> SecretInfo | None:
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT name, hint, updated_at, updated_by FROM integration_secrets WHERE name = ?",
                (name,),
            ).fetchone()
        return None if row is None else self._info(row)

    def put(self, name: str, value: str, *, by: str | None, at: datetime) -> SecretInfo:
        """Store the value encrypted. Raises ValueError (empty or too long)."""
        data = value.encode("utf-8")
        if not data:
            raise ValueError("a secret value cannot be empty")
        if len(data) > MAX_SECRET_BYTES:
            raise ValueError(f"a secret value is at most {MAX_SECRET_BYTES} bytes")
        at = utc(at, name="at")
        nonce = os.urandom(12)
        blob = nonce + self._cipher(create=True).encrypt(nonce, data, name.encode())
        info = SecretInfo(name=name, updated_at=at, updated_by=by, hint=secret_hint(value))
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO integration_secrets (name, value, hint, updated_at, updated_by) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "value = excluded.value, hint = excluded.hint, "
                "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (name, blob, info.hint, to_iso(at), by),
            )
        return info

    def delete(self, name: str) -> bool:
        with self._db.write() as conn:
            cur = conn.execute("DELETE FROM integration_secrets WHERE name = ?", (name,))
        return cur.rowcount == 1

    def list(self) -> builtins.list[SecretInfo]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT name, hint, updated_at, updated_by FROM integration_secrets ORDER BY name"
            ).fetchall()
        return [self._info(r) for r in rows]


class SqliteStore:
    """Every store of the service in one SQLite file (:class:`aios.store.port.Store`).

    ``path``: the database file, created if absent (with its parent directories and, beside
    it, the ``-wal`` and ``-shm`` files of WAL mode); :data:`MEMORY` (``":memory:"``) opens
    a private in-memory database instead, durable for nothing. ``clock``: the time recorded
    for applied migrations. ``busy_timeout_seconds``: how long a write waits for another process's.

    Raises SchemaVersionError if the file's schema is newer than this code knows;
    sqlite3.DatabaseError if the file is not a SQLite database.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], datetime] = utcnow,
        busy_timeout_seconds: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self._db = _Database(
            MEMORY if str(path) == MEMORY else self.path,
            clock=clock,
            busy_timeout_seconds=busy_timeout_seconds,
        )
        self.devices: DeviceStore = SqliteDeviceStore(self._db)
        self.device_events: DeviceEventStore = SqliteDeviceEventStore(self._db)
        self.telemetry: TelemetryStore = SqliteTelemetryStore(self._db)
        self.commands: CommandStore = SqliteCommandStore(self._db)
        self.pipelines: PipelineStore = SqlitePipelineStore(self._db)
        self.runs: RunStore = SqliteRunStore(self._db)
        self.events: EventStore = SqliteEventStore(self._db)
        self.alerts: AlertStore = SqliteAlertStore(self._db)
        self.users: UserStore = SqliteUserStore(self._db)
        self.refresh_tokens: RefreshTokenStore = SqliteRefreshTokenStore(self._db)
        self.audit: AuditStore = SqliteAuditStore(self._db)
        self.settings: SettingsStore = SqliteSettingsStore(self._db)
        self.secrets: IntegrationSecretStore = SqliteSecretStore(
            self._db,
            None if str(path) == MEMORY else self.path.with_name(self.path.name + ".secrets-key"),
        )

    @property
    def schema_version(self) -> int:
        """The number of migrations applied to the file."""
        with self._db.read() as conn:
            return schema_version(conn)

    def close(self) -> None:
        """Close the connection (idempotent); later calls raise StoreError."""
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _conforms(store: SqliteStore) -> Store:
    """Typing check: :class:`SqliteStore` implements the :class:`Store` port."""
    return store
