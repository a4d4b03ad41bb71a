"""The connector's platform link against a real Mosquitto with mTLS and per-device ACLs."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from mosquitto import (
    PLATFORM_IDENTITY,
    MosquittoBroker,
    Receiver,
    close_client,
    wait_until,
)
from paho.mqtt.subscribeoptions import SubscribeOptions

from aios.messages import (
    CommandRequest,
    CommandResponse,
    DesiredConfig,
    DeviceEventItem,
    DeviceEventsMessage,
    Heartbeat,
    Telemetry,
    TelemetrySample,
    TopicKind,
)
from connector.config import TlsConfig
from connector.link import PlatformLink, backoff_delay
from connector.queue import OutboundQueue

NOW = datetime.now(UTC)


def telemetry(message_id: str, value: float = 1.0) -> Telemetry:
    """A one-sample telemetry message."""
    return Telemetry(
        message_id=message_id,
        time=NOW,
        samples=[TelemetrySample(metric="tank_level", value=value, unit="%")],
    )


def command(request_id: str, device_id: str) -> bytes:
    """A command request's JSON, as the platform publishes it."""
    return (
        CommandRequest(
            message_id=f"msg-{request_id}",
            time=NOW,
            request_id=request_id,
            device_id=device_id,
            name="write_register",
            params={"name": "setpoint", "value": 42},
            deadline=NOW + timedelta(minutes=5),
        )
        .model_dump_json()
        .encode()
    )


def desired(device_id: str, version: int) -> bytes:
    """A desired configuration's JSON, as the platform retains it."""
    return (
        DesiredConfig(
            message_id=f"cfg-{device_id}-{version}",
            time=NOW,
            device_id=device_id,
            version=version,
            config={"streams": []},
        )
        .model_dump_json()
        .encode()
    )


class Links:
    """Makes links and queues; stops and closes them after the test."""

    def __init__(self, broker: MosquittoBroker, folder: Path) -> None:
        self.broker = broker
        self.folder = folder
        self.made: list[tuple[PlatformLink, OutboundQueue]] = []

    def make(
        self, identity: str, connector_id: str | None = None, **kwargs: object
    ) -> PlatformLink:
        """A started link with ``identity``'s certificate, publishing as ``connector_id``."""
        connector_id = connector_id or identity
        fields = {"client_id": kwargs.pop("client_id")} if "client_id" in kwargs else {}
        queue = OutboundQueue(self.folder / f"{connector_id}-{len(self.made)}.db")
        link = PlatformLink(
            self.broker.platform_config(identity, **fields),
            connector_id,
            queue,
            **kwargs,  # type: ignore[arg-type]
        )
        self.made.append((link, queue))
        link.start()
        assert link.wait_connected(15), link.stats()
        return link

    def close(self) -> None:
        for link, queue in self.made:
            link.stop(flush_timeout=0)
            queue.close()


@pytest.fixture
def links(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Links]:
    made = Links(mosquitto, tmp_path)
    yield made
    made.close()


@pytest.fixture
def receiver(mosquitto: MosquittoBroker) -> Iterator[Receiver]:
    """The platform, subscribed to every device's outbound topics."""
    made = Receiver(mosquitto, ["dt/aios/+/+", "cmd/aios/+/res"])
    yield made
    made.close()


def test_the_connector_publishes_on_its_own_topics_in_order(
    links: Links, receiver: Receiver
) -> None:
    """Telemetry, heartbeat and a command response reach the platform, in queue order."""
    # GIVEN a connected link for gw-a
    link = links.make("gw-a")

    # WHEN it sends 100 telemetry messages, a heartbeat and a command response
    seqs = [link.send(TopicKind.TELEMETRY, telemetry(f"t-{i}", i)) for i in range(100)]
    seqs.append(link.send(TopicKind.HEARTBEAT, Heartbeat(message_id="hb-1", time=NOW)))
    response = CommandResponse(message_id="r-1", time=NOW, request_id="req-1", ok=True)
    seqs.append(link.send(TopicKind.COMMAND_RESPONSE, response))

    # THEN everything is acknowledged and deleted from the queue
    assert link.flush(15)
    assert seqs == sorted(seqs)
    stats = link.stats()
    assert (stats.queue_depth, stats.queue_bytes, stats.acknowledged, stats.rejected) == (
        0,
        0,
        102,
        0,
    )
    # AND the platform got each once, in order, on gw-a's topics
    ids = receiver.wait_for(102, 15)
    assert ids == [f"t-{i}" for i in range(100)] + ["hb-1", "r-1"]
    topics = [t for t, _ in receiver.messages]
    assert topics == ["dt/aios/gw-a/telemetry"] * 100 + [
        "dt/aios/gw-a/heartbeat",
        "cmd/aios/gw-a/res",
    ]
    assert receiver.messages[42][1]["samples"][0]["value"] == 42


def test_the_connector_cannot_publish_on_another_devices_topics(
    links: Links, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """gw-a's certificate on dt/aios/gw-b/...: refused (0x87), dead-lettered, not retried."""
    caplog.set_level(logging.WARNING, logger="connector.link")
    # GIVEN a link holding gw-a's certificate but publishing as gw-b
    impostor = links.make("gw-a", "gw-b", client_id="gw-a-impostor")

    # WHEN it sends three messages
    for i in range(3):
        impostor.send(TopicKind.TELEMETRY, telemetry(f"forged-{i}"))

    # THEN the broker refuses each: the queue empties by rejection, not acknowledgement
    assert impostor.flush(15)
    assert impostor.queue.rejected_count() == 3
    dead = impostor.queue.dead_letters()
    assert [d.message.topic for d in dead] == ["dt/aios/gw-b/telemetry"] * 3
    assert all(d.reason.startswith("0x87") for d in dead)
    # AND a legitimate message from gw-a published after them arrives alone
    own = links.make("gw-a")
    own.send(TopicKind.TELEMETRY, telemetry("genuine"))
    assert receiver.wait_for(1, 15) == ["genuine"]
    assert own.flush(15)
    # AND the refused ones were sent once each, never retried
    stats = impostor.stats()
    assert (stats.published, stats.acknowledged, stats.rejected) == (3, 0, 3)
    assert receiver.ids() == ["genuine"] and receiver.copies == 1
    # AND the log names the topic and reason, not the payload
    refusals = [r.getMessage() for r in caplog.records if "refused message" in r.getMessage()]
    assert len(refusals) == 3
    assert all("dt/aios/gw-b/telemetry" in r and "Not authorized" in r for r in refusals)
    assert not any("forged" in r.getMessage() for r in caplog.records)


def test_the_connector_receives_its_own_commands_and_config_and_not_anothers(
    links: Links, mosquitto: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """Its cmd/cfg messages arrive, on the link's own thread, in order; gw-b's do not."""
    caplog.set_level(logging.WARNING, logger="connector.link")
    # GIVEN retained desired configurations for gw-a and gw-b
    mosquitto.publish(
        PLATFORM_IDENTITY,
        [
            ("cfg/aios/gw-a/desired", desired("gw-a", 3), True),
            ("cfg/aios/gw-b/desired", desired("gw-b", 7), True),
        ],
    )
    got: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def on_desired(config: DesiredConfig) -> None:
        with lock:
            got.append(("cfg", config.message_id, threading.current_thread().name))

    def on_command(request: CommandRequest) -> None:
        with lock:
            got.append(("cmd", request.request_id, threading.current_thread().name))

    # AND a link for gw-a that also tries to follow gw-b's configuration
    link = links.make("gw-a", on_desired=on_desired, on_command=on_command, desired_ids=["gw-b"])
    # AND a raw client with gw-a's certificate subscribed to every device's requests
    raw_got: list[str] = []
    raw = mosquitto.client("gw-a", "gw-a-raw")
    raw.on_message = lambda c, u, m: raw_got.append(m.topic)
    raw.subscribe(
        [
            ("cmd/aios/+/req", SubscribeOptions(qos=1)),
            ("cfg/aios/+/desired", SubscribeOptions(qos=1)),
        ]
    )
    wait_until(lambda: len(got) >= 1, 15, "gw-a's retained configuration")

    # WHEN the platform sends commands to both, an invalid one, then a last one to gw-a
    codes = mosquitto.publish(
        PLATFORM_IDENTITY,
        [
            ("cmd/aios/gw-b/req", command("b-1", "gw-b"), False),
            ("cmd/aios/gw-a/req", command("a-1", "gw-a"), False),
            ("cmd/aios/gw-a/req", b'{"request_id": "secret-token-xyz"}', False),
            ("cfg/aios/gw-b/desired", desired("gw-b", 8), True),
            ("cmd/aios/gw-a/req", command("a-2", "plc-1"), False),
        ],
    )
    assert not any(c.is_failure for c in codes)
    wait_until(lambda: len(got) >= 3, 15, "gw-a's commands")
    wait_until(lambda: len(raw_got) >= 4, 15, "the raw client's messages")
    close_client(raw)

    # THEN gw-a got its configuration and its two commands, in order, on the dispatch thread
    assert [(kind, key) for kind, key, _ in got] == [
        ("cfg", "cfg-gw-a-3"),
        ("cmd", "a-1"),
        ("cmd", "a-2"),
    ]
    assert {thread for _, _, thread in got} == {"link-dispatch-gw-a"}
    # AND nothing of gw-b, to the link or to the raw wildcard subscriber
    assert raw_got == ["cfg/aios/gw-a/desired"] + ["cmd/aios/gw-a/req"] * 3
    # AND the invalid request was dropped with a reason, its content not logged
    invalid = [r.getMessage() for r in caplog.records if "invalid message" in r.getMessage()]
    assert len(invalid) == 1 and "cmd/aios/gw-a/req" in invalid[0]
    assert "missing" in invalid[0]
    assert not any("secret-token-xyz" in r.getMessage() for r in caplog.records)
    assert link.connected


def test_a_command_sent_while_the_link_was_away_is_delivered_on_return(
    links: Links, mosquitto: MosquittoBroker
) -> None:
    """The persistent session keeps a QoS 1 command for the connector while it is away."""
    # GIVEN a link that subscribed once, then stopped
    first = links.make("gw-a")
    first.stop()
    got: list[str] = []

    # WHEN the platform sends a command meanwhile, and a new link with the same id starts
    mosquitto.publish(
        PLATFORM_IDENTITY, [("cmd/aios/gw-a/req", command("while-away", "gw-a"), False)]
    )
    links.make("gw-a", on_command=lambda r: got.append(r.request_id))

    # THEN the command arrives
    wait_until(lambda: got == ["while-away"], 15, "the command sent while away")


def test_a_broker_with_a_certificate_from_another_ca_is_not_trusted(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """TLS verification is on: the wrong CA means no connection, a clear last_error."""
    # GIVEN a configuration trusting another CA
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    files = mosquitto.identity("gw-a")
    platform = mosquitto.platform_config("gw-a").model_copy(
        update={"tls": TlsConfig(ca_file=other, cert_file=files.cert_file, key_file=files.key_file)}
    )
    queue = OutboundQueue(tmp_path / "q.db")
    link = PlatformLink(platform, "gw-a", queue)

    # WHEN it starts
    link.start()
    try:
        # THEN it never connects and says why
        assert not link.wait_connected(2)
        wait_until(lambda: link.stats().last_error is not None, 10, "a connection error")
        error = link.stats().last_error or ""
        assert "certificate verify failed" in error
        assert "PRIVATE KEY" not in error
    finally:
        link.stop(flush_timeout=0)
        queue.close()


def test_send_refuses_what_a_connector_does_not_publish(links: Links) -> None:
    """Wrong kind or model, or a payload above the platform's limit: a clear error."""
    link = links.make("gw-a")
    with pytest.raises(ValueError, match="does not publish desired_config"):
        link.send(
            TopicKind.DESIRED_CONFIG,
            DesiredConfig(message_id="x", time=NOW, device_id="gw-a", version=1),
        )
    with pytest.raises(TypeError, match="Telemetry"):
        link.send(TopicKind.TELEMETRY, Heartbeat(message_id="x", time=NOW))
    huge = DeviceEventsMessage(
        message_id="big",
        time=NOW,
        events=[DeviceEventItem(type="door.opened", message="x" * 2000) for _ in range(100)],
    )
    with pytest.raises(ValueError, match="split it"):
        link.send(TopicKind.EVENTS, huge)
    assert link.queue.depth() == 0


def test_backoff_doubles_up_to_the_maximum_with_jitter() -> None:
    """Delays lie in [d/2, d] for d = min(max, min * 2**attempt), and vary."""
    rng = random.Random(7)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (40, 60.0)]:
        delays = [backoff_delay(attempt, 1.0, 60.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4


def test_a_command_sent_twice_with_the_same_message_id_runs_once(
    links: Links, mosquitto: MosquittoBroker
) -> None:
    """A redelivered request (same message_id) reaches on_command once."""
    # GIVEN a link for gw-a collecting commands
    got: list[str] = []
    links.make("gw-a", on_command=lambda r: got.append(r.request_id))

    # WHEN the platform publishes one request twice, then another
    once = command("dup", "gw-a")
    mosquitto.publish(
        PLATFORM_IDENTITY,
        [
            ("cmd/aios/gw-a/req", once, False),
            ("cmd/aios/gw-a/req", once, False),
            ("cmd/aios/gw-a/req", command("next", "gw-a"), False),
        ],
    )

    # THEN the first runs once, then the second
    wait_until(lambda: len(got) >= 2, 15, "the commands")
    time.sleep(0.2)
    assert got == ["dup", "next"]


def test_a_broker_that_never_answers_mqtt_5_is_explained(tmp_path: Path) -> None:
    # GIVEN a TCP listener that accepts connections and never answers (as a broker that
    # speaks only MQTT 3.1.1 treats an MQTT 5 CONNECT)
    import socket

    from connector.check import check_platform
    from connector.config import parse_config

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        config = parse_config(
            f"connector: {{id: gw}}\nplatform: {{mqtt_url: 'mqtt://127.0.0.1:{port}'}}\n"
        )
        # WHEN the configuration is checked
        row = check_platform(config, base=tmp_path, timeout=1.0)
        # THEN the row says what to change
        assert not row.ok
        assert 'set platform.mqtt_version: "3.1.1"' in row.detail, row.detail
        # AND a connector already speaking 3.1.1 is not told to
        v311 = config.model_copy(
            update={"platform": config.platform.model_copy(update={"mqtt_version": "3.1.1"})}
        )
        row = check_platform(v311, base=tmp_path, timeout=1.0)
        assert not row.ok and "mqtt_version" not in row.detail, row.detail
