"""The ingest functions (``functions/ingest.py``) on moto: the events IoT Core topic rules
give them (``SELECT *, topic() AS mqtt_topic FROM 'dt/aios/+/…'``), built from the
messages the connector publishes, into DynamoDB."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from cloud_functions import REGION, Deployment, deploy
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends

from aios.domain import CommandStatus, Device, DeviceKind, DeviceStatus
from aios.fleet.service import FleetService
from aios.messages import (
    CommandResponse,
    DeviceEventItem,
    DeviceEventsMessage,
    HealthMetrics,
    Heartbeat,
    Message,
    Telemetry,
    TelemetrySample,
    TopicKind,
    topic,
)

DEVICE = "conn-1"
FUNCTIONS = {
    TopicKind.HEARTBEAT: "HeartbeatIngestFunction",
    TopicKind.TELEMETRY: "TelemetryIngestFunction",
    TopicKind.EVENTS: "EventsIngestFunction",
    TopicKind.COMMAND_RESPONSE: "CommandResponseIngestFunction",
}


def rule_event(kind: TopicKind, message: Message, device_id: str = DEVICE) -> dict[str, Any]:
    """What the topic rule gives the function: the JSON the connector publishes (its
    ``model_dump_json``) plus ``mqtt_topic``."""
    return {**json.loads(message.model_dump_json()), "mqtt_topic": topic(kind, device_id)}


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def deployment(moto: None) -> Iterator[Deployment]:
    deployment = deploy(set(FUNCTIONS.values()))
    services = deployment.services("HeartbeatIngestFunction")
    services.store.devices.create(
        Device(id=DEVICE, name="Gate connector", kind=DeviceKind.CONNECTOR)
    )
    yield deployment


def ingest(deployment: Deployment, kind: TopicKind, event: Any) -> dict[str, Any]:
    result: dict[str, Any] = deployment.invoke(FUNCTIONS[kind], event)
    return result


def idempotency_records(deployment: Deployment) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb", region_name=REGION)
    items: list[dict[str, Any]] = ddb.scan(TableName=deployment.idempotency_table)["Items"]
    return items


def test_each_kind_of_message_is_stored(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """Heartbeat → device online; telemetry → queryable samples; events → the device's
    history; a command response → the command completed."""
    store = deployment.services().store
    heartbeat = Heartbeat(
        message_id="hb-1",
        time=now(),
        health=HealthMetrics(cpu_percent=37.5, memory_percent=61),
        firmware_version="connector 0.4.1",
    )
    out = ingest(deployment, TopicKind.HEARTBEAT, rule_event(TopicKind.HEARTBEAT, heartbeat))
    assert (out["reason"], out["kind"], out["device_id"], out["duplicate"]) == (
        "accepted",
        "heartbeat",
        DEVICE,
        False,
    )
    device = store.devices.get(DEVICE)
    assert device is not None and device.last_seen is not None
    assert device.health["cpu_percent"] == 37.5
    services = deployment.services()
    assert FleetService(services).view(device).status is DeviceStatus.ONLINE
    # telemetry
    t0 = now() - timedelta(seconds=5)
    telemetry = Telemetry(
        message_id="tm-1",
        time=now(),
        samples=[
            TelemetrySample(metric="temperature_c", value=21.5, unit="°C", time=t0),
            TelemetrySample(metric="pressure_bar", value=3.2, unit="bar", time=t0),
        ],
    )
    out = ingest(deployment, TopicKind.TELEMETRY, rule_event(TopicKind.TELEMETRY, telemetry))
    assert out["accepted"], out
    points = store.telemetry.query(DEVICE, metric="temperature_c").items
    assert [(p.metric, p.value) for p in points] == [("temperature_c", 21.5)]
    assert set(store.telemetry.latest(DEVICE)) == {"temperature_c", "pressure_bar"}
    # device events
    events = DeviceEventsMessage(
        message_id="ev-1",
        time=now(),
        events=[
            DeviceEventItem(type="camera.offline", severity="warning", message="cam-2 lost"),
            DeviceEventItem(type="plc.write_failed", severity="critical"),
        ],
    )
    out = ingest(deployment, TopicKind.EVENTS, rule_event(TopicKind.EVENTS, events))
    assert out["accepted"], out
    history = {e.type for e in store.device_events.list(DEVICE, limit=100).items}
    assert {"camera.offline", "plc.write_failed"} <= history
    # a command: sent through IoT Core, answered on cmd/aios/conn-1/res
    command = FleetService(services).send_command(DEVICE, "reboot", {}, actor="admin")
    published = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION].published_payloads
    assert published[-1][0] == f"cmd/aios/{DEVICE}/req"
    assert json.loads(published[-1][1])["request_id"] == command.request_id
    response = CommandResponse(
        message_id="res-1", time=now(), request_id=command.request_id, ok=True, result={"up": 1}
    )
    out = ingest(
        deployment,
        TopicKind.COMMAND_RESPONSE,
        rule_event(TopicKind.COMMAND_RESPONSE, response),
    )
    assert out["accepted"], out
    completed = store.commands.get(command.request_id)
    assert completed is not None and completed.status is CommandStatus.SUCCEEDED
    assert completed.response == {"up": 1}
    # one metric per message, by kind (CloudWatch embedded metric format on stdout)
    emitted = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    ingested = [m for m in emitted if "IngestedMessages" in m]
    assert sorted(m["kind"] for m in ingested) == [
        "command_response",
        "events",
        "heartbeat",
        "telemetry",
    ]


def test_a_repeated_message_is_processed_once(deployment: Deployment) -> None:
    """QoS 1 redelivery: the same (topic, message_id) again returns the first outcome,
    marked as a duplicate, without storing it again (the device's last_seen stays)."""
    store = deployment.services().store
    event = rule_event(TopicKind.HEARTBEAT, Heartbeat(message_id="hb-7", time=now()))
    first = ingest(deployment, TopicKind.HEARTBEAT, event)
    seen = store.devices.get(DEVICE).last_seen  # type: ignore[union-attr]
    again = ingest(deployment, TopicKind.HEARTBEAT, dict(event))
    assert first["accepted"] and not first["duplicate"]
    assert again["duplicate"] and again["reason"] == "accepted"
    assert store.devices.get(DEVICE).last_seen == seen  # type: ignore[union-attr]
    records = idempotency_records(deployment)
    assert len(records) == 1 and records[0]["status"]["S"] == "COMPLETED"
    # another message id is new
    other = dict(event, message_id="hb-8")
    assert not ingest(deployment, TopicKind.HEARTBEAT, other)["duplicate"]
    assert len(idempotency_records(deployment)) == 2


def test_a_topic_of_another_kind_is_refused(deployment: Deployment) -> None:
    """A telemetry function given a heartbeat topic (a rule wired wrongly) refuses it."""
    store = deployment.services().store
    telemetry = Telemetry(
        message_id="tm-9",
        time=now(),
        samples=[TelemetrySample(metric="temperature_c", value=99.0)],
    )
    event = {**rule_event(TopicKind.TELEMETRY, telemetry), "mqtt_topic": topic("heartbeat", DEVICE)}
    out = ingest(deployment, TopicKind.TELEMETRY, event)
    assert (out["reason"], out["accepted"]) == ("bad_topic", False)
    assert "heartbeat" in out["detail"]
    assert store.telemetry.query(DEVICE).items == []
    assert idempotency_records(deployment) == []
    # no topic at all (a rule without `topic() AS mqtt_topic`)
    bare = json.loads(telemetry.model_dump_json())
    assert ingest(deployment, TopicKind.TELEMETRY, bare)["reason"] == "bad_topic"


def test_malformed_messages_are_refused_without_their_values_in_the_logs(
    deployment: Deployment,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Invalid, not JSON-shaped, without message id, from an unknown device: refused (not
    raised: the rule would only deliver it again), logged with reason and field paths,
    never with the payload's values."""
    caplog.set_level(logging.DEBUG)
    secret = "hunter2-Secr3t-value"
    invalid = {
        "schema_version": 1,
        "message_id": "hb-bad",
        "time": now().isoformat(),
        "health": {"cpu_percent": secret},
        "firmware_version": 7,
        "password": secret,
        "mqtt_topic": topic("heartbeat", DEVICE),
    }
    out = ingest(deployment, TopicKind.HEARTBEAT, invalid)
    assert (out["reason"], out["accepted"]) == ("invalid", False)
    assert "health.cpu_percent" in out["detail"] and secret not in out["detail"]
    no_id = {k: v for k, v in invalid.items() if k != "message_id"}
    assert ingest(deployment, TopicKind.HEARTBEAT, no_id)["reason"] == "invalid"
    assert ingest(deployment, TopicKind.HEARTBEAT, [secret])["reason"] == "bad_json"
    stranger = rule_event(
        TopicKind.HEARTBEAT, Heartbeat(message_id=secret, time=now()), device_id="cam-9"
    )
    assert ingest(deployment, TopicKind.HEARTBEAT, stranger)["reason"] == "unknown_device"
    device = deployment.services().store.devices.get(DEVICE)
    assert device is not None and device.last_seen is None
    # logged: the refusals with their reasons and field paths, never a value
    refusals = [r for r in caplog.records if r.getMessage() == "message not stored"]
    reasons = sorted(r.reason for r in refusals)  # type: ignore[attr-defined]
    assert reasons == ["bad_json", "invalid", "invalid", "unknown_device"]
    assert any("health.cpu_percent" in r.detail for r in refusals)  # type: ignore[attr-defined]
    for record in caplog.records:
        assert secret not in record.getMessage() and secret not in repr(vars(record))
    printed = capsys.readouterr()
    assert secret not in printed.out + printed.err
    refused = [json.loads(line) for line in printed.out.splitlines() if "RefusedMessages" in line]
    assert len(refused) == 4


def test_a_store_failure_fails_the_invocation_for_the_dead_letter_queue(
    deployment: Deployment,
) -> None:
    """The DataTable unreachable: the function raises (the rule's error action dead-letters
    the message) and keeps no idempotency record, so a retry processes it."""
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=deployment.table)
    event = rule_event(TopicKind.HEARTBEAT, Heartbeat(message_id="hb-3", time=now()))
    with pytest.raises(Exception) as raised:
        ingest(deployment, TopicKind.HEARTBEAT, event)
    assert type(raised.value).__name__ == "IngestFailed"
    assert idempotency_records(deployment) == []


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_deep_or_large_messages_are_refused_not_raised(
    deployment: Deployment,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A heartbeat with a field nested 900 levels deep (under 2 KB) or larger than a message
    may be: refused before the idempotency layer (whose deep copy would raise
    RecursionError: a failed invocation, retries, the dead letter queue), logged without
    its values, counted, and not remembered as processed."""
    caplog.set_level(logging.INFO)
    secret = "hunter2-Secr3t-value"
    event = rule_event(TopicKind.HEARTBEAT, Heartbeat(message_id="hb-deep", time=now()))
    deep = {**event, "extra": nested(900, {"password": secret})}
    assert len(json.dumps(deep)) < 8000
    out = ingest(deployment, TopicKind.HEARTBEAT, deep)
    assert (out["reason"], out["accepted"], out["device_id"]) == ("invalid", False, DEVICE)
    assert "901 levels deep" in out["detail"]
    # the deepest a message may nest still reaches the validation (which refuses it)
    from aios.api.body import MAX_BODY_DEPTH

    limit = {**event, "message_id": "hb-limit", "extra": nested(MAX_BODY_DEPTH - 1, 1)}
    assert ingest(deployment, TopicKind.HEARTBEAT, limit)["reason"] == "invalid"
    large = {**event, "message_id": "hb-large", "extra": secret * 10_000}
    out = ingest(deployment, TopicKind.HEARTBEAT, large)
    assert (out["reason"], out["accepted"]) == ("too_large", False)

    device = deployment.services().store.devices.get(DEVICE)
    assert device is not None and device.last_seen is None
    keys = {item["id"]["S"] for item in idempotency_records(deployment)}
    assert not any("hb-deep" in key or "hb-large" in key for key in keys)
    refusals = [r for r in caplog.records if r.getMessage() == "message not stored"]
    assert sorted(r.reason for r in refusals) == ["invalid", "invalid", "too_large"]  # type: ignore[attr-defined]
    for record in caplog.records:
        assert secret not in record.getMessage() and secret not in repr(vars(record))
    printed = capsys.readouterr()
    assert secret not in printed.out + printed.err
    assert sum("RefusedMessages" in line for line in printed.out.splitlines()) == 3
