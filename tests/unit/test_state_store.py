"""Contract of the state store port, run against every adapter (memory and SQLite)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aios.events.state import MemoryStateStore, SqliteStateStore, StateStore

NS = "cooldown/p/notify"
THREADS = 20


class FakeClock:
    """Wall-clock seconds that only move when a test says so."""

    def __init__(self, start: float = 1_767_600_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    """Return a clock the test moves by hand."""
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[StateStore]:
    """Yield each adapter, on the fake clock."""
    if request.param == "memory":
        yield MemoryStateStore(clock=clock)
        return
    sqlite_store = SqliteStateStore(tmp_path / "state" / "state.db", clock=clock)
    yield sqlite_store
    sqlite_store.close()


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` on ``count`` threads released at once; return results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=5)
            results[i] = work(i)
        except BaseException as err:  # surfaced to the test below
            errors.append(err)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a worker thread hung"
    assert not errors, errors
    return results


# --- get / put / delete -----------------------------------------------------------------


def test_get_of_a_missing_key_is_none(store: StateStore) -> None:
    """A key never written reads as None."""
    assert store.get(NS, "cam1") is None


def test_put_then_get_returns_the_value_and_put_overwrites(store: StateStore) -> None:
    """put stores a value; a second put replaces it."""
    # GIVEN a stored value
    store.put(NS, "cam1", "first")
    assert store.get(NS, "cam1") == "first"
    # WHEN it is written again
    store.put(NS, "cam1", "second")
    # THEN the new value is read back
    assert store.get(NS, "cam1") == "second"


def test_namespaces_keep_equal_keys_apart(store: StateStore) -> None:
    """The same key in two namespaces holds two values."""
    store.put("dedup/p/a", "k", 1)
    store.put("dedup/p/b", "k", 2)
    assert (store.get("dedup/p/a", "k"), store.get("dedup/p/b", "k")) == (1, 2)


def test_delete_removes_only_that_key_and_ignores_missing_keys(store: StateStore) -> None:
    """delete drops one key; deleting an absent key is not an error."""
    # GIVEN two keys
    store.put(NS, "cam1", 1)
    store.put(NS, "cam2", 2)
    # WHEN one is deleted, twice, and an unknown key too
    store.delete(NS, "cam1")
    store.delete(NS, "cam1")
    store.delete("other", "nothing")
    # THEN only that one is gone, and it can be claimed again
    assert store.get(NS, "cam1") is None
    assert store.get(NS, "cam2") == 2
    assert store.put_if_absent(NS, "cam1", "again") is True


def test_json_values_round_trip(store: StateStore) -> None:
    """Nested JSON values come back equal; tuples come back as lists."""
    value = {
        "count": 3,
        "mean": 0.125,
        "ok": True,
        "none": None,
        "text": "zona de carga — câmara 2",
        "items": [1, "two", {"three": [3.0]}],
    }
    store.put(NS, "v", value)
    store.put(NS, "t", (1, 2))
    assert store.get(NS, "v") == value
    assert store.get(NS, "t") == [1, 2]


def test_a_read_value_is_a_copy(store: StateStore) -> None:
    """Changing a value that was read does not change the stored one."""
    store.put(NS, "v", {"items": [1]})
    read = store.get(NS, "v")
    assert read is not None
    read["items"].append(2)
    assert store.get(NS, "v") == {"items": [1]}


def test_a_value_that_is_not_json_is_refused_and_nothing_is_stored(store: StateStore) -> None:
    """put of a non-JSON value raises TypeError and leaves the key absent."""
    with pytest.raises(TypeError):
        store.put(NS, "bad", object())
    with pytest.raises(TypeError):
        store.update(NS, "bad", lambda _old: {1, 2})
    assert store.get(NS, "bad") is None


# --- TTL --------------------------------------------------------------------------------


def test_a_value_expires_after_its_ttl(store: StateStore, clock: FakeClock) -> None:
    """A value with a TTL is present until the TTL has passed, then absent."""
    # GIVEN a value kept for 10 s
    store.put(NS, "cam1", "busy", ttl_seconds=10)
    # WHEN 9.5 s pass THEN it is still there
    clock.advance(9.5)
    assert store.get(NS, "cam1") == "busy"
    # WHEN the 10 s are up THEN it reads as absent
    clock.advance(0.5)
    assert store.get(NS, "cam1") is None


def test_a_value_without_ttl_never_expires(store: StateStore, clock: FakeClock) -> None:
    """ttl_seconds=None keeps the value however much time passes."""
    store.put(NS, "k", "kept")
    clock.advance(10 * 365 * 86_400)
    assert store.get(NS, "k") == "kept"


def test_put_if_absent_succeeds_over_an_expired_value(store: StateStore, clock: FakeClock) -> None:
    """An expired value counts as absent for put_if_absent."""
    # GIVEN a claim that is still live, then expires
    assert store.put_if_absent(NS, "cam1", "first", ttl_seconds=5) is True
    assert store.put_if_absent(NS, "cam1", "second", ttl_seconds=5) is False
    clock.advance(5)
    # WHEN it is claimed again
    claimed = store.put_if_absent(NS, "cam1", "third", ttl_seconds=5)
    # THEN the claim succeeds with the new value and a fresh TTL
    assert claimed is True
    assert store.get(NS, "cam1") == "third"
    clock.advance(4.9)
    assert store.get(NS, "cam1") == "third"


def test_update_sees_an_expired_value_as_none(store: StateStore, clock: FakeClock) -> None:
    """update's function gets None for an expired key, and the new TTL applies."""
    store.put(NS, "count", 41, ttl_seconds=1)
    clock.advance(2)
    seen: list[Any] = []

    def restart(old: Any) -> int:
        seen.append(old)
        return 1

    new = store.update(NS, "count", restart, ttl_seconds=30)
    assert (seen, new, store.get(NS, "count")) == ([None], 1, 1)
    clock.advance(30)
    assert store.get(NS, "count") is None


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
def test_an_invalid_ttl_is_rejected_and_nothing_is_stored(store: StateStore, ttl: float) -> None:
    """A TTL that is not a positive finite number raises ValueError on every write."""
    with pytest.raises(ValueError, match="ttl_seconds"):
        store.put(NS, "k", 1, ttl_seconds=ttl)
    with pytest.raises(ValueError, match="ttl_seconds"):
        store.put_if_absent(NS, "k", 1, ttl_seconds=ttl)
    with pytest.raises(ValueError, match="ttl_seconds"):
        store.update(NS, "k", lambda _old: 1, ttl_seconds=ttl)
    assert store.get(NS, "k") is None
    # and the store still works afterwards
    assert store.put_if_absent(NS, "k", 2, ttl_seconds=1) is True


# --- conditional writes -----------------------------------------------------------------


def test_put_if_absent_keeps_the_first_value(store: StateStore) -> None:
    """put_if_absent stores once and refuses while the key is present."""
    assert store.put_if_absent(NS, "e1", "first") is True
    assert store.put_if_absent(NS, "e1", "second") is False
    assert store.get(NS, "e1") == "first"


def test_a_stored_null_counts_as_present(store: StateStore) -> None:
    """A key holding JSON null is present: put_if_absent does not overwrite it."""
    store.put(NS, "k", None)
    assert store.put_if_absent(NS, "k", "other") is False
    assert store.get(NS, "k") is None


def test_only_one_of_twenty_racing_put_if_absent_wins(store: StateStore) -> None:
    """Twenty threads claiming one key at once: exactly one succeeds, its value is kept."""
    # WHEN 20 threads claim the same key at the same moment
    won = run_together(THREADS, lambda i: store.put_if_absent(NS, "cam1", f"t{i}", 60))
    # THEN exactly one claim succeeded and the stored value is the winner's
    assert won.count(True) == 1
    assert store.get(NS, "cam1") == f"t{won.index(True)}"


def test_update_is_atomic_under_twenty_threads(store: StateStore) -> None:
    """20 threads × 50 increments through update give exactly 1000."""

    def add_one(old: int | None) -> int:
        time.sleep(0)  # let other threads run between read and write, as a race would
        return (old or 0) + 1

    def increment(_: int) -> None:
        for _ in range(50):
            store.update(NS, "count", add_one)

    run_together(THREADS, increment)
    assert store.get(NS, "count") == THREADS * 50


def test_update_returns_the_new_value(store: StateStore) -> None:
    """update passes the old value (None when absent) and returns fn's result."""

    def append_two(old: Any) -> list[Any]:
        return [*old, 2]

    assert store.update(NS, "k", lambda old: [old]) == [None]
    assert store.update(NS, "k", append_two) == [None, 2]


def test_update_whose_function_raises_keeps_the_old_value(store: StateStore) -> None:
    """An exception in update's function leaves the value as it was."""
    store.put(NS, "k", {"n": 1})

    def broken(old: Any) -> Any:
        raise RuntimeError("boom")

    def bump(old: Any) -> Any:
        return {"n": old["n"] + 1}

    with pytest.raises(RuntimeError, match="boom"):
        store.update(NS, "k", broken)
    assert store.get(NS, "k") == {"n": 1}
    assert store.update(NS, "k", bump) == {"n": 2}


# --- SQLite only ------------------------------------------------------------------------


def test_sqlite_values_survive_closing_and_reopening(tmp_path: Path, clock: FakeClock) -> None:
    """Values (and their expiry) written before close are read after reopening the file."""
    path = tmp_path / "state.db"
    # GIVEN values written and the store closed
    first = SqliteStateStore(path, clock=clock)
    first.put(NS, "kept", {"n": 1})
    first.put(NS, "short", "x", ttl_seconds=10)
    first.update(NS, "count", lambda old: (old or 0) + 5)
    first.close()
    # WHEN the file is opened again
    second = SqliteStateStore(path, clock=clock)
    try:
        # THEN the values are there and the TTL still runs
        assert second.get(NS, "kept") == {"n": 1}
        assert second.get(NS, "count") == 5
        assert second.put_if_absent(NS, "short", "y") is False
        clock.advance(10)
        assert second.get(NS, "short") is None
    finally:
        second.close()


def test_sqlite_crash_mid_update_leaves_the_old_value_on_disk(
    tmp_path: Path, clock: FakeClock
) -> None:
    """An update whose function raises is rolled back, also for a later reader of the file."""
    path = tmp_path / "state.db"
    store = SqliteStateStore(path, clock=clock)
    store.put(NS, "k", "old")

    def crash(old: Any) -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.update(NS, "k", crash)
    # the connection is not left inside a transaction: writes still work and persist
    store.put(NS, "other", 1)
    store.close()
    reopened = SqliteStateStore(path, clock=clock)
    try:
        assert reopened.get(NS, "k") == "old"
        assert reopened.get(NS, "other") == 1
    finally:
        reopened.close()


def test_sqlite_purges_expired_rows_on_write(tmp_path: Path, clock: FakeClock) -> None:
    """Expired rows are deleted from the file by the next write."""
    path = tmp_path / "state.db"
    store = SqliteStateStore(path, clock=clock)
    try:
        for i in range(5):
            store.put("dedup/p/n", f"e{i}", True, ttl_seconds=1)
        clock.advance(2)
        store.put(NS, "fresh", 1)
        with sqlite3.connect(path) as peek:
            (rows,) = peek.execute("SELECT COUNT(*) FROM state").fetchone()
        assert rows == 1
    finally:
        store.close()


def test_sqlite_two_stores_on_one_file_share_claims(tmp_path: Path, clock: FakeClock) -> None:
    """A claim made through one connection is seen by another on the same file."""
    path = tmp_path / "state.db"
    a = SqliteStateStore(path, clock=clock)
    b = SqliteStateStore(path, clock=clock)
    try:
        assert a.put_if_absent(NS, "cam1", "a", ttl_seconds=60) is True
        assert b.put_if_absent(NS, "cam1", "b", ttl_seconds=60) is False
        assert b.get(NS, "cam1") == "a"
    finally:
        a.close()
        b.close()
