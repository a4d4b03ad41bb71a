"""``aios up`` as a real process: HTTP, MQTT and WebSocket on loopback, restart, crash."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from up_process import UpProcess
from up_support import wait_until
from websockets.sync.client import connect

from aios.domain import TelemetryPoint
from aios.store.sqlite import SqliteStore


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Any]:
    """Start ``aios up`` processes on ``tmp_path/data``; kill leftovers at the end."""
    started: list[UpProcess] = []

    def start(args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> UpProcess:
        process = UpProcess(tmp_path / "data", tmp_path, args=args, env=env)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.cleanup()


def login(base: str, password: str) -> dict[str, str]:
    r = httpx.post(
        f"{base}/api/v1/auth/login", json={"username": "admin", "password": password}, timeout=30
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def publish_heartbeat(port: int, device_id: str) -> None:
    """Publish one heartbeat at QoS 1 and wait for the broker's acknowledgement."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        message = {
            "schema_version": 1,
            "message_id": f"hb-{time.time_ns()}",
            "time": datetime.now(UTC).isoformat(),
            "health": {"cpu_percent": 12.5},
            "firmware_version": "1.2.3",
        }
        info = client.publish(f"dt/aios/{device_id}/heartbeat", json.dumps(message), qos=1)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def retained_message(port: int, topic: str) -> dict[str, Any]:
    """Subscribe to ``topic`` and return the retained message the broker delivers."""
    import queue

    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-device")
    client.on_message = lambda _c, _u, message: received.put(message)
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        message = received.get(timeout=15)
    finally:
        client.disconnect()
        client.loop_stop()
    assert message.retain
    payload: dict[str, Any] = json.loads(message.payload)
    return payload


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_up_serves_api_mqtt_and_feeds_then_stops_and_restarts_with_its_data(up: Any) -> None:
    """The whole stack on one machine, a graceful stop, and a restart on the same data."""
    # GIVEN a first start on an empty data folder
    first = up()
    password = first.printed_password()
    assert password, "\n".join(first.stdout_lines)
    assert "  username: admin" in first.stdout_lines
    assert any(f"mqtt://127.0.0.1:{first.broker_port}" in line for line in first.stdout_lines)
    base = first.url

    # THEN it is healthy, serves the docs and refuses unknown host names
    health = httpx.get(f"{base}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "checks": {"store": {"ok": True}, "broker": {"ok": True}, "ingester": {"ok": True}},
    }
    assert httpx.get(f"{base}/docs", timeout=30).status_code == 200
    assert httpx.get(f"{base}/healthz", headers={"Host": "evil.example"}).status_code == 400

    # WHEN the admin signs in and registers a sensor, claiming another address
    auth = login(base, password)
    created = httpx.post(
        f"{base}/api/v1/devices",
        json={"id": "sensor-7", "name": "Tank level", "kind": "sensor"},
        headers={**auth, "X-Forwarded-For": "198.51.100.9"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    # THEN the audit log has the socket's address, not the claimed one
    audit = httpx.get(f"{base}/api/v1/audit", params={"limit": 1}, headers=auth, timeout=10)
    assert audit.json()["items"][0]["action"] == "device.create"
    assert audit.json()["items"][0]["source_ip"] == "127.0.0.1"
    token = auth["Authorization"].split()[1]

    # AND the sensor sends a heartbeat over MQTT while a console watches /ws/devices
    with connect(f"ws://127.0.0.1:{first.http_port}/ws/devices?token={token}") as ws:
        wait_until(
            lambda: (
                'aios_websocket_clients{channel="devices"} 1.0' in httpx.get(f"{base}/metrics").text
            ),
            what="console subscribed",
        )
        publish_heartbeat(first.broker_port, "sensor-7")
        messages = []
        deadline = time.monotonic() + 15
        while not any(m.get("device_id") == "sensor-7" for m in messages):
            assert time.monotonic() < deadline, messages
            messages.append(json.loads(ws.recv(timeout=15)))

    # THEN the console was told, the API shows it online, and the metrics count it
    assert messages[-1]["channel"] == "devices"
    device = wait_until(
        lambda: (
            d
            if (d := httpx.get(f"{base}/api/v1/devices/sensor-7", headers=auth).json()).get(
                "status"
            )
            == "online"
            else None
        ),
        timeout=15,
        what="device online",
    )
    assert device["firmware_version"] == "1.2.3"
    metrics = httpx.get(f"{base}/metrics").text
    assert metric(metrics, "aios_mqtt_messages_ingested_total") == 1.0
    assert metric(metrics, 'aios_devices{status="online"}') == 1.0
    assert 'route="/api/v1/devices",status="201"' in metrics

    # WHEN the admin sets the sensor's desired configuration (published retained)
    configured = httpx.put(
        f"{base}/api/v1/devices/sensor-7/config",
        json={"config": {"interval_seconds": 5}},
        headers=auth,
        timeout=10,
    )
    assert configured.status_code == 200, configured.text
    assert configured.json()["desired_version"] == 1

    # WHEN it gets SIGTERM
    started = time.monotonic()
    assert first.signal(signal.SIGTERM) == 0
    # THEN it stops within seconds, after an orderly shutdown logged as JSON, no secrets
    assert time.monotonic() - started < 10
    log_lines = [json.loads(line) for line in first.stderr().splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(log_lines[0])
    assert log_lines[-1]["message"] == "stopped"
    steps = [e["step"] for e in log_lines if e["message"] == "shutdown step done"]
    assert steps == ["scheduler", "ingester", "runs", "link", "store", "broker"]
    # AND telemetry was pruned once shortly after start (nothing older than 30 days yet)
    pruned = [e for e in log_lines if e["message"] == "telemetry pruned"]
    assert [(e["deleted"], e["days"]) for e in pruned] == [(0, 30)]
    assert password not in first.stderr()
    assert token not in first.stderr()

    # WHEN telemetry older than the 30-day retention is in the file while it is stopped
    now = datetime.now(UTC)
    with SqliteStore(first.data_dir / "aios.db") as offline:
        offline.telemetry.append(
            [
                TelemetryPoint(
                    device_id="sensor-7", metric="t", time=now - timedelta(days=d), value=d
                )
                for d in (45, 40, 31, 2)
            ]
        )
    # AND it starts again on the same data folder
    second = up()
    # THEN it prunes the 3 old samples shortly after start
    wait_until(lambda: '"telemetry pruned"' in second.stderr(), what="telemetry pruned")
    pruned = [
        json.loads(line) for line in second.stderr().splitlines() if '"telemetry pruned"' in line
    ]
    assert [e["deleted"] for e in pruned] == [3]
    # THEN no new admin password is printed, the old one works and the device is there
    assert second.printed_password() is None
    auth = login(second.url, password)
    again = httpx.get(f"{second.url}/api/v1/devices/sensor-7", headers=auth, timeout=10)
    assert again.status_code == 200
    assert again.json()["firmware_version"] == "1.2.3"
    # AND the restarted embedded broker holds the desired configuration again (retained)
    desired = retained_message(second.broker_port, "cfg/aios/sensor-7/desired")
    assert desired["version"] == 1
    assert desired["config"] == {"interval_seconds": 5}
    assert second.signal(signal.SIGINT) == 0
    with SqliteStore(first.data_dir / "aios.db") as stopped:
        assert [p.value for p in stopped.telemetry.query("sensor-7", metric="t").items] == [2]


def test_a_killed_process_loses_no_acknowledged_write(up: Any) -> None:
    """Created (201), then SIGKILL at once: after a restart the device is there."""
    first = up()
    password = first.printed_password()
    assert password
    auth = login(first.url, password)
    created = httpx.post(
        f"{first.url}/api/v1/devices",
        json={"id": "cam-42", "name": "Gate", "kind": "camera"},
        headers=auth,
        timeout=10,
    )
    assert created.status_code == 201
    assert first.signal(signal.SIGKILL) == -signal.SIGKILL

    second = up()
    assert second.printed_password() is None
    auth = login(second.url, password)
    kept = httpx.get(f"{second.url}/api/v1/devices/cam-42", headers=auth, timeout=10)
    assert kept.status_code == 200
    assert kept.json()["name"] == "Gate"
    assert second.signal(signal.SIGTERM) == 0


def test_external_broker_and_config_file(up: Any, tmp_path: Path) -> None:
    """With AIOS_BROKER_URL no broker is embedded; --config and --data-dir are applied."""
    from aios.up.broker import EmbeddedBroker

    # GIVEN a broker already running, and a TOML config naming an extra host name
    broker = EmbeddedBroker("127.0.0.1", 0)
    broker.start()
    config = tmp_path / "aios.toml"
    config.write_text('allowed_hosts = ["127.0.0.1", "aios.test"]\n', encoding="utf-8")
    data_dir = tmp_path / "elsewhere"
    try:
        # WHEN aios up starts with the broker URL, the config file and a data folder option
        process = up(
            args=("--config", str(config), "--data-dir", str(data_dir)),
            env={"AIOS_BROKER_URL": f"mqtt://127.0.0.1:{broker.port}"},
        )
        # THEN it uses that broker (its own port stays free) and that data folder
        assert f"  MQTT:     mqtt://127.0.0.1:{broker.port}" in process.stdout_lines
        assert (data_dir / "aios.db").is_file()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", process.broker_port))
        assert httpx.get(f"{process.url}/healthz", timeout=10).status_code == 200
        host_ok = httpx.get(f"{process.url}/healthz", headers={"Host": "aios.test"}, timeout=10)
        assert host_ok.status_code == 200
        # AND a message from a device the fleet does not know is refused and counted
        publish_heartbeat(broker.port, "stranger-1")
        wait_until(
            lambda: (
                metric(
                    httpx.get(f"{process.url}/metrics").text,
                    'aios_mqtt_messages_refused_total{reason="unknown_device"}',
                )
                == 1.0
            ),
            timeout=15,
            what="refusal counted",
        )
        assert process.signal(signal.SIGTERM) == 0
    finally:
        broker.stop()
