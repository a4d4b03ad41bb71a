"""SQLite store durability: restart, a killed writer, two processes, schema migrations."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aios.domain import (
    Alert,
    AlertRuleKind,
    AuditEntry,
    Command,
    Device,
    DeviceEvent,
    DeviceKind,
    EventRecord,
    PipelineRecord,
    RefreshToken,
    Run,
    TelemetryPoint,
    User,
)
from aios.store.port import StoreError
from aios.store.sqlite import (
    MIGRATIONS,
    Migration,
    SchemaVersionError,
    SqliteStore,
    migrate,
)

T0 = datetime(2026, 3, 1, 8, 0, 0, 250, tzinfo=UTC)
CHILD_TIMEOUT_SECONDS = 60


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "aios.db"


def test_close_and_reopen_keeps_every_record(db_path: Path) -> None:
    # GIVEN one record of every family, written and the store closed
    store = SqliteStore(db_path)
    device = store.devices.create(
        Device(id="cam-1", name="Front", kind=DeviceKind.CAMERA, tags=["a"], last_seen=at(1))
    )
    device = store.devices.touch("cam-1", at(2), health={"fps": 24.5})
    store.device_events.append(DeviceEvent(id="de-1", device_id="cam-1", time=at(2), type="t"))
    store.telemetry.append([TelemetryPoint(device_id="cam-1", metric="fps", time=at(2), value=24)])
    command = store.commands.create(
        Command(request_id="req-1", device_id="cam-1", name="snapshot", deadline=at(30))
    )
    pipeline = store.pipelines.create(PipelineRecord(id="pl-1", name="P"), {"nodes": [1]})
    run = store.runs.create(Run(id="run-1", pipeline_id="pl-1", revision=1, started_at=at(3)))
    event = EventRecord(id="ev-1", pipeline_id="pl-1", node_id="n", type="zone.entered", time=at(4))
    store.events.put(event)
    alert = Alert(
        id="al-1", device_id="cam-1", rule_id="r", kind=AlertRuleKind.OFFLINE, message="m"
    )
    store.alerts.raise_alert(alert)
    user = store.users.create(User(username="Admin", password_hash="$argon2id$x"))
    rt = RefreshToken(user_id=user.id, family_id="f", token_hash="h", expires_at=at(99))
    store.refresh_tokens.put(rt)
    entry = AuditEntry(id="au-1", action="device.create", time=at(5))
    store.audit.append(entry)
    store.settings.put("fleet", {"allow_pending": True})
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.devices.get("cam-1")
    # WHEN the file is opened again
    with SqliteStore(db_path) as reopened:
        # THEN everything is there, unchanged
        assert reopened.devices.get("cam-1") == device
        assert [e.id for e in reopened.device_events.list("cam-1").items] == ["de-1"]
        assert reopened.telemetry.latest("cam-1")["fps"].value == 24
        assert reopened.commands.get("req-1") == command
        assert reopened.pipelines.get("pl-1") == pipeline
        revision = reopened.pipelines.get_revision("pl-1", 1)
        assert revision is not None and revision.document == {"nodes": [1]}
        assert reopened.runs.get("run-1") == run
        assert reopened.events.get("ev-1") == event
        assert reopened.alerts.get("al-1") == alert
        assert reopened.users.get_by_username("admin") == user
        assert reopened.refresh_tokens.get_by_hash("h") == rt
        assert reopened.audit.list().items == [entry]
        assert reopened.settings.get("fleet") == {"allow_pending": True}


def test_store_runs_in_wal_mode_with_full_sync(db_path: Path) -> None:
    SqliteStore(db_path).close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


# --------------------------------------------------------------------------- killed writer

WRITER = textwrap.dedent(
    """
    import sys, threading
    from datetime import UTC, datetime, timedelta
    from aios.domain import Device, DeviceKind, TelemetryPoint
    from aios.store.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    out = threading.Lock()
    T0 = datetime(2026, 3, 1, tzinfo=UTC)

    def write(prefix):
        i = 0
        while True:
            device_id = f"{prefix}-{i}"
            store.devices.create(Device(id=device_id, name=device_id, kind=DeviceKind.SENSOR))
            store.telemetry.append([
                TelemetryPoint(device_id=device_id, metric="m", time=T0 + timedelta(seconds=s),
                               value=s)
                for s in range(200)
            ])
            with out:
                sys.stdout.write(device_id + "\\n")
                sys.stdout.flush()
            i += 1

    threads = [threading.Thread(target=write, args=(p,), daemon=True) for p in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    """
)


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture
def reaped() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes, killed and reaped after the test whatever happens."""
    children: list[subprocess.Popen[str]] = []
    yield children
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=CHILD_TIMEOUT_SECONDS)


def test_killed_writer_loses_no_acknowledged_write(
    db_path: Path, reaped: list[subprocess.Popen[str]]
) -> None:
    # GIVEN a process writing devices (each with a 200-sample batch) from two threads,
    # printing each id once its writes returned
    SqliteStore(db_path).close()
    child = _spawn(WRITER, str(db_path))
    reaped.append(child)
    assert child.stdout is not None
    acknowledged: list[str] = []
    deadline = time.monotonic() + CHILD_TIMEOUT_SECONDS
    while len(acknowledged) < 40:
        line = child.stdout.readline()
        if not line:
            assert child.stderr is not None
            pytest.fail(f"writer stopped early: {child.stderr.read()}")
        acknowledged.append(line.strip())
        assert time.monotonic() < deadline, "writer too slow"
    # WHEN it is killed mid-stream (no chance to close or flush anything)
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=CHILD_TIMEOUT_SECONDS)
    acknowledged += [line for line in rest.splitlines() if line.strip()]
    assert child.returncode == -signal.SIGKILL
    # THEN the file is intact and holds every acknowledged write
    with SqliteStore(db_path) as store:
        conn = sqlite3.connect(db_path)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
        for device_id in acknowledged:
            assert store.devices.get(device_id) is not None, device_id
            assert len(store.telemetry.query(device_id).items) == 200, device_id
        # AND an unacknowledged batch is all there or not at all (one transaction)
        for page_device in store.devices.list(limit=1000).items:
            count = len(store.telemetry.query(page_device.id).items)
            assert count in (0, 200), (page_device.id, count)


# --------------------------------------------------------------------------- two processes

TOUCHER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from aios.store.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    offset = int(sys.argv[2])
    for i in range(int(sys.argv[3])):
        store.devices.touch("cam-1", datetime(2026, 3, 1, tzinfo=UTC)
                            + timedelta(seconds=2 * i + offset))
    store.close()
    print("done")
    """
)


def test_two_processes_share_one_file(db_path: Path, reaped: list[subprocess.Popen[str]]) -> None:
    # GIVEN a device, and two processes touching it at once
    with SqliteStore(db_path) as store:
        store.devices.create(Device(id="cam-1", name="C", kind=DeviceKind.CAMERA))
    per_process = 40
    children = [_spawn(TOUCHER, str(db_path), str(i), str(per_process)) for i in (0, 1)]
    reaped.extend(children)
    # WHEN both finish
    for child in children:
        out, err = child.communicate(timeout=CHILD_TIMEOUT_SECONDS)
        assert child.returncode == 0, err
        assert out.strip() == "done"
    # THEN no touch was lost
    with SqliteStore(db_path) as store:
        stored = store.devices.get("cam-1")
        assert stored is not None
        assert stored.version == 1 + 2 * per_process
        assert stored.last_seen == datetime(2026, 3, 1, tzinfo=UTC) + timedelta(
            seconds=2 * (per_process - 1) + 1
        )


# --------------------------------------------------------------------------- migrations


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {r[0] for r in rows}
    finally:
        conn.close()


def test_new_file_gets_every_migration(db_path: Path) -> None:
    with SqliteStore(db_path) as store:
        assert store.schema_version == len(MIGRATIONS)
    conn = sqlite3.connect(db_path)
    try:
        applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        conn.close()
    assert applied == [m.version for m in MIGRATIONS]


def test_older_file_is_migrated_and_keeps_its_data(db_path: Path) -> None:
    # GIVEN a file at schema version 1 holding a device
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert migrate(conn, MIGRATIONS[:1]) == 1
        device = Device(id="cam-1", name="Old", kind=DeviceKind.CAMERA, created_at=T0)
        conn.execute(
            "INSERT INTO devices (id, name, kind, pending, version, data) "
            "VALUES (?, ?, ?, 0, 1, ?)",
            (device.id, device.name, device.kind.value, device.model_dump_json()),
        )
    finally:
        conn.close()
    assert "users" not in _tables(db_path)
    # WHEN this version opens it
    with SqliteStore(db_path) as store:
        # THEN it is at the latest version, the device is kept and the new tables work
        assert store.schema_version == len(MIGRATIONS)
        assert store.devices.get("cam-1") == device
        store.users.create(User(username="u", password_hash="$argon2id$x"))
        assert store.users.count() == 1


def test_newer_file_is_refused_and_left_alone(db_path: Path) -> None:
    # GIVEN a file written by a newer version
    SqliteStore(db_path).close()
    newer = len(MIGRATIONS) + 5
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(f"PRAGMA user_version = {newer}")
        conn.commit()
    finally:
        conn.close()
    # WHEN this version opens it THEN it refuses, saying what to do, and changes nothing
    with pytest.raises(SchemaVersionError, match=rf"version {newer}.*newer.*upgrade AIOS"):
        SqliteStore(db_path)
    assert _version(db_path) == newer


def test_failing_migration_rolls_back_entirely(db_path: Path) -> None:
    SqliteStore(db_path).close()
    broken = Migration(
        len(MIGRATIONS) + 1,
        "half-done",
        ("CREATE TABLE extra (x INTEGER)", "INSERT INTO no_such_table VALUES (1)"),
    )
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            migrate(conn, [*MIGRATIONS, broken])
    finally:
        conn.close()
    assert _version(db_path) == len(MIGRATIONS)
    assert "extra" not in _tables(db_path)
    SqliteStore(db_path).close()


def test_misnumbered_migrations_are_refused(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        with pytest.raises(SchemaVersionError, match="numbered"):
            migrate(conn, [Migration(2, "skips one", ("CREATE TABLE t (x)",))])
    finally:
        conn.close()
    assert _version(db_path) == 0


def test_threads_opening_a_new_file_at_once_all_succeed(db_path: Path) -> None:
    errors: list[BaseException] = []
    stores: list[SqliteStore] = []
    lock = threading.Lock()

    def open_store() -> None:
        try:
            opened = SqliteStore(db_path)
        except BaseException as err:  # pragma: no cover - reported below
            with lock:
                errors.append(err)
            return
        with lock:
            stores.append(opened)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for opened in stores:
        opened.close()
    assert errors == []
    assert len(stores) == 4
    assert _version(db_path) == len(MIGRATIONS)


def test_a_file_that_is_not_a_database_is_refused(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SqliteStore(db_path)
