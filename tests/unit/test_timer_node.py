"""``aios/timer@1``: schedules, cron validation and next fire times, ticks, start and stop."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from aios.catalog.base import EventRole
from aios.events.task import TaskServices
from aios.nodes import timer
from aios.nodes.timer import TimerConfig, TimerSource, build_trigger, crontab_day_of_week

BERLIN = ZoneInfo("Europe/Berlin")


class Ticks:
    """Collects emitted ticks; waits for a count with a bound."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """Return the ticks once there are ``count``; fail after ``timeout`` seconds."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.events) >= count, timeout)
        assert ok, f"expected {count} ticks within {timeout} s, got {len(self.events)}"
        return list(self.events)


def config(**raw: Any) -> TimerConfig:
    """Validate a raw timer config."""
    parsed = timer.NODE.parse_config(raw)
    assert isinstance(parsed, TimerConfig)
    return parsed


def fire_times(cfg: TimerConfig, after: datetime, count: int) -> list[datetime]:
    """Return the next ``count`` fire times of the schedule after ``after``."""
    trigger = build_trigger(cfg)
    times: list[datetime] = []
    previous = None
    now = after
    for _ in range(count):
        nxt = trigger.get_next_fire_time(previous, now)
        assert nxt is not None
        times.append(nxt)
        previous = now = nxt
    return times


@pytest.fixture
def running() -> Any:
    """Timer nodes appended here are stopped after the test even if it fails."""
    nodes: list[TimerSource] = []
    yield nodes
    for node in nodes:
        node.stop()


def test_node_type_is_an_event_source() -> None:
    """The manifest declares an event-tier input with one event output."""
    assert timer.NODE.event_role is EventRole.SOURCE
    assert timer.NODE.type_id == "aios/timer@1"
    assert [p.name for p in timer.NODE.manifest.outputs] == ["events"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cron": "* * * *"}, "Wrong number of fields; got 4, expected 5"),
        ({"cron": "0 8 * * 1-5 2026"}, "Wrong number of fields; got 6, expected 5"),
        ({"cron": "61 * * * *"}, "the last value (61) is higher than the maximum value (59)"),
        ({"cron": "0 24 * * *"}, "the last value (24) is higher than the maximum value (23)"),
        ({"cron": "0 0 * 13 *"}, "the last value (13) is higher than the maximum value (12)"),
        ({"cron": "*/0 * * * *"}, "Increment must be higher than 0"),
        ({"cron": "0 0 * * 8"}, "day of week '8' is not 0-7"),
        ({"cron": "0 0 * * 5-1"}, "day of week range '5-1' runs backwards"),
        ({"cron": "0 0 30 2 *"}, "never matches a date"),
        ({"cron": "0 8 * * *", "interval_seconds": 60}, "exactly one"),
        ({}, "exactly one"),
        ({"interval_seconds": 0.5}, "greater than or equal to 1"),
        ({"cron": "0 8 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "0 8 * * *", "timezone": "CET+1"}, "unknown time zone"),
        ({"cron": "0 8 * * *", "zone": "UTC"}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_bad_schedules(raw: dict[str, Any], message: str) -> None:
    """Bad cron expressions fail with APScheduler's message; other mistakes say what's wrong."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        timer.NODE.parse_config(raw)


def test_cron_fire_times_follow_the_zone_across_daylight_saving() -> None:
    """'30 8 * * 1-5' in Berlin is 07:30 UTC in winter and 06:30 UTC after the clocks change."""
    # GIVEN weekdays at 08:30 Berlin time, asked on Thursday 2025-03-27 at 09:00 CET
    cfg = config(cron="30 8 * * 1-5", timezone="Europe/Berlin")
    after = datetime(2025, 3, 27, 8, 0, tzinfo=UTC)  # Thursday 09:00 CET
    # WHEN the next three fire times are computed
    times = fire_times(cfg, after, 3)
    # THEN Friday (CET, UTC+1), then Monday and Tuesday (CEST, UTC+2) — no weekend
    assert [t.astimezone(UTC) for t in times] == [
        datetime(2025, 3, 28, 7, 30, tzinfo=UTC),
        datetime(2025, 3, 31, 6, 30, tzinfo=UTC),
        datetime(2025, 4, 1, 6, 30, tzinfo=UTC),
    ]
    assert all(t.astimezone(BERLIN).hour == 8 and t.astimezone(BERLIN).minute == 30 for t in times)


def test_cron_day_of_week_numbers_are_crontab_numbers() -> None:
    """0 and 7 are Sunday and 1 is Monday, as in crontab (APScheduler alone counts from Monday)."""
    monday = datetime(2026, 1, 5, tzinfo=UTC)
    sunday_0 = fire_times(config(cron="0 9 * * 0"), monday, 2)
    sunday_7 = fire_times(config(cron="0 9 * * 7"), monday, 1)
    every_other = fire_times(config(cron="0 9 * * */2"), monday, 4)
    assert [t.strftime("%a") for t in sunday_0] == ["Sun", "Sun"]
    assert sunday_7[0] == sunday_0[0]
    assert [t.strftime("%a") for t in every_other] == ["Tue", "Thu", "Sat", "Sun"]
    assert crontab_day_of_week("1-5") == "mon,tue,wed,thu,fri"
    assert crontab_day_of_week("sun-sat") == "*"


def test_cron_day_of_month_or_day_of_week() -> None:
    """With both day fields restricted, a day matching either fires (crontab(5))."""
    # '0 0 1 * 1': the 1st of the month and every Monday
    times = fire_times(config(cron="0 0 1 * 1"), datetime(2025, 9, 20, tzinfo=UTC), 4)
    assert [t.date().isoformat() for t in times] == [
        "2025-09-22",
        "2025-09-29",
        "2025-10-01",
        "2025-10-06",
    ]


def test_interval_fires_and_stop_ends_it(running: list[TimerSource]) -> None:
    """A 1 s interval emits ticks about a second apart; after stop no tick follows."""
    # GIVEN a timer every second
    node = TimerSource(config(interval_seconds=1, source_id="heartbeat"), TaskServices())
    running.append(node)
    ticks = Ticks()
    # WHEN it runs for two ticks
    node.start(ticks)
    assert node.next_fire_time is not None
    first, second = ticks.wait_for(2, timeout=5)[:2]
    # THEN each tick names its run and the schedule
    assert first["event_type"] == second["event_type"] == "timer.tick"
    assert first["source_id"] == "heartbeat"
    assert first["data"]["schedule"] == "every 1 s"
    assert first["data"]["timezone"] == "UTC"
    s1 = datetime.fromisoformat(first["data"]["scheduled_time"])
    s2 = datetime.fromisoformat(second["data"]["scheduled_time"])
    assert s2 - s1 == timedelta(seconds=1)
    assert datetime.fromisoformat(first["time"]) >= s1
    assert first["event_id"] != second["event_id"]
    # WHEN it is stopped (twice)
    node.stop()
    node.stop()
    count = len(ticks.events)
    time.sleep(1.3)
    # THEN no further tick arrives and the scheduler is gone
    assert len(ticks.events) == count
    assert node.next_fire_time is None
    assert node.stats["fired"] == count


def test_missed_runs_are_coalesced_into_one_tick(running: list[TimerSource]) -> None:
    """Several runs missed within the grace time give one tick, for the latest of them."""
    # GIVEN an every-minute timer whose next run is set three minutes in the past (as after
    # the machine slept)
    node = TimerSource(config(cron="* * * * *", misfire_grace_seconds=90), TaskServices())
    running.append(node)
    ticks = Ticks()
    node.start(ticks)
    node._scheduler.modify_job(
        TimerSource.JOB_ID, next_run_time=datetime.now(UTC) - timedelta(minutes=3)
    )
    # WHEN the scheduler wakes up
    [tick] = ticks.wait_for(1, timeout=3)
    time.sleep(0.3)
    # THEN exactly one tick came, for a whole minute less than a minute before it ran
    assert len(ticks.events) == 1
    scheduled = datetime.fromisoformat(tick["data"]["scheduled_time"])
    fired = datetime.fromisoformat(tick["time"])
    assert scheduled.second == 0 and scheduled.microsecond == 0
    assert timedelta(0) <= fired - scheduled < timedelta(minutes=1)


def test_runs_later_than_the_grace_time_are_skipped_and_counted(
    running: list[TimerSource],
) -> None:
    """A run more than misfire_grace_seconds late is not emitted; it is counted as missed."""
    node = TimerSource(config(interval_seconds=3600, misfire_grace_seconds=1), TaskServices())
    running.append(node)
    ticks = Ticks()
    node.start(ticks)
    node._scheduler.modify_job(
        TimerSource.JOB_ID, next_run_time=datetime.now(UTC) - timedelta(seconds=30)
    )
    deadline = time.monotonic() + 3
    while node.stats["missed"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert node.stats == {"fired": 0, "missed": 1, "failed": 0}
    assert ticks.events == []


def test_tick_ids_name_the_scheduled_run() -> None:
    """The same scheduled run gives the same event id whenever it is emitted."""
    node = TimerSource(config(cron="0 8 * * *", timezone="Europe/Berlin"), TaskServices())
    run = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    a = node.to_event(run, run + timedelta(milliseconds=3))
    b = node.to_event(run, run + timedelta(seconds=2))
    c = node.to_event(run + timedelta(days=1), run + timedelta(days=1))
    assert a["event_id"] == b["event_id"] != c["event_id"]
    assert a["data"] == {
        "scheduled_time": "2026-01-05T07:00:00Z",
        "schedule": "0 8 * * *",
        "timezone": "Europe/Berlin",
    }


def test_a_failing_pipeline_does_not_stop_the_timer(running: list[TimerSource]) -> None:
    """When emit raises the tick is counted as failed and the next one still comes."""
    calls: list[dict[str, Any]] = []
    done = threading.Event()

    def emit(event: dict[str, Any]) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("pipeline busy")
        done.set()

    node = TimerSource(config(interval_seconds=1), TaskServices())
    running.append(node)
    node.start(emit)
    assert done.wait(5)
    assert node.stats["failed"] == 1 and node.stats["fired"] >= 1
