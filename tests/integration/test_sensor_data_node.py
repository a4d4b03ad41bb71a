"""``aios/sensor.data@1`` against a real MQTT broker (amqtt) on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import trustme
from amqtt.broker import Broker
from paho.mqtt.enums import CallbackAPIVersion
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import ValidationError

from aios.catalog.base import EventRole
from aios.events.secrets import DictSecretStore
from aios.events.task import PermanentError, TaskServices
from aios.nodes import sensor_data
from aios.nodes.sensor_data import SensorDataSource

WAIT = 5.0


class BrokerThread:
    """An amqtt broker on 127.0.0.1 and an ephemeral port, in a thread with its own loop."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.broker: Broker | None = None
        self.port = 0

    def start(self) -> None:
        """Start the loop thread and the broker; read the bound port."""
        self.thread.start()

        async def start() -> Broker:
            broker = Broker(self.config)
            await broker.start()
            return broker

        self.broker = asyncio.run_coroutine_threadsafe(start(), self.loop).result(WAIT)
        server = self.broker._servers["default"].instance
        self.port = server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Shut the broker down and end the loop thread; safe to call twice."""
        if self.loop.is_closed():
            return
        if self.broker is not None:
            asyncio.run_coroutine_threadsafe(self.broker.shutdown(), self.loop).result(WAIT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


@pytest.fixture
def start_broker() -> Iterator[Callable[..., BrokerThread]]:
    """Return a function that starts a broker (plain, or TLS with a password file)."""
    started: list[BrokerThread] = []

    def start(
        *,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        password_file: Path | None = None,
    ) -> BrokerThread:
        listener: dict[str, Any] = {"type": "tcp", "bind": "127.0.0.1:0"}
        if certfile is not None:
            listener |= {"ssl": True, "certfile": str(certfile), "keyfile": str(keyfile)}
        plugins: dict[str, Any] = (
            {"amqtt.plugins.authentication.FileAuthPlugin": {"password_file": str(password_file)}}
            if password_file is not None
            else {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        )
        broker = BrokerThread({"listeners": {"default": listener}, "plugins": plugins})
        broker.start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


class Collector:
    """Collects emitted events; waits for a count with a bound."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Return the events once there are ``count`` of them; fail after ``timeout``."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.events) >= count, timeout)
        assert ok, f"expected {count} events within {timeout} s, got {self.events}"
        return list(self.events)


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def make_source(config: dict[str, Any], secrets: dict[str, str] | None = None) -> SensorDataSource:
    """Build the node from a raw config, as the runtime does."""
    node_type = sensor_data.NODE
    services = TaskServices(secrets=DictSecretStore(secrets or {}))
    source = node_type.implementation(node_type.parse_config(config), services)
    assert isinstance(source, SensorDataSource)
    return source


def publish(
    port: int, messages: list[tuple[str, bytes]], *, tls_ca: Path | None = None, **auth: str
) -> None:
    """Publish the messages with QoS 1 and wait until the broker has acknowledged each."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if tls_ca is not None:
        client.tls_set(ca_certs=str(tls_ca))
    if auth:
        client.username_pw_set(auth["username"], auth["password"])
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def running() -> Iterator[list[SensorDataSource]]:
    """Nodes appended here are stopped after the test even if it fails."""
    nodes: list[SensorDataSource] = []
    yield nodes
    for node in nodes:
        node.stop()


def test_node_type_is_an_event_source() -> None:
    """The manifest declares an event-tier input with one event output."""
    node_type = sensor_data.NODE
    assert node_type.event_role is EventRole.SOURCE
    assert node_type.type_id == "aios/sensor.data@1"
    assert [p.name for p in node_type.manifest.outputs] == ["events"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"topic": "dt/aios/+x/telemetry"}, "'+' must be a whole topic level"),
        ({"topic": "dt/#/telemetry"}, "'#' must be the whole last topic level"),
        ({"ca_file": "/ca.pem"}, "set tls to true"),
        ({"password_secret": "mqtt_pw"}, "password_secret needs a username"),
        ({"qos": 2}, "qos"),
        ({"client_id_prefix": "a-prefix-that-is-too-long"}, "client_id_prefix"),
        ({"reconnect_min_delay_seconds": 10, "reconnect_max_delay_seconds": 5}, "must not"),
        ({"topics": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_mistakes(config: dict[str, Any], message: str) -> None:
    """Bad filters, TLS and credential mix-ups and typos fail validation with a reason."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        sensor_data.NODE.parse_config(config)


def test_telemetry_bare_values_and_malformed_payloads(
    start_broker: Callable[..., BrokerThread],
    running: list[SensorDataSource],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Telemetry and bare numbers become readings; malformed payloads are counted, logged
    without their content, and the node keeps working; other topics are not received."""
    # GIVEN a broker and a node subscribed to every device's telemetry
    broker = start_broker()
    node = make_source({"port": broker.port, "topic": "dt/aios/+/telemetry"})
    running.append(node)
    got = Collector()
    node.start(got)
    assert node.wait_subscribed(WAIT)
    # WHEN a telemetry message, malformed payloads, an event on another topic and a bare
    # number are published
    secret_text = b"password=hunter2 not json"
    with caplog.at_level(logging.WARNING):
        publish(
            broker.port,
            [
                (
                    "dt/aios/press-7/telemetry",
                    json.dumps(
                        {
                            "device_id": "press-7",
                            "ts": "2026-01-05T10:00:00+01:00",
                            "metrics": {"temp_c": 71.5, "running": True},
                        }
                    ).encode(),
                ),
                ("dt/aios/press-7/telemetry", secret_text),
                ("dt/aios/press-7/telemetry", b'"just text"'),
                ("dt/aios/press-7/telemetry", b'{"metrics": [1, 2]}'),
                ("dt/aios/press-7/telemetry", b"NaN"),
                ("dt/aios/press-7/telemetry", b"[" * 30_000),
                ("dt/aios/press-7/events", b'{"event_type": "zone.enter"}'),
                ("dt/aios/pump-2/telemetry", b"42.25"),
            ],
        )
        events = got.wait_for(2)
    # THEN the two readings arrive in order, with the device from the topic
    telemetry, bare = events
    assert telemetry["event_type"] == "sensor.reading"
    assert telemetry["source_id"] == "press-7"
    assert telemetry["time"] == "2026-01-05T09:00:00Z"
    assert telemetry["data"]["readings"] == {"temp_c": 71.5, "running": True}
    assert telemetry["data"]["topic"] == "dt/aios/press-7/telemetry"
    assert bare["source_id"] == "pump-2"
    assert bare["data"]["readings"] == {"value": 42.25}
    assert datetime.fromisoformat(bare["time"]).tzinfo is not None
    assert len({telemetry["event_id"], bare["event_id"]}) == 2
    # AND the five malformed payloads are counted and logged without their content
    wait_until(lambda: node.stats["emitted"] == 2)
    assert node.stats == {"received": 7, "emitted": 2, "malformed": 5, "skipped": 0, "failed": 0}
    malformed = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(malformed) == 5
    assert any("nested too deeply" in m for m in malformed)
    assert all("dt/aios/press-7/telemetry" in m for m in malformed)
    assert not any("hunter2" in m for m in malformed)


def test_hash_wildcard_fields_and_device_id_from_payload(
    start_broker: Callable[..., BrokerThread], running: list[SensorDataSource]
) -> None:
    """A '#' filter reaches every level; ``fields`` keeps only the named readings and
    skips messages without them; the payload names the device off the platform topics."""
    # GIVEN a node on 'plant/#' keeping only temp_c
    broker = start_broker()
    node = make_source({"port": broker.port, "topic": "plant/#", "fields": ["temp_c"]})
    running.append(node)
    got = Collector()
    node.start(got)
    assert node.wait_subscribed(WAIT)
    # WHEN readings arrive on two depths of the tree, one without temp_c
    publish(
        broker.port,
        [
            ("plant/line1/oven", b'{"device_id": "oven-1", "temp_c": 180, "rh": 12}'),
            ("plant/line1/oven", b'{"device_id": "oven-1", "rh": 11}'),
            ("plant/hall/line2/chiller/t", b'{"temp_c": 4.5}'),
        ],
    )
    first, second = got.wait_for(2)
    # THEN only temp_c is kept; the device is the payload's, or the topic without one
    assert first["source_id"] == "oven-1"
    assert first["data"]["readings"] == {"temp_c": 180}
    assert second["source_id"] == "plant/hall/line2/chiller/t"
    assert second["data"]["readings"] == {"temp_c": 4.5}
    assert node.stats["skipped"] == 1


def test_device_id_topic_level_and_repeated_message_keeps_its_event_id(
    start_broker: Callable[..., BrokerThread], running: list[SensorDataSource]
) -> None:
    """The configured topic level is the device; a message with a ``ts`` sent twice (as a
    QoS 1 redelivery would be) has the same event id both times."""
    broker = start_broker()
    node = make_source({"port": broker.port, "topic": "sensors/+/temp", "device_id_topic_level": 1})
    running.append(node)
    got = Collector()
    node.start(got)
    assert node.wait_subscribed(WAIT)
    message = b'{"ts": 1767600000000, "metrics": {"temp_c": 20.5}}'
    publish(broker.port, [("sensors/boiler-3/temp", message)] * 2)
    first, second = got.wait_for(2)
    assert first["source_id"] == "boiler-3"
    assert first["time"] == datetime.fromtimestamp(1767600000, UTC).isoformat().replace(
        "+00:00", "Z"
    )
    assert first["event_id"] == second["event_id"]


def test_tls_with_password_secret(
    start_broker: Callable[..., BrokerThread],
    running: list[SensorDataSource],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over TLS with the broker's CA and a password read from a secret the node receives;
    with a wrong password it is refused, logs why without the password, and stops cleanly."""
    # GIVEN a TLS broker that knows one user
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_file, certfile, keyfile = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(ca_file)
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    password_file = tmp_path / "passwd"
    password_file.write_text(f"sensor:{PasswordHash((Argon2Hasher(),)).hash('s3cr3t-pw')}\n")
    broker = start_broker(certfile=certfile, keyfile=keyfile, password_file=password_file)
    config = {
        "port": broker.port,
        "tls": True,
        "ca_file": str(ca_file),
        "username": "sensor",
        "password_secret": "mqtt_password",
        "topic": "dt/aios/+/telemetry",
    }
    # WHEN one node has the right password and one a wrong one
    good = make_source(config, {"mqtt_password": "s3cr3t-pw"})
    bad = make_source(
        config | {"reconnect_min_delay_seconds": 30, "reconnect_max_delay_seconds": 30},
        {"mqtt_password": "wrong-pw-123"},
    )
    running += [good, bad]
    got, refused = Collector(), Collector()
    with caplog.at_level(logging.WARNING):
        good.start(got)
        bad.start(refused)
        assert good.wait_subscribed(WAIT)
        publish(
            broker.port,
            [("dt/aios/t1/telemetry", b"21.0")],
            tls_ca=ca_file,
            username="sensor",
            password="s3cr3t-pw",
        )
        # THEN the good node gets the reading
        assert got.wait_for(1)[0]["data"]["readings"] == {"value": 21.0}
        wait_until(lambda: any("refused the connection" in r.getMessage() for r in caplog.records))
    # AND the bad one logged the refusal, never the password, and got nothing
    messages = [r.getMessage() for r in caplog.records]
    assert any("refused the connection" in m for m in messages)
    assert not any("wrong-pw-123" in m or "s3cr3t-pw" in m for m in messages)
    assert not bad.wait_subscribed(0.1) and refused.events == []
    # AND stop returns promptly although the bad node is waiting to reconnect
    started = time.monotonic()
    bad.stop()
    assert time.monotonic() - started < 3


def test_missing_password_secret_fails_start_with_what_to_set() -> None:
    """A password secret that is not set stops the start with the variable to set."""
    node = make_source({"username": "u", "password_secret": "mqtt_password"})
    with pytest.raises(PermanentError, match="AIOS_SECRET_MQTT_PASSWORD"):
        node.start(Collector())
    node.stop()


def test_stop_disconnects_and_joins_the_network_thread(
    start_broker: Callable[..., BrokerThread],
) -> None:
    """After stop no paho thread is left, messages no longer arrive, and stop is idempotent."""
    # GIVEN a subscribed node
    broker = start_broker()
    node = make_source({"port": broker.port, "topic": "dt/aios/+/telemetry"})
    got = Collector()
    node.start(got)
    assert node.wait_subscribed(WAIT)
    assert any(t.name.startswith("paho-mqtt-client-") for t in threading.enumerate())
    # WHEN it is stopped (twice) and a reading is published afterwards
    node.stop()
    node.stop()
    publish(broker.port, [("dt/aios/d1/telemetry", b"1")])
    # THEN its network thread has ended and nothing was received
    assert not any(t.name == f"paho-mqtt-client-{node.client_id}" for t in threading.enumerate())
    time.sleep(0.2)
    assert got.events == []
    assert node.stats["received"] == 0


def test_start_with_no_broker_returns_and_reconnects_when_it_appears(
    start_broker: Callable[..., BrokerThread], running: list[SensorDataSource]
) -> None:
    """start() does not block on an absent broker; paho's backoff loop connects later."""
    # GIVEN a free port with no broker yet
    broker = start_broker()
    port = broker.port
    broker.stop()
    node = make_source({"port": port, "reconnect_min_delay_seconds": 1})
    running.append(node)
    started = time.monotonic()
    node.start(Collector())
    assert time.monotonic() - started < 1
    assert not node.wait_subscribed(0.5)
    # WHEN a broker appears on that port
    again = BrokerThread(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    again.start()
    try:
        # THEN the node connects and subscribes on its own
        assert node.wait_subscribed(WAIT)
    finally:
        node.stop()
        again.stop()


MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")


@pytest.mark.skipif(MOSQUITTO is None, reason="MQTT 5 needs Mosquitto (Debian: mosquitto)")
def test_mqtt5_against_mosquitto(tmp_path: Path, running: list[SensorDataSource]) -> None:
    """Speaking MQTT 5 (amqtt only speaks 3.1.1), the node subscribes and receives."""
    # GIVEN Mosquitto on a free loopback port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    assert MOSQUITTO is not None
    broker = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        node = make_source({"port": port, "mqtt_version": "5", "topic": "dt/aios/+/telemetry"})
        running.append(node)
        got = Collector()
        node.start(got)
        # WHEN it has subscribed and a telemetry message is published
        assert node.wait_subscribed(WAIT)
        publish(port, [("dt/aios/m5/telemetry", b'{"metrics": {"level_m": 2.5}}')])
        # THEN the reading arrives
        [event] = got.wait_for(1)
        assert event["source_id"] == "m5" and event["data"]["readings"] == {"level_m": 2.5}
    finally:
        for node in running:
            node.stop()
        broker.terminate()
        broker.wait(WAIT)
