"""Telemetry retention on SQLite beyond the port contract: the prune deletes in batches of
its own transactions, lets other writers in between them, and uses its time index, which
a database of an earlier schema gains when opened."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aios.domain import TelemetryPoint
from aios.store.sqlite import MIGRATIONS, SqliteStore, SqliteTelemetryStore, migrate

T0 = datetime(2026, 3, 1, 8, 0, 0, 250, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def telemetry(store: SqliteStore) -> SqliteTelemetryStore:
    """The store's telemetry as the SQLite adapter (whose prune takes ``batch_rows``)."""
    assert isinstance(store.telemetry, SqliteTelemetryStore)
    return store.telemetry


def samples(device_id: str, count: int, metric: str = "t") -> list[TelemetryPoint]:
    """One sample a second from ``T0``."""
    return [
        TelemetryPoint(device_id=device_id, metric=metric, time=at(i), value=i)
        for i in range(count)
    ]


def stored(path: Path) -> list[tuple[str, str]]:
    """(device, time) of every telemetry row, read through a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return [tuple(r) for r in conn.execute("SELECT device_id, time FROM telemetry")]
    finally:
        conn.close()


def test_prune_deletes_in_batches_and_lets_another_writer_in_between(tmp_path: Path) -> None:
    # GIVEN 3 devices with 10 samples each (0..9 s) in a file, and a second store on the file
    path = tmp_path / "aios.db"
    store = SqliteStore(path)
    other = SqliteStore(path, busy_timeout_seconds=0.2)  # as another process would write
    try:
        store.telemetry.append(samples("a", 10) + samples("b", 10) + samples("c", 10))
        statements: list[str] = []
        interleaved: list[str] = []

        def trace(sql: str) -> None:
            statements.append(sql)
            # At the start of the second batch's transaction the first one has committed:
            # another connection can write now (it would time out were the lock held).
            if sql == "BEGIN IMMEDIATE" and sum(s.startswith("DELETE") for s in statements) == 1:
                other.telemetry.append(
                    [TelemetryPoint(device_id="a", metric="t", time=at(100), value=1)]
                )
                interleaved.append("appended")

        store._db._connection().set_trace_callback(trace)
        # WHEN the samples older than 4 s (12 rows) are pruned 5 rows per transaction
        deleted = telemetry(store).prune(at(4), batch_rows=5)
        store._db._connection().set_trace_callback(None)
    finally:
        other.close()
        store.close()
    # THEN 12 are deleted, in 3 transactions (5, 5, 2), each committed on its own
    assert deleted == 12
    deletes = [i for i, s in enumerate(statements) if s.startswith("DELETE")]
    assert len(deletes) == 3
    for i in deletes:
        assert statements[i - 1] == "BEGIN IMMEDIATE" and statements[i + 1] == "COMMIT"
    # AND the other writer's sample went in between two batches, and is kept
    assert interleaved == ["appended"]
    rows = stored(path)
    assert len(rows) == 30 - 12 + 1
    assert min(time for _, time in rows) == at(4).isoformat(timespec="microseconds")


def test_prune_of_exactly_a_batch_and_bad_batch_size(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "aios.db") as store:
        store.telemetry.append(samples("a", 10))
        assert telemetry(store).prune(at(5), batch_rows=5) == 5  # one full batch, one empty
        assert telemetry(store).prune(at(5), batch_rows=5) == 0
        assert [p.value for p in store.telemetry.query("a").items] == [5, 6, 7, 8, 9]
        with pytest.raises(ValueError, match="batch_rows"):
            telemetry(store).prune(at(9), batch_rows=0)


def test_prune_uses_the_time_index_which_an_older_database_gains(tmp_path: Path) -> None:
    # GIVEN a database of the schema before the time index, holding telemetry
    path = tmp_path / "aios.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, MIGRATIONS[:3])
    conn.execute(
        "INSERT INTO telemetry (device_id, metric, time, value, unit) VALUES (?, ?, ?, ?, ?)",
        ("a", "t", at(0).isoformat(timespec="microseconds"), 1.0, None),
    )
    conn.close()
    # WHEN it is opened by this version
    with SqliteStore(path) as store:
        # THEN the new migration added the index, and the prune's subquery searches it
        assert store.schema_version == len(MIGRATIONS) >= 4
        with store._db.read() as db:
            plan = " ".join(
                str(row["detail"])
                for row in db.execute(
                    "EXPLAIN QUERY PLAN SELECT device_id, metric, time FROM telemetry "
                    "WHERE time < ? ORDER BY time LIMIT 5",
                    ("x",),
                )
            )
        assert "telemetry_by_age" in plan and "time<?" in plan
        # AND the telemetry stored before is pruned like any
        assert store.telemetry.prune(at(1)) == 1
        assert store.telemetry.query("a").items == []
