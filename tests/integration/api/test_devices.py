"""``/api/v1/devices``: registration, edits, filters, history, telemetry, desired config,
commands over a real MQTT broker, alert rules, and the fleet analytics."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from api_client import ApiClient
from api_support import Account, ManualClock, add_user, make_settings
from paho.mqtt.enums import CallbackAPIVersion

from aios.api.app import create_app
from aios.domain import Alert, AlertRuleKind, DeviceEvent, Role, TelemetryPoint
from aios.services import Services
from aios.store.sqlite import SqliteStore
from aios.up.broker import EmbeddedBroker, MqttDeviceLink

DEVICES = "/api/v1/devices"


def register(api: ApiClient, token: str, device_id: str, **fields: object) -> dict[str, object]:
    body = {"id": device_id, "name": f"Device {device_id}", "kind": "camera"} | fields
    res = api.post(DEVICES, body, token=token)
    assert res.status == 201, res.text
    return res.json()  # type: ignore[no-any-return]


def test_register_read_update_delete(api: ApiClient, operator: Account, admin: Account) -> None:
    """An operator manages devices; status is derived (offline until heard from)."""
    created = register(
        api,
        operator.token,
        "gw-1",
        kind="connector",
        site="dock",
        tags=["north"],
        location={"lat": -23.55, "lon": -46.63},
    )
    assert (created["status"], created["status_reasons"], created["version"]) == (
        "offline",
        ["never seen"],
        1,
    )
    register(api, operator.token, "cam-1", parent_id="gw-1")
    # WHEN read
    assert api.get(f"{DEVICES}/gw-1", token=operator.token).json()["site"] == "dock"
    # WHEN updated with the version read; a stale version is a conflict
    res = api.put(f"{DEVICES}/gw-1", {"name": "Gateway", "version": 1}, token=operator.token)
    assert res.status == 200 and res.json()["name"] == "Gateway"
    stale = api.put(f"{DEVICES}/gw-1", {"name": "Again", "version": 1}, token=operator.token)
    assert stale.status == 409
    # AND clearing a field with null
    res = api.put(f"{DEVICES}/gw-1", {"site": None, "location": None}, token=operator.token)
    assert (res.json()["site"], res.json()["location"]) == (None, None)
    # WHEN a parent with children is deleted: conflict
    assert api.delete(f"{DEVICES}/gw-1", token=operator.token).status == 409
    assert api.delete(f"{DEVICES}/cam-1", token=operator.token).status == 204
    assert api.delete(f"{DEVICES}/gw-1", token=operator.token).status == 204
    assert api.get(f"{DEVICES}/gw-1", token=operator.token).status == 404
    assert api.delete(f"{DEVICES}/gw-1", token=operator.token).status == 404
    # AND the history survives the device and records who did what
    history = api.app.services.store.device_events.list("gw-1").items
    assert sorted(e.type for e in history) == [
        "device.deleted",
        "device.registered",
        "device.updated",
        "device.updated",
    ]
    audit = api.get("/api/v1/audit", token=admin.token, query={"target_id": "gw-1"}).json()
    assert {(e["action"], e["outcome"]) for e in audit["items"]} >= {
        ("device.create", "success"),
        ("device.update", "success"),
        ("device.update", "failure"),
        ("device.delete", "success"),
    }


def test_conflicts_and_bad_bodies(api: ApiClient, operator: Account) -> None:
    """Duplicate ids are 409; bad fields are 422 with their paths."""
    register(api, operator.token, "cam-1")
    dup = api.post(DEVICES, {"id": "cam-1", "name": "x", "kind": "camera"}, token=operator.token)
    assert dup.status == 409 and dup.error["code"] == "device_exists"
    bad = api.post(
        DEVICES,
        {"id": "a/b", "name": "", "kind": "robot", "location": {"lat": 91, "lon": 0}},
        token=operator.token,
    )
    assert bad.status == 422
    assert sorted(bad.fields()) == ["body.id", "body.kind", "body.location.lat", "body.name"]
    no_parent = api.post(
        DEVICES,
        {"id": "cam-2", "name": "x", "kind": "camera", "parent_id": "nope"},
        token=operator.token,
    )
    assert no_parent.status == 422 and no_parent.fields() == ["body.parent_id"]
    not_a_connector = api.post(
        DEVICES,
        {"id": "cam-3", "name": "x", "kind": "camera", "parent_id": "cam-1"},
        token=operator.token,
    )
    assert not_a_connector.status == 422 and "connector" in not_a_connector.error["message"]
    unknown = api.put(f"{DEVICES}/nope", {"name": "x"}, token=operator.token)
    assert unknown.status == 404
    null_name = api.put(f"{DEVICES}/cam-1", {"name": None}, token=operator.token)
    assert null_name.status == 422 and null_name.fields() == ["body.name"]


def test_list_filters_and_pagination(
    api: ApiClient, viewer: Account, operator: Account, clock: ManualClock
) -> None:
    """Search, kind, site, tag, status and location box filters; cursor pagination."""
    register(
        api, operator.token, "cam-a", site="dock", tags=["north"], location={"lat": 1, "lon": 1}
    )
    register(api, operator.token, "cam-b", site="dock", location={"lat": 50, "lon": 50})
    register(api, operator.token, "plc-1", kind="plc", name="Siren PLC")
    register(api, operator.token, "sensor-1", kind="sensor")
    api.app.services.store.devices.touch("cam-b", clock())

    def ids(**query: object) -> list[str]:
        res = api.get(DEVICES, token=viewer.token, query=query)
        assert res.status == 200, res.text
        return [d["id"] for d in res.json()["items"]]

    assert ids() == ["cam-a", "cam-b", "plc-1", "sensor-1"]
    assert ids(search="SIREN") == ["plc-1"]
    assert ids(kind="plc") == ["plc-1"]
    assert ids(site="dock") == ["cam-a", "cam-b"]
    assert ids(tag="north") == ["cam-a"]
    assert ids(status="online") == ["cam-b"]
    assert ids(status="offline") == ["cam-a", "plc-1", "sensor-1"]
    assert ids(min_lat=0, min_lon=0, max_lat=10, max_lon=10) == ["cam-a"]
    res = api.get(DEVICES, token=viewer.token, query={"min_lat": 0})
    assert res.status == 422 and res.fields() == ["query.min_lon"]
    res = api.get(
        DEVICES, token=viewer.token, query={"min_lat": 5, "min_lon": 0, "max_lat": 1, "max_lon": 1}
    )
    assert res.status == 422 and res.fields() == ["query.min_lat"]
    assert api.get(DEVICES, token=viewer.token, query={"status": "lost"}).fields() == [
        "query.status"
    ]
    # AND pages of 3 then 1
    first = api.get(DEVICES, token=viewer.token, query={"limit": 3}).json()
    assert len(first["items"]) == 3 and first["next_cursor"]
    second = api.get(
        DEVICES, token=viewer.token, query={"limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [d["id"] for d in second["items"]] == ["sensor-1"] and second["next_cursor"] is None
    bad = api.get(DEVICES, token=viewer.token, query={"cursor": "%%%"})
    assert bad.status == 422 and bad.fields() == ["query.cursor"]


def test_history_and_telemetry(
    api: ApiClient, viewer: Account, operator: Account, clock: ManualClock
) -> None:
    """Device events newest first, telemetry oldest first, with metric and time filters."""
    register(api, operator.token, "sensor-1", kind="sensor")
    store = api.app.services.store
    t0 = clock()
    store.telemetry.append(
        [
            TelemetryPoint(device_id="sensor-1", metric=m, time=t0 + timedelta(minutes=i), value=i)
            for i in range(5)
            for m in ("temp", "humidity")
        ]
    )
    store.device_events.append(
        DeviceEvent(device_id="sensor-1", time=t0 + timedelta(minutes=1), type="status.online")
    )
    url = f"{DEVICES}/sensor-1/telemetry"
    res = api.get(url, token=viewer.token, query={"metric": "temp"})
    assert [p["value"] for p in res.json()["items"]] == [0, 1, 2, 3, 4]
    since = (t0 + timedelta(minutes=1)).isoformat()
    until = (t0 + timedelta(minutes=3)).isoformat()
    res = api.get(url, token=viewer.token, query={"metric": "temp", "since": since, "until": until})
    assert [p["value"] for p in res.json()["items"]] == [1, 2]
    page = api.get(url, token=viewer.token, query={"limit": 4}).json()
    assert len(page["items"]) == 4 and page["next_cursor"]
    bad = api.get(url, token=viewer.token, query={"since": "yesterday"})
    assert bad.status == 422 and bad.fields() == ["query.since"]
    events = api.get(f"{DEVICES}/sensor-1/events", token=viewer.token).json()["items"]
    assert [e["type"] for e in events] == ["status.online", "device.registered"]
    assert api.get(f"{DEVICES}/nope/events", token=viewer.token).status == 404
    assert api.get(f"{DEVICES}/nope/telemetry", token=viewer.token).status == 404


def test_commands_need_a_device_link(api: ApiClient, operator: Account) -> None:
    """Without a link to the broker (an API function in the cloud), commands are 503."""
    register(api, operator.token, "plc-1", kind="plc")
    res = api.post(f"{DEVICES}/plc-1/command", {"name": "reboot"}, token=operator.token)
    assert res.status == 503 and res.error["code"] == "device_unreachable"
    assert api.post(f"{DEVICES}/nope/command", {"name": "x"}, token=operator.token).status == 404
    bad = api.post(
        f"{DEVICES}/plc-1/command", {"name": "", "timeout_seconds": 0}, token=operator.token
    )
    assert sorted(bad.fields()) == ["body.name", "body.timeout_seconds"]


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    embedded = EmbeddedBroker("127.0.0.1", 0)
    embedded.start()
    yield embedded
    embedded.stop()


def test_command_and_desired_config_reach_the_device_over_mqtt(
    tmp_path: Path,
    store: SqliteStore,
    clock: ManualClock,
    password_hash: str,
    broker: EmbeddedBroker,
) -> None:
    """A command is published on the connector's request topic with a request id; the
    desired config is published retained on the device's cfg topic."""
    link = MqttDeviceLink(broker.address)
    assert link.start(wait=10)
    services = Services(store=store, settings=make_settings(tmp_path), clock=clock, link=link)
    app = create_app(services)
    api = ApiClient(app)
    operator = add_user(app, "oscar", Role.OPERATOR, password_hash)
    register(api, operator.token, "gw-1", kind="connector")
    register(api, operator.token, "plc-1", kind="plc", parent_id="gw-1")
    received: queue.Queue[tuple[str, dict[str, object], bool]] = queue.Queue()
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-1")
    device.on_message = lambda _c, _u, m: received.put(
        (m.topic, json.loads(m.payload), bool(m.retain))
    )
    subscribed = queue.Queue[int]()
    device.on_subscribe = lambda *_a: subscribed.put(1)
    device.connect(broker.address.host, broker.address.port)
    device.loop_start()
    try:
        device.subscribe([("cmd/aios/gw-1/req", 1)])
        subscribed.get(timeout=10)
        # WHEN a command is sent to the PLC behind the connector
        res = api.post(
            f"{DEVICES}/plc-1/command",
            {"name": "write_coil", "params": {"address": 3, "value": True}, "timeout_seconds": 5},
            token=operator.token,
        )
        # THEN it is accepted as pending and reaches the connector's request topic
        assert res.status == 202, res.text
        command = res.json()
        assert (command["status"], command["requested_by"]) == ("pending", "oscar")
        topic, payload, _retained = received.get(timeout=10)
        assert topic == "cmd/aios/gw-1/req"
        assert (payload["request_id"], payload["device_id"], payload["params"]) == (
            command["request_id"],
            "plc-1",
            {"address": 3, "value": True},
        )
        # AND its audit entry keeps the HTTP request's id apart from the command's
        admin = add_user(app, "alice", Role.ADMIN, password_hash)
        audit = api.get(
            "/api/v1/audit", token=admin.token, query={"target_id": "plc-1", "limit": 100}
        ).json()
        (sent,) = [e for e in audit["items"] if e["action"] == "device.command"]
        assert sent["detail"]["request_id"] == res.headers["x-request-id"]
        assert sent["detail"]["command_request_id"] == command["request_id"]
        # AND it can be read back, and listed
        url = f"{DEVICES}/plc-1/commands/{command['request_id']}"
        assert api.get(url, token=operator.token).json()["request_id"] == command["request_id"]
        assert (
            api.get(f"{DEVICES}/gw-1/commands/{command['request_id']}", token=operator.token).status
            == 404
        )
        listed = api.get(f"{DEVICES}/plc-1/commands", token=operator.token).json()["items"]
        assert [c["request_id"] for c in listed] == [command["request_id"]]
        # WHEN the desired config is set
        res = api.put(
            f"{DEVICES}/plc-1/config",
            {"config": {"poll_seconds": 2}, "expected_version": 0},
            token=operator.token,
        )
        assert res.status == 200, res.text
        assert (res.json()["desired_version"], res.json()["desired_config"]) == (
            1,
            {"poll_seconds": 2},
        )
        # THEN a device subscribing afterwards gets it: it was published retained
        device.subscribe([("cfg/aios/plc-1/desired", 1)])
        topic, payload, retained = received.get(timeout=10)
        assert (topic, payload["version"], payload["config"], retained) == (
            "cfg/aios/plc-1/desired",
            1,
            {"poll_seconds": 2},
            True,
        )
        # AND a stale expected version is a conflict
        stale = api.put(
            f"{DEVICES}/plc-1/config", {"config": {}, "expected_version": 0}, token=operator.token
        )
        assert stale.status == 409
    finally:
        device.loop_stop()
        device.disconnect()
        link.close()


def test_alert_rules_and_alerts(
    api: ApiClient, viewer: Account, operator: Account, clock: ManualClock
) -> None:
    """Rules per device (paginated), alerts listed by state and acknowledged once."""
    register(api, operator.token, "cam-1")
    url = f"{DEVICES}/cam-1/alert-rules"
    created = []
    for body in (
        {"kind": "offline", "for_minutes": 5},
        {"kind": "metric_above", "metric": "temperature_c", "threshold": 80},
        {"kind": "metric_below", "metric": "fps", "threshold": 5, "severity": "critical"},
    ):
        res = api.post(url, body, token=operator.token)
        assert res.status == 201, res.text
        created.append(res.json()["id"])
    bad = api.post(url, {"kind": "metric_above"}, token=operator.token)
    assert bad.status == 422 and "metric" in bad.error["message"]
    assert api.post(url, {"kind": "x", "severity": "loud"}, token=operator.token).fields() == [
        "body.kind",
        "body.severity",
    ]
    first = api.get(url, token=viewer.token, query={"limit": 2}).json()
    rest = api.get(url, token=viewer.token, query={"cursor": first["next_cursor"]}).json()
    assert [r["id"] for r in first["items"] + rest["items"]] == sorted(created)
    assert rest["next_cursor"] is None
    assert api.get(url, token=viewer.token, query={"cursor": "zz"}).fields() == ["query.cursor"]
    # WHEN an alert is raised (by the fleet's evaluator) and acknowledged
    store = api.app.services.store
    alert = Alert(
        device_id="cam-1",
        rule_id=created[0],
        kind=AlertRuleKind.OFFLINE,
        message="Device cam-1 offline",
        raised_at=clock(),
    )
    assert store.alerts.raise_alert(alert)
    active = api.get("/api/v1/alerts", token=viewer.token, query={"state": "active"}).json()
    assert [a["id"] for a in active["items"]] == [alert.id]
    assert (
        api.get("/api/v1/alerts", token=viewer.token, query={"state": "cleared"}).json()["items"]
        == []
    )
    ack = api.post(f"/api/v1/alerts/{alert.id}/acknowledge", token=operator.token)
    assert ack.status == 200 and ack.json()["acknowledged_by"] == "oscar"
    again = api.post(f"/api/v1/alerts/{alert.id}/acknowledge", token=operator.token)
    assert again.json()["acknowledged_at"] == ack.json()["acknowledged_at"]
    assert api.post("/api/v1/alerts/nope/acknowledge", token=operator.token).status == 404
    # AND the analytics count it
    summary = api.get("/api/v1/analytics/devices", token=viewer.token).json()
    assert (summary["total"], summary["offline"], summary["active_alerts"]) == (1, 1, 1)
    # WHEN a rule is deleted, its active alert is cleared
    assert api.delete(f"/api/v1/alert-rules/{created[0]}", token=operator.token).status == 204
    assert api.delete(f"/api/v1/alert-rules/{created[0]}", token=operator.token).status == 404
    cleared = api.get("/api/v1/alerts", token=viewer.token, query={"state": "cleared"}).json()
    assert [a["id"] for a in cleared["items"]] == [alert.id]


def test_device_analytics(
    api: ApiClient, viewer: Account, operator: Account, clock: ManualClock
) -> None:
    """Counts by derived status, kind and site, and availability percentages."""
    assert (
        api.get("/api/v1/analytics/devices", token=viewer.token).json()["availability_percent"] == 0
    )
    for i in range(4):
        register(api, operator.token, f"cam-{i}", site="dock" if i < 2 else None)
    store = api.app.services.store
    store.devices.touch("cam-0", clock())
    store.devices.touch("cam-1", clock() - timedelta(minutes=2))  # silent 120 s: warning
    res = api.get("/api/v1/analytics/devices", token=viewer.token).json()
    assert (res["total"], res["online"], res["warning"], res["offline"]) == (4, 1, 1, 2)
    assert (res["availability_percent"], res["online_percent"]) == (50.0, 25.0)
    assert res["by_kind"] == {"camera": 4} and res["by_site"] == {"dock": 2}
