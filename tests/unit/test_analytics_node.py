"""The analytics node: sliding-window count, rate, min, max, mean on event times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aios.events.state import MemoryStateStore, SqliteStateStore, StateStore
from aios.events.task import PermanentError, TaskRequest, TaskServices
from aios.nodes.analytics import NODE, AnalyticsNode

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def build(raw: dict[str, Any], state: StateStore | None = None) -> AnalyticsNode:
    """Build an analytics node on a state store (a new in-memory one by default)."""
    services = TaskServices(state=state or MemoryStateStore(), now=lambda: T0)
    return NODE.implementation(NODE.parse_config(raw), services)  # type: ignore[no-any-return]


def at(
    seconds: float, value: Any = None, source: str = "cam-1", eid: str | None = None, **fields: Any
) -> dict[str, Any]:
    """An event ``seconds`` after T0 carrying ``dwell_seconds = value``."""
    when = (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return {
        "event_id": eid or f"{source}-{seconds}",
        "event_type": "loitering",
        "time": when,
        "source_id": source,
        "dwell_seconds": value,
        **fields,
    }


def stats(node: AnalyticsNode, ev: dict[str, Any]) -> dict[str, Any]:
    """Run the node and return what it wrote at ``data.analytics``."""
    out = node.run(TaskRequest(node_id="an", event=ev, context={"pipeline": "site"}))
    result: dict[str, Any] = out["data"]["analytics"]
    return result


def test_count_rate_min_max_mean_over_the_window() -> None:
    """Four events within a minute: exact statistics of their values."""
    # GIVEN a 60 s window on dwell_seconds
    node = build({"field": "dwell_seconds", "window_seconds": 60})
    # WHEN four events arrive within 30 s
    for t, v in ((0, 4.0), (10, 8.0), (20, 2.0)):
        stats(node, at(t, v))
    result = stats(node, at(30, 6.0))
    # THEN the figures cover all four
    assert result == {
        "window_seconds": 60,
        "count": 4,
        "rate_per_minute": 4.0,
        "min": 2.0,
        "max": 8.0,
        "mean": 5.0,
        "value_count": 4,
        "group": "cam-1",
    }


def test_events_older_than_the_window_leave_it() -> None:
    """The window ends at each event's time: (t - window, t]."""
    node = build({"field": "dwell_seconds", "window_seconds": 60})
    stats(node, at(0, 100.0))
    stats(node, at(30, 1.0))
    # at t=60 the event at t=0 is exactly one window old: outside
    at_60 = stats(node, at(60, 3.0))
    at_95 = stats(node, at(95, 5.0))
    assert (at_60["count"], at_60["max"], at_60["mean"]) == (2, 3.0, 2.0)
    assert (at_95["count"], at_95["min"], at_95["max"]) == (2, 3.0, 5.0)
    assert at_95["rate_per_minute"] == 2.0


def test_rate_is_events_per_minute_over_the_window_length() -> None:
    """Ten events in a 5-minute window: 2 per minute."""
    node = build({"window_seconds": 300})
    for i in range(10):
        result = stats(node, at(i * 20))
    assert result["count"] == 10 and result["rate_per_minute"] == pytest.approx(2.0)
    assert result["min"] is None and result["mean"] is None and result["value_count"] == 0


def test_groups_are_kept_apart_by_the_group_template() -> None:
    """Default: per source; a zone template groups across cameras."""
    per_source = build({})
    stats(per_source, at(0, source="cam-1"))
    stats(per_source, at(1, source="cam-1"))
    assert stats(per_source, at(2, source="cam-2"))["count"] == 1
    per_zone = build({"group_by": "{{ event.zone }}"})
    stats(per_zone, at(0, source="cam-1", zone="dock"))
    result = stats(per_zone, at(1, source="cam-2", zone="dock"))
    assert (result["count"], result["group"]) == (2, "dock")


def test_a_retried_event_is_counted_once() -> None:
    """The same event_id twice (a Task retry) adds one sample."""
    node = build({"field": "dwell_seconds"})
    stats(node, at(0, 1.0, eid="a"))
    stats(node, at(5, 3.0, eid="b"))
    again = stats(node, at(5, 3.0, eid="b"))
    assert (again["count"], again["mean"]) == (2, 2.0)


def test_events_without_a_numeric_value_are_counted_but_carry_no_value() -> None:
    """Missing, text and boolean values do not enter min/max/mean."""
    node = build({"field": "data.temperature"})
    stats(node, at(0, data={"temperature": 20}))
    stats(node, at(1, data={"temperature": "hot"}))
    stats(node, at(2, data={"temperature": True}))
    result = stats(node, at(3, data={}))
    assert (result["count"], result["value_count"], result["mean"]) == (4, 1, 20.0)


def test_times_with_different_utc_offsets_are_the_same_instants() -> None:
    """10:00:30+01:00 is 09:00:30Z and 04:00:39-05:00 is 09:00:39Z."""
    # GIVEN a 10 s window
    node = build({"window_seconds": 10})
    # WHEN three events carry times with different offsets
    stats(node, {"event_id": "a", "time": "2026-01-05T09:00:25Z", "source_id": "c"})
    second = stats(node, {"event_id": "b", "time": "2026-01-05T10:00:30+01:00", "source_id": "c"})
    third = stats(node, {"event_id": "c", "time": "2026-01-05T04:00:39-05:00", "source_id": "c"})
    # THEN windows are taken on the instants: (20, 30] holds 25 and 30; (29, 39] 30 and 39
    assert second["count"] == 2
    assert third["count"] == 2


def test_late_events_are_placed_by_their_own_time() -> None:
    """An event delivered late gets the window ending at its time, not the newest one."""
    # GIVEN events at 0, 50 and 100 s (the one at 0 has left the kept window)
    node = build({"field": "dwell_seconds", "window_seconds": 60})
    for t, v in ((0, 1.0), (50, 2.0), (100, 3.0)):
        stats(node, at(t, v))
    # WHEN an event of t=70 arrives late, then one of t=101, then one of t=20
    late = stats(node, at(70, 10.0))  # window (10, 70]: 50 and itself
    after = stats(node, at(101, 4.0))  # window (41, 101]: 50, 70, 100, 101
    too_late = stats(node, at(20, 7.0))  # older than what is kept: only itself
    # THEN each sees the window ending at its own time
    assert (late["count"], late["mean"]) == (2, 6.0)
    assert (after["count"], after["min"], after["max"]) == (4, 2.0, 10.0)
    assert (too_late["count"], too_late["mean"]) == (1, 7.0)


def test_samples_are_bounded_per_group() -> None:
    """Above max_samples events per window the count saturates at the bound."""
    node = build({"window_seconds": 3600, "max_samples": 10})
    for i in range(15):
        result = stats(node, at(i))
    assert result["count"] == 10


def test_state_is_shared_through_the_store(tmp_path: Path) -> None:
    """A node built again on the same SQLite store (a restart) continues the window."""
    path = tmp_path / "state.db"
    first = SqliteStateStore(path)
    stats(build({"field": "dwell_seconds"}, first), at(0, 2.0))
    first.close()
    second = SqliteStateStore(path)
    result = stats(build({"field": "dwell_seconds"}, second), at(10, 4.0))
    second.close()
    assert (result["count"], result["mean"]) == (2, 3.0)


def test_event_without_time_uses_the_service_clock_and_a_bad_time_fails() -> None:
    """No time: now; an unparseable time: a permanent error naming it."""
    node = build({})
    assert stats(node, {"event_id": "x", "source_id": "c"})["count"] == 1
    with pytest.raises(PermanentError, match="time 'yesterday' is not an ISO 8601 timestamp"):
        stats(node, {"event_id": "y", "source_id": "c", "time": "yesterday"})


def test_result_field_is_configurable_and_the_event_is_kept() -> None:
    """Statistics go where result_field says; other fields pass through."""
    node = build({"result_field": "stats"})
    out = node.run(TaskRequest(node_id="an", event=at(0, zone="dock"), context={}))
    assert out["stats"]["count"] == 1 and out["zone"] == "dock" and "data" not in out


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"window_seconds": 0}, r"window_seconds\n.*greater than or equal to 1"),
        ({"window_seconds": 10 * 86_400}, r"window_seconds\n.*less than or equal to 604800"),
        ({"max_samples": 100_000}, r"max_samples\n.*less than or equal to 5000"),
        ({"field": "data.temp value"}, r"field\n.*pattern"),
        ({"group_by": "{{ event.zone"}, r"group_by\n.*template syntax error"),
        ({"window": 60}, r"window\n.*Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_rejected_naming_the_field(raw: dict[str, Any], message: str) -> None:
    """Out-of-bounds windows, bad paths and typos fail validation."""
    with pytest.raises(ValidationError, match=message):
        NODE.parse_config(raw)
