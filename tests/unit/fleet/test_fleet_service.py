"""FleetService over a real SQLite store, with a controllable clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fleet_support import T0, Env, device

from aios.domain import (
    AlertRule,
    AlertRuleKind,
    AlertState,
    CommandStatus,
    DeviceKind,
    DeviceStatus,
    GeoPoint,
)
from aios.fleet.service import DeviceUnreachable, InvalidRequest, MessageRefused
from aios.messages import (
    HEARTBEAT_TIME_KEY,
    CommandResponse,
    DeviceEventsMessage,
    Heartbeat,
    Telemetry,
)
from aios.store.port import Conflict, DeviceQuery, NotFound


def heartbeat(env: Env, n: int = 0, **fields: Any) -> Heartbeat:
    return Heartbeat(message_id=f"hb-{n}-{env.clock.now.timestamp()}", time=env.clock.now, **fields)


def events(
    env: Env, *items: dict[str, Any], message_id: str = "ev-1", **fields: Any
) -> DeviceEventsMessage:
    return DeviceEventsMessage.model_validate(
        {"message_id": message_id, "time": env.clock.now, "events": list(items), **fields}
    )


def history(env: Env, device_id: str) -> list[str]:
    """Event types of the device, oldest first."""
    page = env.store.device_events.list(device_id, limit=1000)
    return [e.type for e in reversed(page.items)]


# ---------------------------------------------------------------- registration and edits


def test_register_derives_status_and_records_the_event(env: Env) -> None:
    """GIVEN a new connector WHEN registered THEN offline (never seen), version 1, history."""
    view = env.fleet.register(device("c1", site="porto"), actor="ana")
    assert view.status is DeviceStatus.OFFLINE
    assert view.status_reasons == ["never seen"]
    assert view.version == 1
    assert view.created_at == env.clock.now
    assert history(env, "c1") == ["device.registered"]
    with pytest.raises(Conflict):
        env.fleet.register(device("c1"), actor="ana")


def test_register_checks_the_parent_is_an_existing_connector(env: Env) -> None:
    """GIVEN a missing or non-connector parent THEN InvalidRequest naming parent_id."""
    env.fleet.register(device("cam1", DeviceKind.CAMERA), actor=None)
    with pytest.raises(InvalidRequest, match="parent_id: device 'nope' does not exist"):
        env.fleet.register(device("plc1", DeviceKind.PLC, parent_id="nope"), actor=None)
    with pytest.raises(InvalidRequest, match="must be a connector"):
        env.fleet.register(device("plc1", DeviceKind.PLC, parent_id="cam1"), actor=None)
    env.fleet.register(device("c1"), actor=None)
    assert (
        env.fleet.register(device("plc1", DeviceKind.PLC, parent_id="c1"), actor=None).parent_id
        == "c1"
    )


def test_update_changes_allowed_fields_with_optimistic_concurrency(env: Env) -> None:
    """GIVEN a device WHEN updated with its version THEN changed; a stale version or an
    unknown field THEN refused; a missing device THEN NotFound."""
    env.fleet.register(device("c1"), actor=None)
    view = env.fleet.update(
        "c1",
        {"name": "Gate", "tags": ["north"], "location": {"lat": 41.1, "lon": -8.6}},
        expected_version=1,
        actor="ana",
    )
    assert (view.name, view.tags, view.location) == (
        "Gate",
        ["north"],
        GeoPoint(lat=41.1, lon=-8.6),
    )
    assert view.version == 2
    with pytest.raises(Conflict, match="version 2, not 1"):
        env.fleet.update("c1", {"name": "X"}, expected_version=1, actor=None)
    with pytest.raises(InvalidRequest, match="cannot change desired_config"):
        env.fleet.update("c1", {"desired_config": {}}, expected_version=None, actor=None)
    with pytest.raises(InvalidRequest, match="invalid device change"):
        env.fleet.update("c1", {"name": ""}, expected_version=None, actor=None)
    with pytest.raises(NotFound):
        env.fleet.update("zz", {"name": "X"}, expected_version=None, actor=None)
    env.fleet.record_heartbeat("c1", heartbeat(env))  # moves the version
    assert env.fleet.update("c1", {"site": "lx"}, expected_version=None, actor=None).site == "lx"
    assert history(env, "c1").count("device.updated") == 2


def test_delete_refuses_a_parent_then_removes_and_keeps_history(env: Env) -> None:
    """GIVEN a connector with a child WHEN deleted THEN Conflict; without THEN gone."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.register(device("s1", DeviceKind.SENSOR, parent_id="c1"), actor=None)
    with pytest.raises(Conflict, match="parent of other devices"):
        env.fleet.delete("c1", actor="ana")
    assert env.fleet.delete("s1", actor="ana") is True
    assert env.fleet.delete("s1", actor="ana") is False
    assert env.fleet.get("s1") is None
    assert sorted(history(env, "s1")) == ["device.deleted", "device.registered"]


def test_list_filters_on_derived_status_with_stable_cursors(env: Env) -> None:
    """GIVEN 25 devices, every third one heard from WHEN listing online 4 per page THEN
    all 9 online ones, in id order, across pages, and a device added meanwhile is seen."""
    for i in range(25):
        env.fleet.register(device(f"d{i:02d}"), actor=None)
        if i % 3 == 0:
            env.fleet.record_heartbeat(f"d{i:02d}", heartbeat(env))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = env.fleet.list(DeviceQuery(), status=DeviceStatus.ONLINE, limit=4, cursor=cursor)
        seen += [v.id for v in page.items]
        assert all(v.status is DeviceStatus.ONLINE for v in page.items)
        pages += 1
        if pages == 1:
            env.fleet.register(device("d99"), actor=None)
            env.fleet.record_heartbeat("d99", heartbeat(env))
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"d{i:02d}" for i in range(0, 25, 3)] + ["d99"]
    offline = env.fleet.list(None, status=DeviceStatus.OFFLINE, limit=1000)
    assert len(offline.items) == 16 and offline.next_cursor is None
    plain = env.fleet.list(DeviceQuery(search="d1"), limit=100)
    assert [v.id for v in plain.items] == [f"d{i}" for i in range(10, 20)]
    with pytest.raises(InvalidRequest):
        env.fleet.list(None, limit=0)


def test_summary_counts_status_pending_kind_and_site(env: Env) -> None:
    """GIVEN a mixed fleet THEN the counts add up."""
    env.fleet.register(device("c1", site="porto"), actor=None)
    env.fleet.register(device("cam1", DeviceKind.CAMERA, site="porto"), actor=None)
    env.fleet.register(device("s1", DeviceKind.SENSOR, pending=True), actor=None)
    env.fleet.record_heartbeat("c1", heartbeat(env))
    env.fleet.record_heartbeat("cam1", heartbeat(env, health={"fps": 1}))
    s = env.fleet.summary()
    assert (s.total, s.online, s.warning, s.offline, s.pending) == (3, 1, 1, 1, 1)
    assert s.by_kind == {"connector": 1, "camera": 1, "sensor": 1}
    assert s.by_site == {"porto": 2}


# ---------------------------------------------------------------- status transitions


def test_evaluate_records_each_transition_once(env: Env) -> None:
    """GIVEN a connector heartbeating at T0 WHEN the clock moves and evaluate runs twice per
    step THEN online → warning → offline → online, one event and one feed message each."""
    env.fleet.register(device("c1"), actor=None)
    assert env.fleet.evaluate().transitions == []  # never seen: offline from the start
    env.fleet.record_heartbeat("c1", heartbeat(env))
    steps = [(0, "online"), (90, "warning"), (210, "offline")]
    for seconds, status in steps:
        env.clock.advance(seconds)
        first = env.fleet.evaluate()
        assert [t.status.value for t in first.transitions] == [status]
        assert env.fleet.evaluate().transitions == []
    env.clock.advance(60)
    env.fleet.record_heartbeat("c1", heartbeat(env, 2))
    back = env.fleet.evaluate()
    assert [(t.previous.value, t.status.value) for t in back.transitions] == [("offline", "online")]
    assert env.fleet.evaluate().transitions == []
    assert [t for t in history(env, "c1") if t.startswith("status.")] == [
        "status.online",
        "status.warning",
        "status.offline",
        "status.online",
    ]
    feed = [(m["previous"], m["status"]) for m in env.feed.of_type("device.status")]
    assert feed == [
        ("offline", "online"),
        ("online", "warning"),
        ("warning", "offline"),
        ("offline", "online"),
    ]
    offline_event = env.store.device_events.list("c1", limit=100).items
    assert any("no message for 300 s" in e.message for e in offline_event)


def test_status_shown_is_derived_not_the_evaluator_state(env: Env) -> None:
    """GIVEN evaluate saw the device online WHEN time passes without evaluate THEN the view
    is already offline."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.record_heartbeat("c1", heartbeat(env))
    env.fleet.evaluate()
    env.clock.advance(3600)
    view = env.fleet.get("c1")
    assert view is not None and view.status is DeviceStatus.OFFLINE


# ---------------------------------------------------------------- alerts


def test_offline_rule_raises_once_after_n_minutes_and_clears(env: Env) -> None:
    """GIVEN an 'offline for 10 minutes' rule WHEN the device is offline 5 then 10+ minutes
    THEN no alert, then one alert however often evaluate runs; back online THEN cleared."""
    env.fleet.register(device("c1"), actor=None)
    rule = env.fleet.put_rule(
        AlertRule(device_id="c1", kind=AlertRuleKind.OFFLINE, for_minutes=10, severity="critical"),
        actor="ana",
    )
    env.fleet.record_heartbeat("c1", heartbeat(env))
    env.clock.advance(300 + 5 * 60)  # offline since T0+300 s, for 5 minutes
    assert env.fleet.evaluate().alerts_raised == []
    env.clock.advance(5 * 60)
    raised = env.fleet.evaluate().alerts_raised
    assert [(a.rule_id, a.kind, a.severity) for a in raised] == [
        (rule.id, AlertRuleKind.OFFLINE, "critical")
    ]
    for _ in range(3):
        env.clock.advance(60)
        assert env.fleet.evaluate().alerts_raised == []
    active = env.store.alerts.list(state=AlertState.ACTIVE).items
    assert len(active) == 1
    env.fleet.record_heartbeat("c1", heartbeat(env, 2))
    cleared = env.fleet.evaluate().alerts_cleared
    assert [a.id for a in cleared] == [active[0].id]
    assert env.store.alerts.list(state=AlertState.ACTIVE).items == []
    assert env.fleet.evaluate().alerts_cleared == []
    notes = [m["type"] for c, m in env.feed.messages if c == "notifications"]
    assert notes == ["alert.raised", "alert.cleared"]


def test_metric_above_rule_uses_health_then_telemetry(env: Env) -> None:
    """GIVEN temperature_c > 70 WHEN a heartbeat reports 75 THEN raised once; 65 THEN
    cleared; a sensor's telemetry above THEN raised for it too."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.register(device("s1", DeviceKind.SENSOR, parent_id="c1"), actor=None)
    rule = env.fleet.put_rule(
        AlertRule(
            device_id="c1", kind=AlertRuleKind.METRIC_ABOVE, metric="temperature_c", threshold=70
        ),
        actor=None,
    )
    env.fleet.record_heartbeat("c1", heartbeat(env, health={"temperature_c": 75}))
    raised = env.fleet.evaluate().alerts_raised
    assert [(a.rule_id, a.value) for a in raised] == [(rule.id, 75.0)]
    assert "temperature_c 75 above 70" in raised[0].message
    env.clock.advance(10)
    env.fleet.record_heartbeat("c1", heartbeat(env, 2, health={"temperature_c": 76}))
    assert env.fleet.evaluate().alerts_raised == []
    env.clock.advance(10)
    env.fleet.record_heartbeat("c1", heartbeat(env, 3, health={"temperature_c": 65}))
    assert len(env.fleet.evaluate().alerts_cleared) == 1

    env.fleet.put_rule(
        AlertRule(
            device_id="s1", kind=AlertRuleKind.METRIC_BELOW, metric="pressure_bar", threshold=2
        ),
        actor=None,
    )
    env.fleet.record_telemetry(
        "c1",
        Telemetry.model_validate(
            {
                "message_id": "t1",
                "time": env.clock.now,
                "device_id": "s1",
                "samples": [{"metric": "pressure_bar", "value": 1.2, "unit": "bar"}],
            }
        ),
    )
    raised = env.fleet.evaluate().alerts_raised
    assert [(a.device_id, a.value) for a in raised] == [("s1", 1.2)]


def test_metric_rule_waits_for_minutes_and_delete_rule_clears(env: Env) -> None:
    """GIVEN cpu > 80 for 2 minutes WHEN it holds 1 minute THEN nothing; 2 minutes THEN
    raised; the rule deleted THEN the alert is cleared."""
    env.fleet.register(device("c1"), actor=None)
    rule = env.fleet.put_rule(
        AlertRule(
            device_id="c1",
            kind=AlertRuleKind.METRIC_ABOVE,
            metric="cpu_percent",
            threshold=80,
            for_minutes=2,
        ),
        actor=None,
    )
    for _ in range(2):
        env.fleet.record_heartbeat("c1", heartbeat(env, health={"cpu_percent": 85}))
        assert env.fleet.evaluate().alerts_raised == []
        env.clock.advance(60)
    env.fleet.record_heartbeat("c1", heartbeat(env, health={"cpu_percent": 85}))
    assert len(env.fleet.evaluate().alerts_raised) == 1
    assert env.fleet.delete_rule(rule.id, actor="ana") is True
    assert env.store.alerts.list(state=AlertState.ACTIVE).items == []
    assert env.fleet.list_rules("c1") == []
    assert env.fleet.delete_rule(rule.id, actor="ana") is False


def test_put_rule_validates(env: Env) -> None:
    """GIVEN a metric rule without metric, or for an unknown device THEN refused."""
    env.fleet.register(device("c1"), actor=None)
    with pytest.raises(InvalidRequest, match="needs 'metric' and 'threshold'"):
        env.fleet.put_rule(AlertRule(device_id="c1", kind=AlertRuleKind.METRIC_ABOVE), actor=None)
    with pytest.raises(NotFound):
        env.fleet.put_rule(AlertRule(device_id="zz", kind=AlertRuleKind.OFFLINE), actor=None)


# ---------------------------------------------------------------- configuration


def test_desired_config_is_published_retained_and_acknowledged(env: Env) -> None:
    """GIVEN a camera WHEN config is set THEN desired_version 1, retained on its cfg topic;
    WHEN the device reports version 1 THEN reported matches and history says acknowledged."""
    env.fleet.register(device("cam1", DeviceKind.CAMERA), actor=None)
    view = env.fleet.set_desired_config("cam1", {"fps": 10}, expected_version=0, actor="ana")
    assert (view.desired_version, view.desired_config) == (1, {"fps": 10})
    topic, payload, retain = env.link.published[-1]
    assert (topic, retain) == ("cfg/aios/cam1/desired", True)
    assert (payload["version"], payload["config"], payload["schema_version"]) == (1, {"fps": 10}, 1)
    with pytest.raises(Conflict, match="at version 1, not 0"):
        env.fleet.set_desired_config("cam1", {"fps": 5}, expected_version=0, actor=None)

    env.fleet.record_events(
        "cam1", events(env, {"type": "config.reported", "data": {"version": 1}})
    )
    stored = env.fleet.get("cam1")
    assert stored is not None
    assert (stored.reported_version, stored.reported_config) == (1, {"fps": 10})
    assert "config.acknowledged" in history(env, "cam1")


def test_config_refusals_and_bogus_reports_change_nothing(env: Env) -> None:
    """GIVEN desired v2 WHEN the device refuses v2, or reports v7 THEN reported unchanged;
    a report whose data is not a ConfigReport THEN InvalidRequest."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.set_desired_config("c1", {"a": 1}, expected_version=None, actor=None)
    env.fleet.set_desired_config("c1", {"a": 2}, expected_version=None, actor=None)
    env.clock.advance(1)
    env.fleet.record_events(
        "c1",
        events(
            env,
            {"type": "config.reported", "data": {"version": 2, "accepted": False, "error": "no"}},
            message_id="e1",
        ),
    )
    env.clock.advance(1)
    env.fleet.record_events(
        "c1", events(env, {"type": "config.reported", "data": {"version": 7}}, message_id="e2")
    )
    d = env.fleet.get("c1")
    assert d is not None and (d.reported_version, d.reported_config) == (0, {})
    assert history(env, "c1")[-2:] == ["config.refused", "config.report_ignored"]
    with pytest.raises(InvalidRequest, match="not a config report"):
        env.fleet.record_events(
            "c1", events(env, {"type": "config.reported", "data": {"v": 1}}, message_id="e3")
        )
    with pytest.raises(InvalidRequest, match="JSON"):
        env.fleet.set_desired_config("c1", {"a": float("nan")}, expected_version=None, actor=None)
    with pytest.raises(InvalidRequest, match="bytes"):
        env.fleet.set_desired_config("c1", {"a": "x" * 200_000}, expected_version=None, actor=None)


def test_desired_config_without_link_is_stored(env: Env) -> None:
    """GIVEN a process without a device link WHEN config is set THEN stored, not published."""
    env.services.link = None
    env.fleet.register(device("c1"), actor=None)
    assert (
        env.fleet.set_desired_config(
            "c1", {"x": 1}, expected_version=None, actor=None
        ).desired_version
        == 1
    )
    desired = [e for e in env.store.device_events.list("c1").items if e.type == "config.desired"]
    assert desired[0].data["published"] is False


# ---------------------------------------------------------------- commands


def test_command_round_trip_and_child_goes_through_its_connector(env: Env) -> None:
    """GIVEN a PLC behind a connector WHEN a command is sent THEN published on the
    connector's request topic with the PLC as target; the connector's response completes it."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.register(device("plc1", DeviceKind.PLC, parent_id="c1"), actor=None)
    cmd = env.fleet.send_command(
        "plc1", "write_coil", {"address": 3, "value": True}, actor="ana", timeout_seconds=10
    )
    assert cmd.status is CommandStatus.PENDING
    assert cmd.deadline == env.clock.now + timedelta(seconds=10)
    topic, payload, retain = env.link.published[-1]
    assert (topic, retain) == ("cmd/aios/c1/req", False)
    assert (payload["request_id"], payload["device_id"], payload["name"]) == (
        cmd.request_id,
        "plc1",
        "write_coil",
    )
    env.clock.advance(2)
    res = CommandResponse(
        message_id="r",
        time=env.clock.now,
        request_id=cmd.request_id,
        ok=True,
        result={"written": 1},
    )
    done = env.fleet.record_command_response("c1", res)
    assert (
        done is not None
        and done.status is CommandStatus.SUCCEEDED
        and done.response == {"written": 1}
    )
    assert env.fleet.record_command_response("c1", res) is None  # already answered
    assert sorted(history(env, "plc1")) == [
        "command.sent",
        "command.succeeded",
        "device.registered",
    ]


def test_commands_time_out_and_late_answers_are_kept_out(env: Env) -> None:
    """GIVEN two commands with 5 s timeouts WHEN 6 s pass THEN expire_commands times one out,
    a response to the other after its deadline is ignored and it is timed out too."""
    env.fleet.register(device("c1"), actor=None)
    a = env.fleet.send_command("c1", "reboot", {}, actor=None, timeout_seconds=5)
    b = env.fleet.send_command("c1", "snapshot", {}, actor=None, timeout_seconds=5)
    env.clock.advance(6)
    late = CommandResponse(message_id="x", time=env.clock.now, request_id=b.request_id, ok=True)
    assert env.fleet.record_command_response("c1", late) is None
    assert env.fleet.expire_commands() == 1
    for c in (a, b):
        stored = env.store.commands.get(c.request_id)
        assert (
            stored is not None
            and stored.status is CommandStatus.TIMED_OUT
            and stored.response is None
        )
    assert env.fleet.expire_commands() == 0
    c = env.fleet.send_command("c1", "reboot", {}, actor=None)  # default: the setting (30 s)
    assert c.deadline == env.clock.now + timedelta(seconds=30)
    env.clock.advance(31)
    assert env.fleet.evaluate().commands_timed_out == 1


def test_command_errors(env: Env) -> None:
    """GIVEN no link, a failing link, a response from another device or for no request
    THEN clear errors."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.register(device("c2"), actor=None)
    with pytest.raises(NotFound):
        env.fleet.send_command("zz", "reboot", {}, actor=None)
    with pytest.raises(InvalidRequest, match="timeout_seconds"):
        env.fleet.send_command("c1", "reboot", {}, actor=None, timeout_seconds=0)
    env.link.fail = True
    with pytest.raises(DeviceUnreachable, match="could not publish"):
        env.fleet.send_command("c1", "reboot", {}, actor=None)
    failed = env.store.commands.list("c1").items[0]
    assert failed.status is CommandStatus.FAILED
    env.link.fail = False
    cmd = env.fleet.send_command("c1", "reboot", {}, actor=None)
    res = CommandResponse(message_id="x", time=env.clock.now, request_id=cmd.request_id, ok=True)
    with pytest.raises(MessageRefused) as refused:
        env.fleet.record_command_response("c2", res)
    assert refused.value.reason == "wrong_device"
    with pytest.raises(MessageRefused) as unknown:
        env.fleet.record_command_response("c1", res.model_copy(update={"request_id": "nope"}))
    assert unknown.value.reason == "unknown_command"
    env.services.link = None
    with pytest.raises(DeviceUnreachable, match="no connection"):
        env.fleet.send_command("c1", "reboot", {}, actor=None)


# ---------------------------------------------------------------- ingestion rules


def test_unknown_devices_are_refused_unless_pending_is_allowed(env: Env) -> None:
    """GIVEN an unknown device WHEN it heartbeats THEN refused; WHEN the 'fleet' setting
    allows pending THEN registered pending with the kind it says, and its data kept."""
    with pytest.raises(MessageRefused) as refused:
        env.fleet.record_heartbeat("new1", heartbeat(env))
    assert refused.value.reason == "unknown_device"
    assert env.fleet.get("new1") is None
    env.store.settings.put("fleet", {"allow_pending": True})
    env.fleet.record_heartbeat("new1", heartbeat(env, kind=DeviceKind.CAMERA, health={"fps": 12}))
    view = env.fleet.get("new1")
    assert view is not None and view.pending and view.kind is DeviceKind.CAMERA
    assert view.status is DeviceStatus.ONLINE and view.health == {
        "fps": 12,
        HEARTBEAT_TIME_KEY: T0.isoformat(),
    }
    approved = env.fleet.update("new1", {"pending": False}, expected_version=None, actor="ana")
    assert approved.pending is False


def test_pending_setting_registers_unknown_children_under_their_connector(env: Env) -> None:
    """GIVEN the allow_pending_devices setting WHEN a connector sends telemetry about an
    unknown device THEN that device is registered pending, as the connector's child."""
    env.services.settings.allow_pending_devices = True
    env.fleet.register(device("c1"), actor=None)
    msg = Telemetry.model_validate(
        {
            "message_id": "t1",
            "time": env.clock.now,
            "device_id": "plc9",
            "samples": [{"metric": "hr.40001", "value": 7}],
        }
    )
    assert env.fleet.record_telemetry("c1", msg) == 1
    child = env.fleet.get("plc9")
    assert child is not None and child.pending and child.parent_id == "c1"
    assert child.kind is DeviceKind.SENSOR
    assert env.store.telemetry.latest("plc9")["hr.40001"].value == 7


def test_connector_publishes_for_its_children_only(env: Env) -> None:
    """GIVEN c1 with child s1 and c2 WHEN c1 sends a heartbeat about s1 THEN s1 and c1 are
    seen; about c2 THEN not_a_child; about an unknown device THEN unknown_device."""
    env.fleet.register(device("c1"), actor=None)
    env.fleet.register(device("c2"), actor=None)
    env.fleet.register(device("s1", DeviceKind.SENSOR, parent_id="c1"), actor=None)
    env.fleet.record_heartbeat("c1", heartbeat(env, device_id="s1", health={"queue_depth": 1}))
    s1, c1 = env.fleet.get("s1"), env.fleet.get("c1")
    assert s1 is not None and c1 is not None
    assert s1.last_seen == env.clock.now and s1.health == {
        "queue_depth": 1,
        HEARTBEAT_TIME_KEY: T0.isoformat(),
    }
    assert c1.last_seen == env.clock.now and c1.health == {}
    for about, reason in (("c2", "not_a_child"), ("ghost", "unknown_device")):
        with pytest.raises(MessageRefused) as refused:
            env.fleet.record_heartbeat("c1", heartbeat(env, device_id=about))
        assert refused.value.reason == reason


def test_events_are_stored_once_per_message_id(env: Env) -> None:
    """GIVEN a device event message WHEN recorded twice (QoS 1 redelivery) THEN stored once
    and published on the feed."""
    env.fleet.register(device("c1"), actor=None)
    msg = events(env, {"type": "door.opened", "severity": "warning", "data": {"door": 2}})
    env.fleet.record_events("c1", msg)
    env.fleet.record_events("c1", msg)
    stored = env.store.device_events.list("c1").items
    doors = [e for e in stored if e.type == "door.opened"]
    assert len(doors) == 1 and doors[0].data == {"door": 2} and doors[0].severity == "warning"
    assert env.feed.of_type("device.event")[0]["event"]["type"] == "door.opened"
