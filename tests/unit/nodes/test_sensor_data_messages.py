"""``aios/sensor.data@1``: platform telemetry messages to ``sensor.reading`` events, no broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aios.events.task import TaskServices
from aios.messages import Telemetry, TelemetrySample
from aios.nodes import sensor_data
from aios.nodes.sensor_data import InvalidMessage, SensorDataSource, parse_message

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 1, 5, 9, 0, 1, 250_000, tzinfo=UTC)


def node(**config: object) -> SensorDataSource:
    """Build the node from a raw config with a fixed clock, as the runtime does."""
    source = sensor_data.NODE.implementation(
        sensor_data.NODE.parse_config(config), TaskServices(now=lambda: RECEIVED)
    )
    assert isinstance(source, SensorDataSource)
    return source


def message(
    samples: list[TelemetrySample], *, message_id: str = "t-1", device_id: str | None = None
) -> bytes:
    """A platform telemetry message as a device publishes it."""
    msg = Telemetry(message_id=message_id, time=T0, samples=samples, device_id=device_id)
    return msg.model_dump_json(exclude_none=True).encode()


def test_one_message_is_one_event_with_the_readings_by_metric() -> None:
    """Samples read together become one event at the message's time, device from the topic."""
    payload = message(
        [
            TelemetrySample(metric="temp_c", value=71.5, unit="°C"),
            TelemetrySample(metric="running", value=True),
        ]
    )
    [event] = node().to_events("dt/aios/press-7/telemetry", payload)
    assert event["event_type"] == "sensor.reading"
    assert event["time"] == "2026-01-05T09:00:00Z"
    assert event["source_id"] == "press-7"
    assert event["data"] == {
        "topic": "dt/aios/press-7/telemetry",
        "readings": {"temp_c": 71.5, "running": 1.0},
        "units": {"temp_c": "°C"},
        "message_id": "t-1",
        "publisher_id": "press-7",
        "received_at": "2026-01-05T09:00:01.250000Z",
    }


def test_batch_read_at_several_moments_gives_one_event_per_moment_in_time_order() -> None:
    """No reading of a batch is lost: one event per sample time, sorted; of two samples of
    a metric at one time the later in the message wins; times in other zones become UTC."""
    plus_one = timezone(timedelta(hours=1))
    payload = message(
        [
            TelemetrySample(metric="temp_c", value=20.0, time=T0 + timedelta(seconds=10)),
            TelemetrySample(metric="temp_c", value=19.0),
            TelemetrySample(
                metric="rh", value=40.0, time=datetime(2026, 1, 5, 10, 0, 10, tzinfo=plus_one)
            ),
            TelemetrySample(metric="temp_c", value=19.5),
        ]
    )
    first, second = node().to_events("dt/aios/room-2/telemetry", payload)
    assert (first["time"], first["data"]["readings"]) == ("2026-01-05T09:00:00Z", {"temp_c": 19.5})
    assert (second["time"], second["data"]["readings"]) == (
        "2026-01-05T09:00:10Z",
        {"temp_c": 20.0, "rh": 40.0},
    )
    assert first["event_id"] != second["event_id"]


def test_child_device_is_the_source_and_the_connector_the_publisher() -> None:
    """A connector's message for its PLC is about the PLC; the topic's device published it."""
    payload = message([TelemetrySample(metric="hr.40001", value=1234)], device_id="plc-3")
    [event] = node().to_events("dt/aios/conn-1/telemetry", payload)
    assert event["source_id"] == "plc-3"
    assert event["data"]["publisher_id"] == "conn-1"
    assert event["data"]["readings"] == {"hr.40001": 1234.0}


def test_event_ids_are_stable_per_publisher_message_and_time() -> None:
    """A redelivered message gets the same ids; another message or publisher other ids."""
    source = node()
    samples = [TelemetrySample(metric="temp_c", value=20.5)]
    ids = [
        source.to_events(topic, message(samples, message_id=mid))[0]["event_id"]
        for topic, mid in [
            ("dt/aios/a/telemetry", "m-1"),
            ("dt/aios/a/telemetry", "m-1"),
            ("dt/aios/a/telemetry", "m-2"),
            ("dt/aios/b/telemetry", "m-1"),
        ]
    ]
    assert ids[0] == ids[1]
    assert len({ids[0], ids[2], ids[3]}) == 3


def test_fields_keep_the_named_metrics_and_skip_messages_without_them() -> None:
    """``fields`` filters samples; a message left with none gives no event."""
    source = node(fields=["temp_c", "temp_c"])
    assert source.config.fields == ["temp_c"]
    kept = source.to_events(
        "dt/aios/oven-1/telemetry",
        message(
            [TelemetrySample(metric="temp_c", value=180), TelemetrySample(metric="rh", value=12)]
        ),
    )
    assert [e["data"]["readings"] for e in kept] == [{"temp_c": 180.0}]
    assert (
        source.to_events(
            "dt/aios/oven-1/telemetry", message([TelemetrySample(metric="rh", value=11)])
        )
        == []
    )


VALID = {
    "message_id": "t-1",
    "time": "2026-01-05T09:00:00Z",
    "samples": [{"metric": "x", "value": 1}],
}


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "detail"),
    [
        ("plant/line1/oven", json.dumps(VALID).encode(), "bad_topic", "four levels"),
        ("dt/aios/-x/telemetry", json.dumps(VALID).encode(), "bad_topic", "must match"),
        ("dt/aios/d1/heartbeat", json.dumps(VALID).encode(), "bad_topic", "heartbeat topic"),
        ("dt/aios/d1/telemetry", b"x" * 129 * 1024, "too_large", "132096 bytes > 131072"),
        ("dt/aios/d1/telemetry", b"\xff\xfe", "bad_json", "not UTF-8"),
        ("dt/aios/d1/telemetry", b"password=hunter2", "bad_json", "not JSON: Expecting value"),
        ("dt/aios/d1/telemetry", b"42.25", "bad_json", "a JSON number, expected an object"),
        ("dt/aios/d1/telemetry", b"NaN", "bad_json", "JSON constant NaN is not a number"),
        ("dt/aios/d1/telemetry", b"[" * 30_000, "bad_json", "nested too deeply"),
        (
            "dt/aios/d1/telemetry",
            # the ad-hoc shape this node read before the platform's message existed
            b'{"device_id": "d1", "ts": "2026-01-05T09:00:00Z", "metrics": {"temp_c": 7}}',
            "invalid",
            "message_id: Field required; time: Field required; samples: Field required (+2 more)",
        ),
        (
            "dt/aios/d1/telemetry",
            json.dumps(VALID | {"time": "2026-01-05T09:00:00"}).encode(),
            "invalid",
            "time: Value error, time has no UTC offset",
        ),
        (
            "dt/aios/d1/telemetry",
            json.dumps(VALID | {"samples": [{"metric": "x", "value": "hunter2"}]}).encode(),
            "invalid",
            "samples.0.value: Input should be a valid number",
        ),
        (
            "dt/aios/d1/telemetry",
            b'{"message_id": "t-1", "time": "2026-01-05T09:00:00Z", '
            b'"samples": [{"metric": "x", "value": 1e400}]}',
            "invalid",
            "samples.0.value: Input should be a finite number",
        ),
        (
            "dt/aios/d1/telemetry",
            json.dumps(VALID | {"samples": []}).encode(),
            "invalid",
            "samples",
        ),
    ],
)
def test_messages_that_are_not_platform_telemetry_are_refused_with_a_reason(
    topic: str, payload: bytes, reason: str, detail: str
) -> None:
    """Each refusal names its reason and what to fix, never the payload's values."""
    with pytest.raises(InvalidMessage) as caught:
        parse_message(topic, payload)
    assert caught.value.reason == reason
    assert detail in caught.value.detail
    assert "hunter2" not in str(caught.value)


def test_max_payload_bytes_lowers_the_limit() -> None:
    """A message over the configured size is too large even if the platform would take it."""
    payload = message([TelemetrySample(metric=f"m{i}", value=i) for i in range(20)])
    assert len(node().to_events("dt/aios/d1/telemetry", payload)) == 1
    with pytest.raises(InvalidMessage, match="too_large"):
        node(max_payload_bytes=256).to_events("dt/aios/d1/telemetry", payload)


def test_samples_dated_in_the_future_are_refused_as_the_ingester_refuses_them() -> None:
    """A device whose clock runs ahead must not feed pipelines values from the future."""
    payload = message([TelemetrySample(metric="temp_c", value=20.0, time=T0 + timedelta(hours=1))])
    with pytest.raises(InvalidMessage, match=r"invalid: samples\.0\.time.*NTP"):
        parse_message("dt/aios/tank-1/telemetry", payload, now=T0)
    _, parsed = parse_message("dt/aios/tank-1/telemetry", payload, now=T0 + timedelta(hours=1))
    assert parsed.samples[0].value == 20.0
