"""handle_message: one device message from topic and bytes to the fleet, never raising."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fleet_support import Env, device

from aios.fleet.ingest import RecentMessages, handle_message
from aios.messages import TopicKind


def payload(**fields: Any) -> bytes:
    return json.dumps({"message_id": "m1", "time": "2026-03-02T08:00:00Z"} | fields).encode()


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        ("dt/aios/c1/status", payload(), "bad_topic"),
        ("dt/aios/c1", payload(), "bad_topic"),
        ("cmd/aios/c1/req", payload(), "bad_topic"),
        ("cfg/aios/c1/desired", payload(device_id="c1", version=9), "bad_topic"),
        (
            "cmd/aios/c1/req",
            payload(
                request_id="r1", device_id="c1", name="reboot", deadline="2026-03-02T08:01:00Z"
            ),
            "bad_topic",
        ),
        ("dt/aios/c1/heartbeat", b"{not json", "bad_json"),
        ("dt/aios/c1/heartbeat", b"\xff\xfe", "bad_json"),
        ("dt/aios/c1/heartbeat", b"[1, 2]", "bad_json"),
        ("dt/aios/c1/heartbeat", b"NaN", "bad_json"),
        ("dt/aios/c1/heartbeat", payload(health={"cpu_percent": "hot"}), "invalid"),
        ("dt/aios/c1/heartbeat", payload(time="2026-03-02T08:00:00"), "invalid"),
        ("dt/aios/c1/telemetry", payload(samples=[]), "invalid"),
        ("dt/aios/c1/events", payload(events=[{"type": "status.online"}]), "invalid"),
        (
            "dt/aios/c1/events",
            payload(events=[{"type": "config.reported", "data": {"v": 1}}]),
            "invalid",
        ),
        ("dt/aios/ghost/heartbeat", payload(), "unknown_device"),
        ("dt/aios/c1/heartbeat", payload(device_id="c2"), "not_a_child"),
        ("cmd/aios/c1/res", payload(request_id="nope", ok=True), "unknown_command"),
        ("dt/aios/c1/heartbeat", b"{" + b" " * 200_000 + b"}", "too_large"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(
    env: Env, topic: str, body: bytes, reason: str
) -> None:
    """GIVEN a malformed or unwelcome message THEN its outcome names why, nothing raised."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.register(device("c2"), actor=None)
    outcome = handle_message(env.fleet, topic, body)
    assert outcome.reason == reason, outcome
    assert not outcome.accepted
    stored = env.fleet.get("c1")
    assert stored is not None and stored.last_seen is None


def test_refusal_detail_names_field_but_not_values(env: Env) -> None:
    """GIVEN a schema error holding a secret-looking value THEN the detail has the field
    path and not the value."""
    env.fleet.register(device("c1"), actor=None)
    body = payload(health={"cpu_percent": "password=hunter2"})
    outcome = handle_message(env.fleet, "dt/aios/c1/heartbeat", body)
    assert "health.cpu_percent" in outcome.detail
    assert "hunter2" not in outcome.detail


def test_good_messages_are_stored_and_duplicates_dropped(env: Env) -> None:
    """GIVEN a heartbeat, telemetry and events WHEN handled THEN stored; the same heartbeat
    again THEN a duplicate."""
    env.fleet.register(device("c1"), actor=None)
    recent = RecentMessages(size=10)
    hb = payload(health={"cpu_percent": 20})
    first = handle_message(env.fleet, "dt/aios/c1/heartbeat", hb, recent=recent)
    assert (first.reason, first.kind, first.device_id) == ("accepted", TopicKind.HEARTBEAT, "c1")
    assert (
        handle_message(env.fleet, "dt/aios/c1/heartbeat", hb, recent=recent).reason == "duplicate"
    )
    tele = json.dumps(
        {
            "message_id": "t1",
            "time": "2026-03-02T08:00:00Z",
            "samples": [{"metric": "rpm", "value": 900}],
        }
    ).encode()
    assert handle_message(env.fleet, "dt/aios/c1/telemetry", tele, recent=recent).accepted
    ev = payload(message_id="e1", events=[{"type": "door.opened"}])
    assert handle_message(env.fleet, "dt/aios/c1/events", ev, recent=recent).accepted
    stored = env.fleet.get("c1")
    assert stored is not None and stored.health == {
        "cpu_percent": 20,
        "heartbeat_time": "2026-03-02T08:00:00+00:00",
    }
    assert env.store.telemetry.latest("c1")["rpm"].value == 900
    assert [e.type for e in env.store.device_events.list("c1").items].count("door.opened") == 1


def test_recent_messages_forget_the_oldest() -> None:
    """GIVEN a window of 2 WHEN 3 keys are added THEN the first is forgotten."""
    recent = RecentMessages(size=2)
    for key in ("a", "b", "c"):
        recent.add(("d", key))
    assert ("d", "a") not in recent
    assert ("d", "b") in recent and ("d", "c") in recent
