"""Ingestion and evaluation under hostile or broken input: too-deep JSON, partial writes,
content in logs, clocks in the future, a device whose evaluation fails."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from fleet_support import T0, Env, device
from pydantic import BaseModel, ValidationError

from aios.domain import MAX_JSON_DEPTH, AlertRule, AlertRuleKind, DeviceStatus
from aios.fleet.ingest import handle_message
from aios.fleet.service import STATUS_KEY, InvalidRequest
from aios.messages import (
    MAX_CLOCK_SKEW,
    CommandRequest,
    CommandResponse,
    ConfigReport,
    DesiredConfig,
    DeviceEventItem,
    DeviceEventsMessage,
    Heartbeat,
    Telemetry,
)


def nested(levels: int) -> dict[str, Any]:
    """An object nested ``levels`` deep: {"a": {"a": ... {} }}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def body(**fields: Any) -> bytes:
    return json.dumps({"message_id": "m1", "time": T0.isoformat()} | fields).encode()


def test_deep_config_report_is_refused_and_the_fleet_stays_readable(env: Env) -> None:
    """GIVEN a device with desired config v1 WHEN it sends config.reported with a config
    250 levels deep (a 677-byte message) THEN the message is invalid, the device keeps
    its reported config and stays readable, and evaluation works."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.set_desired_config("c1", {"fps": 5}, expected_version=None, actor=None)
    config: Any = []
    for _ in range(248):
        config = [config]
    report = {"version": 1, "config": {"a": config}}  # 250 levels of objects and arrays
    deep = body(events=[{"type": "config.reported", "data": report}])
    assert len(deep) < 1000
    outcome = handle_message(env.fleet, "dt/aios/c1/events", deep)
    assert outcome.reason == "invalid", outcome
    assert outcome.detail.startswith("events.0.data: value_error (Value error, nested deeper")
    stored = env.fleet.get("c1")
    assert stored is not None and stored.reported_version == 0
    assert env.fleet.evaluate().devices == 1
    # at the limit it is taken
    fits = body(
        message_id="m2",
        events=[
            {"type": "config.reported", "data": {"version": 1, "config": nested(MAX_JSON_DEPTH)}}
        ],
    )
    assert handle_message(env.fleet, "dt/aios/c1/events", fits).accepted
    stored = env.fleet.get("c1")
    assert stored is not None and stored.reported_version == 1


def test_deep_event_data_is_refused_and_history_stays_readable(env: Env) -> None:
    """GIVEN a door.opened event whose data is 250 levels deep THEN invalid, and the
    device's events can still be listed."""
    env.fleet.register(device("c1"), actor=None)
    deep = body(events=[{"type": "door.opened", "data": nested(250)}])
    outcome = handle_message(env.fleet, "dt/aios/c1/events", deep)
    assert outcome.reason == "invalid" and "events.0" in outcome.detail
    assert "nested deeper" in outcome.detail
    types = [e.type for e in env.store.device_events.list("c1").items]
    assert "door.opened" not in types


BASE = {"message_id": "m1", "time": "2026-03-02T08:00:00Z"}


@pytest.mark.parametrize(
    ("model", "fields", "deep_field"),
    [
        (CommandResponse, BASE | {"request_id": "r", "ok": True}, "result"),
        (
            CommandRequest,
            BASE
            | {
                "request_id": "r",
                "device_id": "c1",
                "name": "reboot",
                "deadline": "2026-03-02T08:01:00Z",
            },
            "params",
        ),
        (DesiredConfig, BASE | {"device_id": "c1", "version": 1}, "config"),
        (ConfigReport, {"version": 1}, "config"),
    ],
)
def test_free_form_message_fields_are_depth_checked(
    model: type[BaseModel], fields: dict[str, Any], deep_field: str
) -> None:
    """Every free-form field of the message models takes JSON nested up to the limit and
    refuses deeper, naming the field."""
    model.model_validate(fields | {deep_field: nested(MAX_JSON_DEPTH)})
    with pytest.raises(ValidationError) as refused:
        model.model_validate(fields | {deep_field: nested(MAX_JSON_DEPTH + 1)})
    assert refused.value.errors()[0]["loc"] == (deep_field,)


def test_event_data_is_depth_checked() -> None:
    """An event's data is stored as is: at most MAX_JSON_DEPTH levels. A config report's
    data holds the config one level down, so it may be one level deeper."""
    DeviceEventItem(type="door.opened", data=nested(MAX_JSON_DEPTH))
    with pytest.raises(ValidationError, match="nested deeper"):
        DeviceEventItem(type="door.opened", data=nested(MAX_JSON_DEPTH + 1))
    DeviceEventItem(type="config.reported", data={"version": 1, "c": nested(MAX_JSON_DEPTH)})
    with pytest.raises(ValidationError, match="nested deeper"):
        DeviceEventItem(
            type="config.reported", data={"version": 1, "c": nested(MAX_JSON_DEPTH + 1)}
        )


def test_an_events_message_with_one_unstorable_item_writes_nothing(env: Env) -> None:
    """GIVEN a message (bypassing message validation) whose first event is a valid
    config.reported and whose second has data too deep to store WHEN recorded THEN
    InvalidRequest and nothing is written: no reported config, no event."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.set_desired_config("c1", {"fps": 5}, expected_version=None, actor=None)
    before = {e.id for e in env.store.device_events.list("c1").items}
    report = DeviceEventItem(type="config.reported", data={"version": 1})
    bad = DeviceEventItem.model_construct(
        type="door.opened", severity="info", message="", data=nested(40), time=None, id=None
    )
    msg = DeviceEventsMessage.model_construct(
        schema_version=1,
        message_id="m1",
        time=T0,
        device_id=None,
        events=[report, bad],
    )
    with pytest.raises(InvalidRequest, match=r"events\.1"):
        env.fleet.record_events("c1", msg)
    stored = env.fleet.get("c1")
    assert stored is not None and stored.reported_version == 0 and stored.last_seen is None
    assert {e.id for e in env.store.device_events.list("c1").items} == before


def test_refusals_and_logs_hold_no_message_content(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    """GIVEN a config.reported whose data is wrong and holds a secret-looking string THEN
    the refusal names field paths and error types, not the value (no pydantic
    ``input_value``); GIVEN a store failure whose text quotes content THEN the log has
    the exception type only."""
    env.fleet.register(device("c1"), actor=None)
    caplog.set_level(logging.DEBUG)
    secret = "hunter2-secret"
    bad = body(events=[{"type": "config.reported", "data": {"version": secret, "extra": secret}}])
    outcome = handle_message(env.fleet, "dt/aios/c1/events", bad)
    assert outcome.reason == "invalid"
    assert "events.0.data" in outcome.detail
    assert secret not in outcome.detail and "input_value" not in outcome.detail

    class Failing:
        def append(self, points: Any) -> None:
            raise ValueError(f"cannot store {secret}")

        def latest(self, device_id: str) -> dict[str, Any]:
            return {}

    env.store.telemetry = Failing()  # type: ignore[assignment]
    tele = body(message_id="t1", samples=[{"metric": "rpm", "value": 1}])
    failed = handle_message(env.fleet, "dt/aios/c1/telemetry", tele)
    assert failed.reason == "error" and failed.detail == "ValueError"
    assert caplog.records, "the failure is logged"
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        assert secret not in text and "input_value" not in text, text


@pytest.mark.parametrize(
    ("topic", "fields", "path"),
    [
        ("dt/aios/c1/heartbeat", {"time": "2099-01-01T00:00:00Z"}, "time"),
        (
            "dt/aios/c1/telemetry",
            {"samples": [{"metric": "t", "value": 1, "time": "2099-01-01T00:00:00Z"}]},
            "samples.0.time",
        ),
        (
            "dt/aios/c1/events",
            {"events": [{"type": "door.opened", "time": "2099-01-01T00:00:00Z"}]},
            "events.0.time",
        ),
        (
            "cmd/aios/c1/res",
            {"request_id": "r", "ok": True, "time": "2099-01-01T00:00:00Z"},
            "time",
        ),
    ],
)
def test_times_in_the_future_are_refused(
    env: Env, topic: str, fields: dict[str, Any], path: str
) -> None:
    """GIVEN a message or sample timed 2099 THEN invalid, naming the field, nothing stored."""
    env.fleet.register(device("c1"), actor=None)
    outcome = handle_message(env.fleet, topic, body(**fields))
    assert outcome.reason == "invalid", outcome
    assert outcome.detail.startswith(path) and "clock" in outcome.detail
    assert env.store.telemetry.latest("c1") == {}
    stored = env.fleet.get("c1")
    assert stored is not None and stored.last_seen is None


def test_times_within_the_allowed_skew_are_taken(env: Env) -> None:
    """A sample a little ahead (under MAX_CLOCK_SKEW) is taken; just over it is not."""
    env.fleet.register(device("c1"), actor=None)
    ahead = T0 + MAX_CLOCK_SKEW - timedelta(seconds=1)
    too_far = T0 + MAX_CLOCK_SKEW + timedelta(seconds=1)
    ok = body(samples=[{"metric": "t", "value": 1, "time": ahead.isoformat()}])
    assert handle_message(env.fleet, "dt/aios/c1/telemetry", ok).accepted
    late = body(message_id="m2", samples=[{"metric": "t", "value": 2, "time": too_far.isoformat()}])
    assert handle_message(env.fleet, "dt/aios/c1/telemetry", late).reason == "invalid"


def _heartbeat(env: Env, n: int, at_device: Any = None, **health: float) -> None:
    env.fleet.record_heartbeat(
        "c1",
        Heartbeat(message_id=f"hb{n}", time=at_device or env.clock.now, health=health),
    )


def _telemetry(env: Env, n: int, value: float, at_device: Any = None) -> None:
    env.fleet.record_telemetry(
        "c1",
        Telemetry.model_validate(
            {
                "message_id": f"t{n}",
                "time": at_device or env.clock.now,
                "samples": [{"metric": "temperature_c", "value": value}],
            }
        ),
    )


def test_newer_telemetry_wins_over_an_older_heartbeat_and_clears_the_alert(env: Env) -> None:
    """GIVEN a rule temperature_c > 30 and a heartbeat with 50 (alert raised) WHEN
    telemetry then says 45, then 20 THEN the value judged is 45, then 20, and the alert
    clears; a newer heartbeat wins again over older telemetry."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.put_rule(
        AlertRule(
            device_id="c1", kind=AlertRuleKind.METRIC_ABOVE, metric="temperature_c", threshold=30
        )
    )
    _heartbeat(env, 1, temperature_c=50)
    assert len(env.fleet.evaluate().alerts_raised) == 1
    env.clock.advance(10)
    _telemetry(env, 1, 45)
    c1 = env.store.devices.get("c1")
    assert c1 is not None and env.fleet.metric_value(c1, "temperature_c") == 45
    env.clock.advance(10)
    _telemetry(env, 2, 20)
    assert env.fleet.metric_value(c1, "temperature_c") == 20
    assert len(env.fleet.evaluate().alerts_cleared) == 1
    env.clock.advance(10)
    _heartbeat(env, 2, temperature_c=60)
    c1 = env.store.devices.get("c1")
    assert c1 is not None and env.fleet.metric_value(c1, "temperature_c") == 60


def test_a_lagging_device_clock_does_not_make_heartbeats_win(env: Env) -> None:
    """GIVEN a device whose clock is 10 minutes behind WHEN a heartbeat says 50 and the
    telemetry sent 30 s later says 20 THEN 20 is the latest (both compared on the
    device's clock), although its sample time is before the heartbeat's receipt."""
    env.fleet.register(device("c1"), actor=None)
    lag = timedelta(minutes=10)
    _heartbeat(env, 1, env.clock.now - lag, temperature_c=50)
    env.clock.advance(30)
    _telemetry(env, 1, 20, env.clock.now - lag)
    c1 = env.store.devices.get("c1")
    assert c1 is not None and env.fleet.metric_value(c1, "temperature_c") == 20


def test_status_since_for_online_and_health_warning(env: Env) -> None:
    """GIVEN a device first heard at T0 THEN online since T0, before and after the
    evaluator runs; WHEN a heartbeat reports CPU 95 % at T0+60 and the evaluator runs at
    T0+62 THEN warning since T0+62; WHEN it recovers and is evaluated at T0+122 THEN
    online since T0+122; WHEN silent long enough to be offline then heard again THEN
    online since that first message."""
    env.fleet.register(device("c1"), actor=None)
    _heartbeat(env, 1, cpu_percent=10)
    view = env.fleet.get("c1")
    assert view is not None and view.status is DeviceStatus.ONLINE and view.status_since == T0
    env.clock.advance(2)
    env.fleet.evaluate()
    view = env.fleet.get("c1")
    assert view is not None and view.status_since == T0
    env.clock.advance(58)
    _heartbeat(env, 2, cpu_percent=95)
    env.clock.advance(2)
    env.fleet.evaluate()
    view = env.fleet.get("c1")
    assert view is not None and view.status is DeviceStatus.WARNING
    assert view.status_since == T0 + timedelta(seconds=62)
    env.clock.advance(58)
    _heartbeat(env, 3, cpu_percent=10)
    env.clock.advance(2)
    env.fleet.evaluate()
    view = env.fleet.get("c1")
    assert view is not None and view.status is DeviceStatus.ONLINE
    assert view.status_since == T0 + timedelta(seconds=122)
    env.clock.advance(600)
    env.fleet.evaluate()
    view = env.fleet.get("c1")
    assert view is not None and view.status is DeviceStatus.OFFLINE
    back = env.clock.advance(10)
    _heartbeat(env, 4, cpu_percent=10)
    view = env.fleet.get("c1")
    assert view is not None and view.status is DeviceStatus.ONLINE and view.status_since == back
    env.clock.advance(3)
    env.fleet.evaluate()
    view = env.fleet.get("c1")
    assert view is not None and view.status_since == back


def test_evaluate_skips_a_device_that_fails_and_evaluates_the_others(
    env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """GIVEN two devices, the bookkeeping of one failing to read WHEN evaluated THEN the
    other's transition is recorded, the failure is logged with the id and type only."""
    env.fleet.register(device("bad"), actor=None)
    env.fleet.register(device("good"), actor=None)
    for device_id in ("bad", "good"):
        env.fleet.record_heartbeat(
            device_id, Heartbeat(message_id=f"hb-{device_id}", time=env.clock.now)
        )
    real = env.store.settings

    class Settings:
        def get(self, key: str) -> Any:
            if key == STATUS_KEY.format(device_id="bad"):
                raise ValueError("stored value holds device content")
            return real.get(key)

        def put(self, key: str, value: Any) -> None:
            real.put(key, value)

    monkeypatch.setattr(env.store, "settings", Settings())
    caplog.set_level(logging.WARNING)
    result = env.fleet.evaluate()
    assert result.devices == 2
    assert [(t.device_id, t.status) for t in result.transitions] == [("good", DeviceStatus.ONLINE)]
    messages = [r.getMessage() for r in caplog.records]
    assert any("bad" in m and "ValueError" in m for m in messages), messages
    assert not any("device content" in m for m in messages)


def test_config_report_model_refuses_depth_directly() -> None:
    """ConfigReport refuses a config nested deeper than MAX_JSON_DEPTH."""
    ConfigReport(version=1, config=nested(MAX_JSON_DEPTH))
    with pytest.raises(ValueError, match="nested deeper"):
        ConfigReport(version=1, config=nested(MAX_JSON_DEPTH + 1))


def test_health_metrics_cannot_forge_the_keys_the_platform_fills_in(env: Env) -> None:
    """A heartbeat whose health names heartbeat_time (which orders health against
    telemetry) or config_version is refused."""
    env.fleet.register(device("c1"), actor=None)
    for name in ("heartbeat_time", "config_version"):
        outcome = handle_message(env.fleet, "dt/aios/c1/heartbeat", body(health={name: 4102444800}))
        assert outcome.reason == "invalid" and "reserved" in outcome.detail, outcome


def test_health_kept_without_its_time_loses_to_telemetry(env: Env) -> None:
    """Health stored before its time was kept (no heartbeat_time) is older than any
    telemetry sample: the sample is the value judged."""
    env.fleet.register(device("c1"), actor=None)
    env.store.devices.touch("c1", env.clock.now, health={"temperature_c": 50})
    _telemetry(env, 1, 20, env.clock.now - timedelta(hours=1))
    c1 = env.store.devices.get("c1")
    assert c1 is not None and env.fleet.metric_value(c1, "temperature_c") == 20
