"""``aios/sensor.data@1`` against a real MQTT broker (amqtt) on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
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
from aios.messages import Telemetry, TelemetrySample
from aios.nodes import sensor_data
from aios.nodes.sensor_data import SensorDataSource

WAIT = 5.0
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def telemetry(
    message_id: str,
    readings: dict[str, float],
    *,
    time: datetime = T0,
    device_id: str | None = None,
    units: dict[str, str] | None = None,
) -> bytes:
    """A platform telemetry message (``aios.messages.Telemetry``) as a device publishes it."""
    samples = [
        TelemetrySample(metric=metric, value=value, unit=(units or {}).get(metric))
        for metric, value in readings.items()
    ]
    msg = Telemetry(message_id=message_id, time=time, samples=samples, device_id=device_id)
    return msg.model_dump_json(exclude_none=True).encode()


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
        ({"topic": "plant/#"}, "is not a telemetry topic"),
        ({"topic": "dt/aios/#"}, "use 'dt/aios/+/telemetry' for every device"),
        ({"topic": "dt/aios/+/events"}, "is not a telemetry topic"),
        ({"fields": ["temp c"]}, "metric name 'temp c' must match"),
        ({"max_payload_bytes": 200_000}, "less than or equal to 131072"),
        ({"device_id_topic_level": 1}, "Extra inputs are not permitted"),
        ({"ca_file": "/ca.pem"}, "set tls to true"),
        ({"password_secret": "mqtt_pw"}, "password_secret needs a username"),
        ({"qos": 2}, "qos"),
        ({"client_id_prefix": "a-prefix-that-is-too-long"}, "client_id_prefix"),
        ({"reconnect_min_delay_seconds": 10, "reconnect_max_delay_seconds": 5}, "must not"),
        ({"topics": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_mistakes(config: dict[str, Any], message: str) -> None:
    """Bad filters, topics other than telemetry, TLS and credential mix-ups and typos fail
    validation with a reason."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        sensor_data.NODE.parse_config(config)


def test_platform_telemetry_becomes_events_and_other_messages_are_dropped(
    start_broker: Callable[..., BrokerThread],
    running: list[SensorDataSource],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Telemetry messages — a device's own, and a connector's for its child — become
    readings; everything else on the telemetry topics (the old ad-hoc shape, bare numbers,
    non-JSON, naive times, oversized messages, device ids that are not ids) is dropped,
    counted by reason, logged without its content, and the node keeps working; other
    topics are not received."""
    # GIVEN a broker and a node subscribed to every device's telemetry
    broker = start_broker()
    node = make_source({"port": broker.port, "topic": "dt/aios/+/telemetry"})
    running.append(node)
    got = Collector()
    node.start(got)
    assert node.wait_subscribed(WAIT)
    # WHEN valid telemetry, invalid messages, an event on another topic and a connector's
    # telemetry for its PLC are published
    plus_one = timezone(timedelta(hours=1))
    own = telemetry(
        "press-7-1",
        {"temp_c": 71.5, "running": True},
        time=datetime(2026, 1, 5, 10, 0, tzinfo=plus_one),
        units={"temp_c": "°C"},
    )
    secret_value = (
        b'{"message_id": "m", "time": "2026-01-05T09:00:00Z", '
        b'"samples": [{"metric": "pw", "value": "hunter2"}]}'
    )
    with caplog.at_level(logging.WARNING):
        publish(
            broker.port,
            [
                ("dt/aios/press-7/telemetry", own),
                ("dt/aios/press-7/telemetry", b"password=hunter2 not json"),
                (
                    "dt/aios/press-7/telemetry",
                    b'{"device_id": "press-7", "ts": "2026-01-05T09:00:00Z", '
                    b'"metrics": {"temp_c": 71.5}}',
                ),
                ("dt/aios/press-7/telemetry", secret_value),
                ("dt/aios/press-7/telemetry", own.replace(b"Z", b"")),  # naive time
                ("dt/aios/press-7/telemetry", b"42.25"),
                ("dt/aios/press-7/telemetry", b"[" * 30_000),
                ("dt/aios/-bad/telemetry", own),
                ("dt/aios/press-7/events", b'{"event_type": "zone.enter"}'),
                (
                    "dt/aios/conn-1/telemetry",
                    telemetry("conn-1-1", {"hr.40001": 1234}, device_id="plc-3"),
                ),
            ],
        )
        events = got.wait_for(2)
    # THEN the two messages arrive in order as readings at the message time (UTC)
    first, child = events
    assert first["event_type"] == "sensor.reading"
    assert first["source_id"] == "press-7"
    assert first["time"] == "2026-01-05T09:00:00Z"
    assert first["data"]["readings"] == {"temp_c": 71.5, "running": 1.0}
    assert first["data"]["units"] == {"temp_c": "°C"}
    assert first["data"]["topic"] == "dt/aios/press-7/telemetry"
    assert first["data"]["message_id"] == "press-7-1"
    assert datetime.fromisoformat(first["data"]["received_at"]).tzinfo is not None
    # AND the connector's message is about its PLC
    assert child["source_id"] == "plc-3"
    assert child["data"]["publisher_id"] == "conn-1"
    assert child["data"]["readings"] == {"hr.40001": 1234.0}
    assert first["event_id"] != child["event_id"]
    # AND the seven invalid messages are counted by reason and logged without their content
    wait_until(lambda: node.stats["received"] == 9)
    assert node.stats == {
        "received": 9,
        "emitted": 2,
        "skipped": 0,
        "duplicate": 0,
        "failed": 0,
        "bad_topic": 1,
        "too_large": 0,
        "bad_json": 3,
        "invalid": 3,
    }
    dropped = [r.getMessage() for r in caplog.records if "dropped a message" in r.getMessage()]
    assert len(dropped) == 7
    assert any("nested too deeply" in m for m in dropped)
    assert any("samples: Field required" in m for m in dropped)
    assert any("time has no UTC offset" in m for m in dropped)
    assert any("samples.0.value: Input should be a valid number" in m for m in dropped)
    assert any("dt/aios/-bad/telemetry" in m and "bad_topic" in m for m in dropped)
    assert sum("dt/aios/press-7/telemetry" in m for m in dropped) == 6
    assert not any("hunter2" in m for m in dropped)


def test_one_device_filter_fields_and_redelivered_message_processed_once(
    start_broker: Callable[..., BrokerThread], running: list[SensorDataSource]
) -> None:
    """A one-device filter receives only that device; ``fields`` keeps the named metrics
    and skips messages without them; a message delivered twice (as a QoS 1 redelivery
    would be) is processed once."""
    # GIVEN a node on boiler-3's telemetry keeping only temp_c
    broker = start_broker()
    node = make_source(
        {"port": broker.port, "topic": "dt/aios/boiler-3/telemetry", "fields": ["temp_c"]}
    )
    running.append(node)
    got = Collector()
    node.start(got)
    assert node.wait_subscribed(WAIT)
    # WHEN a message is delivered twice, one has no temp_c, another device publishes, and
    # a second message follows
    first_message = telemetry("b3-1", {"temp_c": 20.5, "rh": 40})
    publish(
        broker.port,
        [
            ("dt/aios/boiler-3/telemetry", first_message),
            ("dt/aios/boiler-3/telemetry", first_message),
            ("dt/aios/boiler-3/telemetry", telemetry("b3-2", {"rh": 41})),
            ("dt/aios/boiler-4/telemetry", telemetry("b4-1", {"temp_c": 99})),
            (
                "dt/aios/boiler-3/telemetry",
                telemetry("b3-3", {"temp_c": 21.0}, time=T0 + timedelta(minutes=1)),
            ),
        ],
    )
    first, second = got.wait_for(2)
    # THEN boiler-3's two messages arrive once each, with temp_c only
    assert first["source_id"] == second["source_id"] == "boiler-3"
    assert first["data"]["readings"] == {"temp_c": 20.5}
    assert second["data"]["readings"] == {"temp_c": 21.0}
    assert second["time"] == "2026-01-05T09:01:00Z"
    assert first["event_id"] != second["event_id"]
    wait_until(lambda: node.stats["received"] == 4)
    stats = node.stats
    assert (stats["emitted"], stats["duplicate"], stats["skipped"]) == (2, 1, 1)
    time.sleep(0.2)
    assert len(got.events) == 2


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
            [("dt/aios/t1/telemetry", telemetry("t1-1", {"temp_c": 21.0}))],
            tls_ca=ca_file,
            username="sensor",
            password="s3cr3t-pw",
        )
        # THEN the good node gets the reading
        assert got.wait_for(1)[0]["data"]["readings"] == {"temp_c": 21.0}
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
    publish(broker.port, [("dt/aios/d1/telemetry", telemetry("d1-1", {"level_m": 1.0}))])
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
        publish(port, [("dt/aios/m5/telemetry", telemetry("m5-1", {"level_m": 2.5}))])
        # THEN the reading arrives
        [event] = got.wait_for(1)
        assert event["source_id"] == "m5" and event["data"]["readings"] == {"level_m": 2.5}
    finally:
        for node in running:
            node.stop()
        broker.terminate()
        broker.wait(WAIT)
