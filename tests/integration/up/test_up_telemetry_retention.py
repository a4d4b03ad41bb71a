"""Telemetry retention in ``aios up``: the scheduled prune job on a real SQLite store, run by
the :class:`~aios.up.server.Scheduler` at once and then every interval, its failures logged
and never fatal."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from up_support import wait_until

from aios.config import Settings
from aios.domain import TelemetryPoint
from aios.store.sqlite import SqliteStore
from aios.up.server import Scheduler, telemetry_pruner

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def sample(days_ago: float, device_id: str = "s1") -> TelemetryPoint:
    return TelemetryPoint(
        device_id=device_id, metric="t", time=NOW - timedelta(days=days_ago), value=days_ago
    )


def test_prune_job_deletes_what_is_older_than_the_retention_and_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN samples 40, 31, 29 and 1 days old (two devices) and a 30-day retention
    with SqliteStore(tmp_path / "aios.db") as store:
        store.telemetry.append([sample(40), sample(31, "s2"), sample(29), sample(1, "s2")])
        job = telemetry_pruner(store, 30, clock=lambda: NOW)
        # WHEN the job runs
        with caplog.at_level(logging.INFO, logger="aios.up.server"):
            assert job() == 2
        # THEN the two older than 30 days are gone, the rest kept
        assert [p.value for p in store.telemetry.query("s1").items] == [29]
        assert [p.value for p in store.telemetry.query("s2").items] == [1]
        # AND it logged how many, and before when
        (record,) = [r for r in caplog.records if r.getMessage() == "telemetry pruned"]
        assert record.deleted == 2  # type: ignore[attr-defined]
        assert record.before == (NOW - timedelta(days=30)).isoformat()  # type: ignore[attr-defined]
        # AND a second run finds nothing more
        assert job() == 0
    with pytest.raises(ValueError, match="telemetry_retention_days"):
        telemetry_pruner(store, 0)


def test_scheduler_prunes_at_once_then_each_interval(tmp_path: Path) -> None:
    # GIVEN an old sample, and a scheduler running the job every 0.1 s with a moving clock
    now = [NOW]
    with SqliteStore(tmp_path / "aios.db") as store:
        store.telemetry.append([sample(31), sample(10)])
        scheduler = Scheduler(
            [("telemetry.prune", telemetry_pruner(store, 30, clock=lambda: now[0]))],
            interval=0.1,
            name="telemetry-prune",
        )
        scheduler.start()
        try:
            # THEN the first tick prunes at once
            wait_until(lambda: len(store.telemetry.query("s1").items) == 1, what="first prune")
            # AND a later tick prunes what has aged past the retention since
            now[0] = NOW + timedelta(days=25)
            wait_until(lambda: store.telemetry.query("s1").items == [], what="later prune")
        finally:
            scheduler.stop()
        assert not scheduler._thread.is_alive()


def test_a_failing_prune_is_logged_and_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a store that fails every call (closed)
    store = SqliteStore(tmp_path / "aios.db")
    store.close()
    scheduler = Scheduler(
        [("telemetry.prune", telemetry_pruner(store, 30, clock=lambda: NOW))], interval=0.05
    )
    # WHEN the scheduler runs the job a few times
    with caplog.at_level(logging.ERROR, logger="aios.up.server"):
        scheduler.start()
        try:
            wait_until(
                lambda: sum(r.getMessage() == "scheduled job failed" for r in caplog.records) >= 2,
                what="two failed ticks",
            )
            # THEN each failure is logged with the job's name and the scheduler keeps going
            assert scheduler._thread.is_alive()
        finally:
            scheduler.stop()
    failed = [r for r in caplog.records if r.getMessage() == "scheduled job failed"]
    assert {r.job for r in failed} == {"telemetry.prune"}  # type: ignore[attr-defined]
    assert all(r.exc_info is not None for r in failed)


def test_retention_setting_defaults_to_30_days_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).telemetry_retention_days == 30
    monkeypatch.setenv("AIOS_TELEMETRY_RETENTION_DAYS", "0.5")
    assert Settings(_env_file=None).telemetry_retention_days == 0.5
    monkeypatch.setenv("AIOS_TELEMETRY_RETENTION_DAYS", "0")
    with pytest.raises(ValueError, match="telemetry_retention_days"):
        Settings(_env_file=None)
