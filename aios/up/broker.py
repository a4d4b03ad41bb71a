"""MQTT on one machine: the embedded broker and the link that publishes to devices.

:class:`EmbeddedBroker` runs amqtt (a pure-Python MQTT 3.1.1 broker) in its own thread and
event loop, listening on loopback by default; ``aios up`` starts it unless an external
broker URL is configured. Anonymous clients are accepted: bind it to loopback (the default)
or use an external broker with authentication and TLS for devices on other hosts. amqtt
keeps retained messages in memory only: they do not survive a restart.

:class:`MqttDeviceLink` is the local :class:`~aios.services.DeviceLink` (paho-mqtt, QoS 1,
automatic reconnection). Messages published while the broker is unreachable are kept in
memory and sent when the connection is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from amqtt.broker import Broker  # type: ignore[import-untyped]
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from aios.up.encoding import json_default

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0


class BrokerError(Exception):
    """The MQTT broker could not be started, stopped or reached."""


class DeviceLinkError(Exception):
    """A message to a device could not be queued for sending."""


@dataclass(frozen=True)
class BrokerAddress:
    """Where an MQTT broker listens, and how to log in to it."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """``mqtt://host:port`` (or ``mqtts://``), without credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…``.

    Default ports: 1883 (mqtt), 8883 (mqtts), the IANA registrations. Percent-encoded
    user names and passwords are decoded.

    Raises:
        ValueError: the scheme is not mqtt/mqtts, the host is missing or the port invalid.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(
            f"broker URL must start with mqtt:// or mqtts:// (got {parts.scheme or 'none'}://)"
        )
    if not parts.hostname:
        raise ValueError("broker URL has no host; write it as mqtt://host:1883")
    try:
        port = parts.port
    except ValueError as err:
        raise ValueError("broker URL port must be a number between 1 and 65535") from err
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class EmbeddedBroker:
    """An amqtt broker on ``host:port`` (port 0: any free one, see :attr:`port`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self._requested_port = port
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None

    @property
    def address(self) -> BrokerAddress:
        """Where clients reach it (loopback when bound to every interface)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = "::1" if host == "::" else host
        return BrokerAddress(host=host, port=self.port)

    def _config(self) -> dict[str, Any]:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{self._requested_port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    def start(self) -> None:
        """Start the broker thread; return once it listens.

        Raises:
            BrokerError: the address is in use or cannot be bound.
        """
        if self._thread is not None:
            raise BrokerError("the embedded broker is already started")
        self._check_port_free()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="mqtt-broker", daemon=True)
        thread.start()

        async def start() -> Broker:
            broker = Broker(self._config())
            await broker.start()
            return broker

        try:
            self._broker = asyncio.run_coroutine_threadsafe(start(), loop).result(
                START_TIMEOUT_SECONDS
            )
        except Exception as err:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(START_TIMEOUT_SECONDS)
            loop.close()
            cause = err.__cause__ or err
            raise BrokerError(
                f"cannot start the MQTT broker on {self.host}:{self._requested_port}: {cause}; "
                "choose another port (AIOS_BROKER_PORT) or stop what uses it"
            ) from err
        self._loop, self._thread = loop, thread
        server = self._broker._servers["default"].instance
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("MQTT broker listening", extra={"broker_url": self.address.url})

    def _check_port_free(self) -> None:
        """Refuse a port in use before the broker tries it (amqtt logs a traceback when
        its own bind fails; the error raised here already says what to do)."""
        if self._requested_port == 0:
            return
        probe = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        try:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((self.host, self._requested_port))
        except OSError as err:
            raise BrokerError(
                f"cannot start the MQTT broker on {self.host}:{self._requested_port}: "
                f"{err.strerror or err}; choose another port (AIOS_BROKER_PORT) or stop what "
                "uses it"
            ) from err
        finally:
            probe.close()

    def is_listening(self) -> bool:
        """Whether a TCP connection to the broker succeeds now (1 s bound)."""
        try:
            with socket.create_connection((self.address.host, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect every client and stop listening; safe to call twice."""
        loop, thread, broker = self._loop, self._thread, self._broker
        if loop is None or thread is None or loop.is_closed():
            return
        try:
            if broker is not None:
                asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout)
        except Exception:
            log.warning("the MQTT broker did not shut down cleanly", exc_info=True)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = self._broker = None
        log.info("MQTT broker stopped")


class MqttDeviceLink:
    """Publishes JSON messages to devices at QoS 1 (paho-mqtt).

    The connection is made in the background and remade after a loss (1 s to 30 s
    backoff). :meth:`publish` queues the message and, while connected, waits up to
    ``ack_timeout`` seconds for the broker's PUBACK; a message not acknowledged by then,
    or queued while disconnected, is still sent (and resent) by paho until acknowledged.
    """

    def __init__(
        self,
        address: BrokerAddress,
        *,
        client_id: str | None = None,
        ack_timeout: float = 2.0,
        max_queued: int = 10_000,
        keepalive: int = 30,
    ) -> None:
        self.address = address
        self.ack_timeout = ack_timeout
        self._connected = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"aios-link-{secrets.token_hex(4)}",
            clean_session=True,
        )
        self._client.max_queued_messages_set(max_queued)
        self._client.max_inflight_messages_set(100)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        if address.username is not None:
            self._client.username_pw_set(address.username, address.password)
        if address.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        # Message ids sent and not acknowledged; acknowledgements that came before their
        # id was recorded. Guarded by _acks, never held while calling paho (whose network
        # thread calls _on_publish while holding its own lock).
        self._unacked: set[int] = set()
        self._early_acks: set[int] = set()
        self._acks = threading.Condition()
        self._keepalive = keepalive
        self._started = False

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT link refused by the broker", extra={"reason": str(reason)})
            return
        self._connected.set()
        log.info("MQTT link connected", extra={"broker_url": self.address.url})

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _properties: Any,
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was and self._started:
            log.warning("MQTT link disconnected", extra={"reason": str(reason)})

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _properties: Any
    ) -> None:
        with self._acks:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early_acks.add(mid)
            self._acks.notify_all()

    def start(self, wait: float | None = None) -> bool:
        """Connect in the background; with ``wait``, wait that many seconds for the
        connection. Returns whether it is connected."""
        if not self._started:
            self._started = True
            self._client.connect_async(self.address.host, self.address.port, self._keepalive)
            self._client.loop_start()
        if wait:
            self._connected.wait(wait)
        return self._connected.is_set()

    def is_connected(self) -> bool:
        """Whether the link is connected to the broker now."""
        return self._connected.is_set()

    def publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        """Send ``payload`` as JSON on ``topic`` at QoS 1.

        Raises:
            DeviceLinkError: the topic is invalid or the outgoing queue is full.
            TypeError: the payload is not JSON-serialisable.
        """
        data = json.dumps(payload, default=json_default, separators=(",", ":"))
        try:
            info = self._client.publish(topic, data, qos=1, retain=retain)
        except ValueError as err:
            raise DeviceLinkError(f"cannot publish on {topic!r}: {err}") from err
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            raise DeviceLinkError(
                f"cannot publish on {topic!r}: {info.rc} messages already wait for the broker"
            )
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise DeviceLinkError(f"cannot publish on {topic!r}: {mqtt.error_string(info.rc)}")
        with self._acks:
            if info.mid in self._early_acks:
                self._early_acks.discard(info.mid)
            else:
                self._unacked.add(info.mid)
            if not self._connected.is_set():
                log.warning(
                    "MQTT link down: message queued until it reconnects", extra={"topic": topic}
                )
                return
            acked = self._acks.wait_for(lambda: info.mid not in self._unacked, self.ack_timeout)
        if not acked:
            log.warning(
                "MQTT publish not acknowledged within %.1f s; paho resends it",
                self.ack_timeout,
                extra={"topic": topic},
            )

    def unacknowledged(self) -> int:
        """How many published messages the broker has not acknowledged yet."""
        with self._acks:
            return len(self._unacked)

    def close(self, timeout: float = 5.0) -> None:
        """Wait up to ``timeout`` seconds for unacknowledged messages, then disconnect."""
        if not self._started:
            return
        with self._acks:
            if self._connected.is_set():
                self._acks.wait_for(lambda: not self._unacked, timeout)
            left = len(self._unacked)
        if left:
            log.warning("MQTT link closed with messages unacknowledged", extra={"count": left})
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()
