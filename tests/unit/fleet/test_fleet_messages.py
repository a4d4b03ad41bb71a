"""Device message models and topics: strict, versioned, UTC-aware."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from aios.messages import (
    CommandRequest,
    CommandResponse,
    ConfigReport,
    DesiredConfig,
    DeviceEventsMessage,
    Heartbeat,
    Telemetry,
    TopicKind,
    parse_topic,
    topic,
)

BASE = {"message_id": "m-1", "time": "2026-03-02T08:00:00Z"}


def test_heartbeat_parses_health_and_converts_offsets_to_utc() -> None:
    """GIVEN a heartbeat with a +01:00 time THEN time is UTC and health keeps extra metrics."""
    hb = Heartbeat.model_validate(
        BASE
        | {
            "time": "2026-03-02T09:00:00+01:00",
            "health": {"cpu_percent": 12.5, "modbus_errors": 3},
            "firmware_version": "1.2.0",
            "config_version": 4,
        }
    )
    assert hb.time == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert hb.time.tzinfo is UTC
    assert hb.health.as_dict() == {"cpu_percent": 12.5, "modbus_errors": 3}
    assert hb.schema_version == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (BASE | {"time": "2026-03-02T08:00:00"}, "time"),
        ({"time": "2026-03-02T08:00:00Z"}, "message_id"),
        (BASE | {"schema_version": 2}, "schema_version"),
        (BASE | {"helth": {}}, "helth"),
        (BASE | {"health": {"cpu_percent": 140}}, "health.cpu_percent"),
        (BASE | {"health": {"bad name": 1}}, "health"),
        (BASE | {"health": {"x": "hot"}}, "health"),
        (BASE | {"health": {"temperature_c": float("nan")}}, "health.temperature_c"),
        (BASE | {"device_id": "a/b"}, "device_id"),
    ],
)
def test_heartbeat_refuses_bad_fields(data: dict[str, object], field: str) -> None:
    """GIVEN a heartbeat with one bad field THEN ValidationError at that field's path."""
    with pytest.raises(ValidationError) as info:
        Heartbeat.model_validate(data)
    paths = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert field in paths


def test_naive_time_error_tells_what_to_send() -> None:
    """GIVEN a naive time THEN the message says to add an offset."""
    with pytest.raises(ValidationError, match="no UTC offset"):
        Heartbeat.model_validate(BASE | {"time": "2026-03-02T08:00:00"})


def test_telemetry_is_bounded_and_samples_strict() -> None:
    """GIVEN 1000 samples THEN valid; 1001, zero, NaN or a bad metric name THEN refused."""
    sample = {"metric": "temperature_c", "value": 21.5, "unit": "°C"}
    assert len(Telemetry.model_validate(BASE | {"samples": [sample] * 1000}).samples) == 1000
    for samples in (
        [sample] * 1001,
        [],
        [sample | {"value": "nan"}],
        [sample | {"metric": "9lives"}],
        [sample | {"time": "2026-03-02T08:00:00"}],
        [sample | {"extra": 1}],
    ):
        with pytest.raises(ValidationError):
            Telemetry.model_validate(BASE | {"samples": samples})


def test_events_refuse_reserved_types_except_config_reported() -> None:
    """GIVEN an event typed status.online THEN refused; config.reported THEN accepted."""
    with pytest.raises(ValidationError, match="reserved for the platform"):
        DeviceEventsMessage.model_validate(BASE | {"events": [{"type": "status.online"}]})
    msg = DeviceEventsMessage.model_validate(
        BASE | {"events": [{"type": "config.reported", "data": {"version": 2}}]}
    )
    assert ConfigReport.model_validate(msg.events[0].data).accepted is True
    with pytest.raises(ValidationError):
        DeviceEventsMessage.model_validate(BASE | {"events": [{"type": "Door Opened"}]})
    with pytest.raises(ValidationError):
        DeviceEventsMessage.model_validate(
            BASE | {"events": [{"type": "door.opened", "severity": "fatal"}]}
        )


def test_command_and_config_messages_round_trip_as_json() -> None:
    """GIVEN platform messages THEN JSON out and back gives the same model."""
    req = CommandRequest(
        message_id="r1",
        time=datetime(2026, 3, 2, tzinfo=UTC),
        request_id="r1",
        device_id="plc-1",
        name="write_coil",
        params={"address": 3, "value": True},
        deadline=datetime(2026, 3, 2, 0, 0, 30, tzinfo=UTC),
    )
    assert CommandRequest.model_validate_json(req.model_dump_json()) == req
    res = CommandResponse.model_validate(BASE | {"request_id": "r1", "ok": False, "error": "busy"})
    assert res.ok is False
    cfg = DesiredConfig(
        message_id="c", time=req.time, device_id="cam-1", version=3, config={"a": 1}
    )
    assert DesiredConfig.model_validate_json(cfg.model_dump_json()) == cfg
    with pytest.raises(ValidationError):
        CommandRequest.model_validate(
            req.model_dump(mode="json") | {"deadline": "2026-03-02T00:00:30"}
        )


def test_topics_round_trip_and_errors_name_the_problem() -> None:
    """GIVEN every kind THEN topic() and parse_topic() agree; bad topics raise ValueError."""
    for kind in TopicKind:
        assert parse_topic(topic(kind, "press-7")) == ("press-7", kind)
    assert topic("heartbeat", "cam-1") == "dt/aios/cam-1/heartbeat"
    assert topic(TopicKind.COMMAND_REQUEST, "c1") == "cmd/aios/c1/req"
    assert topic(TopicKind.DESIRED_CONFIG, "c1") == "cfg/aios/c1/desired"
    with pytest.raises(ValueError, match="four levels"):
        parse_topic("dt/aios/c1")
    with pytest.raises(ValueError, match="none of"):
        parse_topic("dt/aios/c1/status")
    with pytest.raises(ValueError, match="none of"):
        parse_topic("cmd/aios/c1/heartbeat")
    with pytest.raises(ValueError, match="must match"):
        parse_topic("dt/aios/+/heartbeat")
    with pytest.raises(ValueError, match="unknown topic kind"):
        topic("status", "c1")
    with pytest.raises(ValueError, match="must match"):
        topic("heartbeat", "a/b")
