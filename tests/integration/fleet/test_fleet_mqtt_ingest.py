"""MQTT ingestion over a real broker on loopback: volume, garbage, restart.

The database lives on a RAM-backed folder when the system has one (``/dev/shm``): the
SQLite store commits every write with ``synchronous=FULL``, one fsync each, and on a disk
that — not ingestion — would be what the volume test measures.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from fleet_brokers import (
    MOSQUITTO,
    AmqttBroker,
    MosquittoBroker,
    publish_as,
    publish_many,
    wait_until,
)
from paho.mqtt.enums import CallbackAPIVersion

from aios.config import Settings
from aios.domain import Device, DeviceKind
from aios.fleet.ingest import MqttIngester
from aios.fleet.service import FleetService
from aios.messages import HEARTBEAT_TIME_KEY
from aios.services import Services
from aios.store.sqlite import SqliteStore

log = logging.getLogger(__name__)

DEVICES = 1000
HEARTBEATS_PER_DEVICE = 10


@dataclass
class Stack:
    fleet: FleetService
    store: SqliteStore


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """A fleet over SQLite (in RAM-backed storage where available)."""
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() else tmp_path
    store = SqliteStore(folder / "aios.db")
    settings = Settings(_env_file=None, data_dir=folder)  # type: ignore[call-arg]
    yield Stack(FleetService(Services(store=store, settings=settings)), store)
    store.close()
    if folder != tmp_path:
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()


@pytest.fixture
def amqtt_broker() -> Iterator[AmqttBroker]:
    broker = AmqttBroker().start()
    yield broker
    broker.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[AmqttBroker | MosquittoBroker]:
    """Mosquitto when installed, else amqtt (about 4 times slower at QoS 1: the volume
    test then takes about 40 s instead of 11 s on 2 cores)."""
    started = MosquittoBroker(tmp_path).start() if MOSQUITTO else AmqttBroker().start()
    yield started
    started.stop()


def heartbeat(sender: str, n: int, **fields: object) -> bytes:
    """A heartbeat's bytes; ``n`` is its sequence number (message id and uptime)."""
    return json.dumps(
        {
            "schema_version": 1,
            "message_id": f"{sender}-hb-{n}",
            "time": datetime.now(UTC).isoformat(),
            "health": {"cpu_percent": 20 + n % 50, "uptime_seconds": n},
            "firmware_version": "1.0.0",
            **fields,
        }
    ).encode()


def start_ingester(fleet: FleetService, port: int, **options: object) -> MqttIngester:
    ingester = MqttIngester(fleet, host="127.0.0.1", port=port, **options)  # type: ignore[arg-type]
    ingester.start()
    assert ingester.wait_subscribed(10), "the ingester did not subscribe"
    return ingester


def test_ten_thousand_heartbeats_from_a_thousand_devices_are_all_stored(
    stack: Stack, broker: AmqttBroker | MosquittoBroker
) -> None:
    """GIVEN 1,000 registered devices and an ingester WHEN each device connects and sends
    10 heartbeats at QoS 1 THEN all 10,000 are stored: every device was seen, its record
    was touched exactly 10 times and holds its last heartbeat's health."""
    ids = [f"dev-{i:04d}" for i in range(DEVICES)]
    for device_id in ids:
        stack.store.devices.create(Device(id=device_id, name=device_id, kind=DeviceKind.CONNECTOR))
    ingester = start_ingester(stack.fleet, broker.port, workers=2)
    try:
        t0 = time.perf_counter()
        publish_many(
            broker.port,
            ids,
            lambda d: [(f"dt/aios/{d}/heartbeat", heartbeat(d, n)) for n in range(1, 11)],
        )
        published = time.perf_counter() - t0
        wait_until(lambda: ingester.stats.get("accepted.heartbeat", 0) >= DEVICES * 10, 60)
        stored = time.perf_counter() - t0
    finally:
        ingester.stop()
    log.info(
        "%s: 10,000 heartbeats acknowledged by the broker in %.1f s, stored in %.1f s",
        broker.name,
        published,
        stored,
    )
    stats = ingester.stats
    assert stats["received"] == DEVICES * 10
    assert stats["accepted"] == DEVICES * 10
    devices = stack.store.devices.list(limit=1000).items
    assert len(devices) == DEVICES
    for d in devices:
        assert d.last_seen is not None, d.id
        assert d.version == 1 + HEARTBEATS_PER_DEVICE, d.id  # created, then 10 touches
        health = {k: v for k, v in d.health.items() if k != HEARTBEAT_TIME_KEY}
        assert health == {"cpu_percent": 30, "uptime_seconds": 10}, d.id
        assert d.firmware_version == "1.0.0"


def test_garbage_is_counted_and_ignored_while_good_messages_flow(
    stack: Stack, amqtt_broker: AmqttBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """GIVEN two devices and an ingester WHEN good heartbeats are interleaved with bad JSON,
    schema errors, unknown devices, a bad device id in the topic, a child the publisher
    does not own, duplicates and a response to no command THEN each bad one is counted
    under its reason, logged without its payload, and every good one is stored."""
    for device_id in ("gw-1", "gw-2"):
        stack.store.devices.create(Device(id=device_id, name=device_id, kind=DeviceKind.CONNECTOR))
    ingester = start_ingester(stack.fleet, amqtt_broker.port)
    rounds = 20
    try:
        with caplog.at_level(logging.WARNING, logger="aios.fleet.ingest"):
            for n in range(1, rounds + 1):
                publish_as(
                    amqtt_broker.port,
                    "gw-1",
                    [
                        ("dt/aios/gw-1/heartbeat", heartbeat("gw-1", n)),
                        ("dt/aios/gw-1/heartbeat", b'{"password": "hunter2"'),
                        ("dt/aios/gw-1/heartbeat", heartbeat("gw-1", 1000 + n, helth={})),
                        ("dt/aios/gw-1/telemetry", heartbeat("gw-1", 2000 + n)),
                        ("dt/aios/ghost/heartbeat", heartbeat("ghost", n)),
                        ("dt/aios/bad id/heartbeat", heartbeat("gw-1", 3000 + n)),
                        ("dt/aios/gw-1/heartbeat", heartbeat("gw-1", 4000 + n, device_id="gw-2")),
                        ("dt/aios/gw-1/heartbeat", heartbeat("gw-1", n)),
                        (
                            "cmd/aios/gw-1/res",
                            json.dumps(
                                {
                                    "message_id": f"r{n}",
                                    "time": datetime.now(UTC).isoformat(),
                                    "request_id": "req_none",
                                    "ok": True,
                                }
                            ).encode(),
                        ),
                        ("dt/aios/gw-2/heartbeat", heartbeat("gw-2", n)),
                    ],
                )
            wait_until(lambda: ingester.stats.get("received", 0) >= rounds * 10, 30)
            assert ingester.wait_idle(10)
    finally:
        ingester.stop()
    stats = ingester.stats
    assert stats == {
        "received": rounds * 10,
        "accepted": rounds * 2,
        "accepted.heartbeat": rounds * 2,
        "bad_json": rounds,
        "invalid": rounds * 2,
        "unknown_device": rounds,
        "bad_topic": rounds,
        "not_a_child": rounds,
        "duplicate": rounds,
        "unknown_command": rounds,
    }
    for device_id in ("gw-1", "gw-2"):
        d = stack.store.devices.get(device_id)
        assert d is not None and d.version == 1 + rounds
        assert d.health["uptime_seconds"] == rounds
    assert stack.store.devices.get("ghost") is None
    assert "hunter2" not in caplog.text
    assert "bad_json" in caplog.text and "dt/aios/gw-1/heartbeat" in caplog.text


@pytest.mark.skipif(MOSQUITTO is None, reason="needs Mosquitto (Debian: mosquitto)")
def test_messages_sent_while_the_ingester_is_away_arrive_after_restart(
    stack: Stack, tmp_path: Path
) -> None:
    """GIVEN an ingester with a stable client id (persistent session) WHEN it stops, a
    device publishes, and it starts again THEN the broker delivers what it missed.

    Mosquitto only: amqtt 0.12 resumes the session (session present) but does not deliver
    the QoS 1 messages queued while the client was away.
    """
    broker = MosquittoBroker(tmp_path).start()
    try:
        _restart_keeps_messages(stack, broker.port)
    finally:
        broker.stop()


def _restart_keeps_messages(stack: Stack, port: int) -> None:
    stack.store.devices.create(Device(id="gw-1", name="gw-1", kind=DeviceKind.CONNECTOR))
    first = start_ingester(stack.fleet, port, client_id="aios-ingest-main")
    publish_as(port, "gw-1", [("dt/aios/gw-1/heartbeat", heartbeat("gw-1", 1))])
    wait_until(lambda: first.stats.get("accepted", 0) == 1)
    first.stop()
    publish_as(
        port, "gw-1", [("dt/aios/gw-1/heartbeat", heartbeat("gw-1", n)) for n in range(2, 6)]
    )
    second = start_ingester(stack.fleet, port, client_id="aios-ingest-main")
    try:
        wait_until(lambda: second.stats.get("accepted", 0) == 4)
    finally:
        second.stop()
    d = stack.store.devices.get("gw-1")
    assert d is not None and d.version == 1 + 5 and d.health["uptime_seconds"] == 5


@pytest.mark.skipif(MOSQUITTO is None, reason="needs Mosquitto (Debian: mosquitto)")
def test_ingester_reconnects_and_resubscribes_after_a_broker_restart(
    stack: Stack, tmp_path: Path
) -> None:
    """GIVEN a running ingester WHEN the broker goes away and comes back on the same port
    THEN the ingester reconnects with backoff, subscribes again and stores new messages."""
    stack.store.devices.create(Device(id="gw-1", name="gw-1", kind=DeviceKind.CONNECTOR))
    broker = MosquittoBroker(tmp_path).start()
    ingester = start_ingester(stack.fleet, broker.port, reconnect_max_delay_seconds=2)
    try:
        publish_as(broker.port, "gw-1", [("dt/aios/gw-1/heartbeat", heartbeat("gw-1", 1))])
        wait_until(lambda: ingester.stats.get("accepted", 0) == 1)
        broker.stop()
        wait_until(lambda: not ingester.wait_subscribed(0))
        broker.start()
        assert ingester.wait_subscribed(15), "the ingester did not come back"
        publish_as(broker.port, "gw-1", [("dt/aios/gw-1/heartbeat", heartbeat("gw-1", 2))])
        wait_until(lambda: ingester.stats.get("accepted", 0) == 2)
    finally:
        ingester.stop()
        broker.stop()
    d = stack.store.devices.get("gw-1")
    assert d is not None and d.health["uptime_seconds"] == 2


def test_platform_to_device_topics_are_never_read_as_platform_truth(
    stack: Stack, amqtt_broker: AmqttBroker
) -> None:
    """GIVEN an anonymous client that publishes a retained desired configuration on
    cfg/aios/gw-1/desired and a command request on cmd/aios/gw-1/req, as if it were the
    platform WHEN the ingester runs (started after the retained message, which a
    subscriber to cfg/ would receive at once) THEN neither is received or stored: the
    device's desired config and commands are unchanged; the device's own heartbeat is."""
    stack.store.devices.create(Device(id="gw-1", name="gw-1", kind=DeviceKind.CONNECTOR))
    now = datetime.now(UTC).isoformat()
    forged_config = {
        "message_id": "cfg-x",
        "time": now,
        "device_id": "gw-1",
        "version": 7,
        "config": {"upload_url": "http://attacker.invalid"},
    }
    forged_command = {
        "message_id": "req-x",
        "time": now,
        "request_id": "req-x",
        "device_id": "gw-1",
        "name": "reboot",
        "params": {},
        "deadline": now,
    }
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="impostor")
    client.connect("127.0.0.1", amqtt_broker.port)
    client.loop_start()
    try:
        info = client.publish(
            "cfg/aios/gw-1/desired", json.dumps(forged_config), qos=1, retain=True
        )
        info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    ingester = start_ingester(stack.fleet, amqtt_broker.port)
    try:
        publish_as(
            amqtt_broker.port,
            "impostor-2",
            [
                ("cmd/aios/gw-1/req", json.dumps(forged_command).encode()),
                ("dt/aios/gw-1/heartbeat", heartbeat("gw-1", 1)),
            ],
        )
        wait_until(lambda: ingester.stats.get("accepted", 0) == 1)
        assert ingester.wait_idle(5)
        time.sleep(0.3)  # a wrongly delivered message would be counted by now
        stats = ingester.stats
    finally:
        ingester.stop()
    assert stats.get("received") == 1, stats
    d = stack.store.devices.get("gw-1")
    assert d is not None and d.desired_version == 0 and d.desired_config == {}
    assert stack.store.commands.list("gw-1").items == []
    assert stack.store.commands.get("req-x") is None
