"""What the console's dashboard and alert feed read: pipeline events acknowledged from the
feed and filtered by severity and acknowledgement, every alert rule, the key figures
(uptime, devices, active pipelines, alerts of the last 24 h) and availability by hour."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from api_client import ApiClient
from api_support import Account, ManualClock

from aios.domain import (
    Alert,
    AlertRule,
    AlertRuleKind,
    Device,
    DeviceEvent,
    DeviceKind,
    EventRecord,
    Run,
    RunStatus,
)


class RecordingFeed:
    """A live feed that keeps what was published."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.messages.append((channel, message))


def put_event(api: ApiClient, event_id: str, time: datetime, severity: str, **data: Any) -> None:
    api.app.services.store.events.put(
        EventRecord(
            id=event_id,
            pipeline_id="pl_intrusion",
            run_id="run_1",
            node_id="alarm",
            type="loitering",
            time=time,
            severity=severity,
            data={"dashboard": {"node_id": "alarm", "panel": "Alarms", "severity": severity}}
            | data,
        )
    )


def test_acknowledge_a_pipeline_event_from_the_feed(
    api: ApiClient, operator: Account, viewer: Account, admin: Account, clock: ManualClock
) -> None:
    feed = RecordingFeed()
    api.app.services.feed = feed
    t0 = clock()
    put_event(api, "evt_a", clock() - timedelta(minutes=5), "critical")
    put_event(api, "evt_b", clock() - timedelta(minutes=4), "warning")
    put_event(api, "evt_c", clock() - timedelta(minutes=3), "info")
    # WHEN an operator acknowledges an event
    clock.advance(seconds=30)
    res = api.post("/api/v1/events/evt_a/acknowledge", token=operator.token)
    # THEN the event records who and when, and the feed announces it
    assert res.status == 200, res.text
    body = res.json()
    assert (body["id"], body["acknowledged_by"]) == ("evt_a", "oscar")
    assert datetime.fromisoformat(body["acknowledged_at"]) == clock()
    assert feed.messages == [("notifications", {"type": "event.acknowledged", "event": body})]
    # AND a second acknowledgement keeps the first
    clock.advance(seconds=30)
    again = api.post("/api/v1/events/evt_a/acknowledge", token=admin.token)
    assert again.status == 200 and again.json()["acknowledged_by"] == "oscar"
    assert again.json()["acknowledged_at"] == body["acknowledged_at"]
    # AND the write is audited; viewers may not acknowledge; an unknown event is a 404
    audit = api.get("/api/v1/audit", token=admin.token, query={"target_id": "evt_a"}).json()
    assert [e["action"] for e in audit["items"]] == ["event.acknowledge", "event.acknowledge"]
    assert api.post("/api/v1/events/evt_b/acknowledge", token=viewer.token).status == 403
    missing = api.post("/api/v1/events/evt_nope/acknowledge", token=operator.token)
    assert missing.status == 404 and missing.error["code"] == "not_found"

    # the feed's filters
    def ids(**query: object) -> list[str]:
        listed = api.get("/api/v1/events", token=viewer.token, query=query)
        assert listed.status == 200, listed.text
        return [e["id"] for e in listed.json()["items"]]

    assert ids(acknowledged="false") == ["evt_c", "evt_b"]
    assert ids(acknowledged="true") == ["evt_a"]
    assert ids(severity="critical") == ["evt_a"]
    assert ids(severity="warning", acknowledged="false") == ["evt_b"]
    since = (t0 - timedelta(minutes=6)).isoformat()
    until = (t0 - timedelta(minutes=4)).isoformat()
    assert ids(since=since, until=until) == ["evt_a"]
    bad = api.get("/api/v1/events", token=viewer.token, query={"acknowledged": "perhaps"})
    assert bad.status == 422 and bad.fields() == ["query.acknowledged"]


def test_every_alert_rule_of_the_fleet(api: ApiClient, operator: Account, viewer: Account) -> None:
    for device_id in ("cam-1", "plc-1"):
        kind = "camera" if device_id.startswith("cam") else "plc"
        body = {"id": device_id, "name": device_id, "kind": kind}
        assert api.post("/api/v1/devices", body, token=operator.token).status == 201
    made = [
        api.post(f"/api/v1/devices/{d}/alert-rules", rule, token=operator.token).json()["id"]
        for d, rule in (
            ("cam-1", {"kind": "offline", "for_minutes": 5}),
            ("plc-1", {"kind": "metric_above", "metric": "temp", "threshold": 70}),
            ("plc-1", {"kind": "offline"}),
        )
    ]
    everything = api.get("/api/v1/alert-rules", token=viewer.token).json()
    assert [r["id"] for r in everything["items"]] == sorted(made)
    assert everything["next_cursor"] is None
    first = api.get("/api/v1/alert-rules", token=viewer.token, query={"limit": 2}).json()
    rest = api.get(
        "/api/v1/alert-rules", token=viewer.token, query={"cursor": first["next_cursor"]}
    ).json()
    assert [r["id"] for r in first["items"] + rest["items"]] == sorted(made)
    plc = api.get("/api/v1/alert-rules", token=viewer.token, query={"device_id": "plc-1"}).json()
    assert {r["device_id"] for r in plc["items"]} == {"plc-1"} and len(plc["items"]) == 2


def test_system_key_figures(api: ApiClient, viewer: Account, clock: ManualClock) -> None:
    store = api.app.services.store
    now = clock()
    # GIVEN two devices seen just now and one never seen
    for device_id, seen in (("cam-1", now), ("cam-2", now), ("cam-3", None)):
        store.devices.create(
            Device(id=device_id, name=device_id, kind=DeviceKind.CAMERA, last_seen=seen)
        )
    # AND two pipelines running, one stopped
    for run_id, pipeline_id, status in (
        ("run_1", "pl_a", RunStatus.RUNNING),
        ("run_2", "pl_b", RunStatus.STARTING),
        ("run_3", "pl_c", RunStatus.STOPPED),
    ):
        store.runs.create(Run(id=run_id, pipeline_id=pipeline_id, revision=1, status=status))
    # AND alerts raised 1 h and 30 h ago (the recent one acknowledged), events of the day
    for alert_id, hours in (("alert_new", 1), ("alert_old", 30)):
        store.alerts.raise_alert(
            Alert(
                id=alert_id,
                device_id="cam-3",
                rule_id=f"rule_{alert_id}",
                kind=AlertRuleKind.OFFLINE,
                message="offline",
                raised_at=now - timedelta(hours=hours),
            )
        )
    store.alerts.acknowledge("alert_new", by="oscar", at=now)
    put_event(api, "evt_1", now - timedelta(hours=2), "critical")
    put_event(api, "evt_2", now - timedelta(hours=3), "info")
    put_event(api, "evt_3", now - timedelta(hours=25), "critical")
    # WHEN the dashboard asks 90 s after the service started
    clock.advance(seconds=90)
    res = api.get("/api/v1/system", token=viewer.token)
    assert res.status == 200, res.text
    body = res.json()
    fleet = api.get("/api/v1/analytics/devices", token=viewer.token).json()
    assert body["uptime_seconds"] == 90.0
    assert datetime.fromisoformat(body["time"]) - datetime.fromisoformat(body["started_at"]) == (
        timedelta(seconds=90)
    )
    assert body["devices_total"] == 3
    assert (body["devices_online"], body["devices_warning"], body["devices_offline"]) == (
        fleet["online"],
        fleet["warning"],
        fleet["offline"],
    )
    assert body["devices_offline"] == 1
    assert (body["active_pipelines"], body["active_runs"]) == (2, 2)
    assert (body["active_alerts"], body["alerts_unacknowledged"]) == (2, 1)
    assert body["alerts_last_24h"] == 1
    assert (body["events_last_24h"], body["notable_events_last_24h"]) == (2, 1)


def test_availability_by_hour_from_status_transitions(
    api: ApiClient, viewer: Account, clock: ManualClock
) -> None:
    store = api.app.services.store
    h0 = clock().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)

    def transition(device_id: str, minutes: float, status: str, previous: str) -> None:
        store.device_events.append(
            DeviceEvent(
                device_id=device_id,
                time=h0 + timedelta(minutes=minutes),
                type=f"status.{status}",
                data={"previous": previous, "reasons": []},
            )
        )

    # GIVEN gw-1, registered before the window: online from h0, offline from h0+1:30
    store.devices.create(
        Device(id="gw-1", name="gw", kind=DeviceKind.CONNECTOR, created_at=h0 - timedelta(hours=1))
    )
    transition("gw-1", -50, "online", "offline")
    transition("gw-1", -20, "offline", "online")
    transition("gw-1", 0, "online", "offline")
    transition("gw-1", 90, "offline", "online")
    # AND cam-1, registered at h0+2:00: online, then warning from h0+2:30
    store.devices.create(
        Device(id="cam-1", name="cam", kind=DeviceKind.CAMERA, created_at=h0 + timedelta(hours=2))
    )
    transition("cam-1", 120, "online", "offline")
    transition("cam-1", 150, "warning", "online")
    # WHEN the dashboard asks for those three hours
    res = api.get(
        "/api/v1/analytics/availability",
        token=viewer.token,
        query={"since": h0.isoformat(), "until": (h0 + timedelta(hours=3)).isoformat()},
    )
    # THEN each hour gives the share of device-time online and not offline
    assert res.status == 200, res.text
    hours = [(h["devices"], h["online_ratio"], h["available_ratio"]) for h in res.json()["by_hour"]]
    assert hours == [(1, 1.0, 1.0), (1, 0.5, 0.5), (2, 0.25, 0.5)]
    assert [datetime.fromisoformat(h["hour"]) for h in res.json()["by_hour"]] == [
        h0 + timedelta(hours=i) for i in range(3)
    ]
    # AND the default window is the last 24 hours, hour by hour
    default = api.get("/api/v1/analytics/availability", token=viewer.token).json()
    assert len(default["by_hour"]) in (24, 25)
    assert default["by_hour"][-1]["devices"] == 2
    # AND a window longer than 31 days, or reversed, is refused
    long = api.get(
        "/api/v1/analytics/availability",
        token=viewer.token,
        query={"since": (h0 - timedelta(days=40)).isoformat()},
    )
    assert long.status == 422 and long.fields() == ["query.since"]
    reversed_ = api.get(
        "/api/v1/analytics/availability",
        token=viewer.token,
        query={"since": h0.isoformat(), "until": (h0 - timedelta(hours=1)).isoformat()},
    )
    assert reversed_.status == 422


def test_alert_rule_model_is_the_domain_one() -> None:
    """The list answers domain AlertRule records (the console's type)."""
    assert AlertRule.model_fields.keys() >= {"id", "device_id", "kind", "severity", "enabled"}
