"""The embedded MQTT broker and the device link, with paho clients on loopback."""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from up_support import free_port, wait_until

from aios.up.broker import (
    BrokerAddress,
    BrokerError,
    EmbeddedBroker,
    MqttDeviceLink,
    parse_broker_url,
)

WAIT = 10.0


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    started = EmbeddedBroker("127.0.0.1", 0)
    started.start()
    yield started
    started.stop()


@pytest.fixture
def link(broker: EmbeddedBroker) -> Iterator[MqttDeviceLink]:
    device_link = MqttDeviceLink(broker.address)
    assert device_link.start(wait=WAIT)
    yield device_link
    device_link.close()


class Subscriber:
    """A paho client that collects the messages of one topic filter."""

    def __init__(self, address: BrokerAddress, topic: str) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-subscriber")
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        granted: queue.Queue[Any] = queue.Queue()
        self.client.on_subscribe = lambda *args: granted.put(args)
        self.client.on_connect = lambda client, *_: client.subscribe(topic, qos=1)
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        granted.get(timeout=WAIT)

    def next(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_retained_desired_config_reaches_a_device_that_subscribes_later(
    broker: EmbeddedBroker, link: MqttDeviceLink
) -> None:
    """A retained QoS 1 publish is delivered to a subscriber that connects afterwards."""
    # GIVEN the platform publishes a device's desired configuration, retained
    payload = {"version": 3, "config": {"fps": 5}, "time": "2026-01-01T00:00:00+00:00"}
    link.publish("cfg/aios/cam-1/desired", payload, retain=True)
    assert link.unacknowledged() == 0  # publish waited for the broker's PUBACK
    # WHEN the device connects and subscribes only now
    device = Subscriber(broker.address, "cfg/aios/cam-1/desired")
    try:
        message = device.next()
    finally:
        device.close()
    # THEN it gets the configuration, flagged retained, at QoS 1
    assert message.topic == "cfg/aios/cam-1/desired"
    assert message.retain
    assert message.qos == 1
    assert json.loads(message.payload) == payload


def test_command_reaches_a_subscribed_device(broker: EmbeddedBroker, link: MqttDeviceLink) -> None:
    """A non-retained request goes to the subscribed device, datetimes as ISO 8601."""
    from datetime import UTC, datetime

    device = Subscriber(broker.address, "cmd/aios/plc-1/req")
    try:
        at = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
        link.publish("cmd/aios/plc-1/req", {"request_id": "req_1", "name": "reboot", "at": at})
        message = device.next()
    finally:
        device.close()
    assert not message.retain
    assert json.loads(message.payload) == {
        "request_id": "req_1",
        "name": "reboot",
        "at": "2026-05-01T12:00:00+00:00",
    }


def test_messages_published_while_the_broker_is_down_are_sent_on_reconnect() -> None:
    """The link queues while disconnected and delivers once the broker is (back) up."""
    # GIVEN a link whose broker is not running yet
    port = free_port()
    link = MqttDeviceLink(BrokerAddress("127.0.0.1", port))
    link.start()
    assert not link.is_connected()
    try:
        # WHEN it publishes (retained), then the broker starts
        link.publish("cfg/aios/cam-9/desired", {"version": 1}, retain=True)
        assert link.unacknowledged() == 1
        broker = EmbeddedBroker("127.0.0.1", port)
        broker.start()
        try:
            # THEN the link reconnects and the broker acknowledges the queued message
            wait_until(link.is_connected, timeout=WAIT, what="link reconnected")
            wait_until(lambda: link.unacknowledged() == 0, timeout=WAIT, what="PUBACK")
            device = Subscriber(broker.address, "cfg/aios/cam-9/desired")
            try:
                assert json.loads(device.next().payload) == {"version": 1}
            finally:
                device.close()
        finally:
            link.close()
            broker.stop()
    finally:
        link.close()


def test_broker_reports_a_busy_port_and_stops_listening(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """A second broker on a taken port fails clearly, without a traceback in the log; a
    stopped one no longer listens."""
    assert broker.port > 0
    assert broker.is_listening()
    with (
        caplog.at_level(logging.DEBUG),
        pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{broker.port}.*AIOS_BROKER_PORT"),
    ):
        EmbeddedBroker("127.0.0.1", broker.port).start()
    assert not [r for r in caplog.records if r.exc_info]
    broker.stop()
    assert not broker.is_listening()
    broker.stop()  # twice is harmless


def test_invalid_topic_is_refused(link: MqttDeviceLink) -> None:
    """Wildcards cannot be published to: a clear error, nothing queued."""
    from aios.up.broker import DeviceLinkError

    with pytest.raises(DeviceLinkError, match="cmd/aios/"):
        link.publish("cmd/aios/+/req", {"x": 1})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.local", BrokerAddress("broker.local", 1883)),
        ("mqtts://broker.local", BrokerAddress("broker.local", 8883, tls=True)),
        (
            "mqtt://svc%40aios:p%2Fss@10.0.0.5:1884",
            BrokerAddress("10.0.0.5", 1884, username="svc@aios", password="p/ss"),
        ),
    ],
)
def test_parse_broker_url(url: str, expected: BrokerAddress) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker.local", "mqtt:// or mqtts://"),
        ("mqtt://", "no host"),
        ("mqtt://broker.local:99999", "port"),
    ],
)
def test_parse_broker_url_errors(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_broker_url(url)


def test_address_url_hides_credentials() -> None:
    address = BrokerAddress("h", 1883, username="u", password="secret")
    assert address.url == "mqtt://h:1883"
    assert "secret" not in address.url
