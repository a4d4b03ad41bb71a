"""The connector's link to the platform: MQTT 5 over mTLS, store and forward.

Everything the connector sends goes through the durable :class:`~connector.queue.OutboundQueue`
first (:meth:`PlatformLink.send` returns once the message is on disk) and is deleted from
it only when the broker acknowledges it (PUBACK). A network thread of this class connects,
reconnects and drains the queue:

- paho-mqtt 2.x, MQTT 5, QoS 1; client id ``platform.client_id`` or the connector id.
- A persistent session (``clean_start=False``, session expiry :data:`SESSION_EXPIRY_SECONDS`):
  a command published while the link was briefly away is delivered when it is back.
- mTLS (the CA, the connector's certificate and key of ``platform.tls``), TLS 1.2 or newer;
  an optional user name and password (a secret reference, resolved at construction).
- Reconnection with exponential backoff and jitter (:func:`backoff_delay`), from
  ``platform.reconnect_min_seconds`` to ``platform.reconnect_max_seconds``.
- At most ``inflight`` messages outstanding (capped by the broker's Receive Maximum), the
  oldest pending first. A new connection (a new paho client; nothing of the old one is
  replayed) starts again from the oldest message not yet acknowledged, so messages reach
  the broker in queue order; a message whose PUBACK was lost is sent twice with the same
  ``message_id`` and the receiver drops the copy. Per-device order is kept for a receiver
  that deduplicates by ``message_id``.
- A PUBACK reason code of 0x80 or more (0x87 not authorized, 0x95 packet too large, 0x97
  quota exceeded…) means the broker will never take the message: it is moved to the
  queue's dead letters (:meth:`~connector.queue.OutboundQueue.reject`), logged with seq,
  topic and reason (never the payload), and not retried.

Inbound: on every connection the link subscribes (QoS 1) to ``cmd/aios/{connector_id}/req``
and the retained ``cfg/aios/{id}/desired`` of the connector and of each of ``desired_ids``
(its child devices). Messages are parsed with :mod:`aios.messages`; an invalid one is
logged (topic and reason — field paths and error types, never content) and dropped. The
callbacks ``on_desired`` and ``on_command`` run on one worker thread of this class, in
arrival order, never on the network thread; a command redelivered by the broker (QoS 1:
same ``message_id``) is passed on once. Retained desired configurations are sent
again by the broker on every subscription, so ``on_desired`` must be idempotent (compare
``version``).

Secrets (the password, the private key) never reach a log line or an error message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue as queue_module
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from aios.messages import (
    MAX_PAYLOAD_BYTES,
    MESSAGE_MODELS,
    CommandRequest,
    DesiredConfig,
    Message,
    RecentMessages,
    TopicKind,
    describe_errors,
    parse_topic,
    topic,
)
from connector.config import PlatformConfig, SecretError, resolve_secret
from connector.queue import OutboundQueue

log = logging.getLogger(__name__)

SESSION_EXPIRY_SECONDS = 3600
"""How long the broker keeps the connector's session (subscriptions, QoS 1 messages for
it) after a disconnection, s: one hour, AWS IoT Core's default persistent-session expiry."""

SENDABLE_KINDS = frozenset(
    {TopicKind.HEARTBEAT, TopicKind.TELEMETRY, TopicKind.EVENTS, TopicKind.COMMAND_RESPONSE}
)
"""Topic kinds a connector publishes on (device → platform)."""

_LOOP_SECONDS = 0.02  # network loop tick: how soon a newly queued message is picked up
_CONNACK_SECONDS = 10.0  # wait for CONNACK after the TCP/TLS connection is up


def mqtt_version_hint(platform: PlatformConfig) -> str:
    """Why a broker may not answer the connection, and what to change: ``"; a broker that
    speaks only MQTT 3.1.1 ..."`` when ``platform`` speaks MQTT 5, else ``""``."""
    if platform.mqtt_version != "5":
        return ""
    return (
        "; a broker that speaks only MQTT 3.1.1 (such as aios up's embedded broker) does "
        'not answer MQTT 5: if so, set platform.mqtt_version: "3.1.1"'
    )


def backoff_delay(attempt: int, minimum: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (0 = first retry).

    Exponential backoff with "equal jitter" (AWS Architecture Blog, "Exponential Backoff
    And Jitter", 2015): ``d = min(maximum, minimum * 2**attempt)``, then a uniform value in
    ``[d/2, d]``, so a fleet that lost the broker together does not come back together.
    """
    base = min(maximum, minimum * 2.0 ** min(attempt, 32))
    return base / 2 + rng.uniform(0.0, base / 2)


@dataclass
class LinkStats:
    """A snapshot of the link: connection, queue and counters since :meth:`PlatformLink.start`.

    ``published`` counts PUBLISH packets sent (a message resent after a reconnection counts
    again); ``acknowledged`` and ``rejected`` count PUBACKs (success, refusal);
    ``reconnects``: connections established after a lost or failed one; ``last_error``:
    the latest connection problem, ``None`` if none yet.
    """

    connected: bool
    queue_depth: int
    queue_bytes: int
    published: int
    acknowledged: int
    rejected: int
    reconnects: int
    last_error: str | None


def _tls_context(platform: PlatformConfig) -> ssl.SSLContext | None:
    tls = platform.tls
    if tls is None:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file))
    except (OSError, ssl.SSLError) as err:
        raise ValueError(
            f"cannot load platform.tls.ca_file {tls.ca_file}: {_reason(err)}; give the PEM "
            "file of the CA that signed the broker's certificate"
        ) from err
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ssl.SSLError) as err:
            # the error names the files, never their content
            raise ValueError(
                f"cannot load platform.tls.cert_file {tls.cert_file} with key_file "
                f"{tls.key_file}: {_reason(err)}; give the connector's PEM certificate and "
                "its matching private key"
            ) from err
    return context


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


class PlatformLink:
    """The connector's MQTT link to the platform; see the module doc.

    ``queue`` is owned by the caller (open it before, close it after :meth:`stop`);
    ``inflight``: most messages awaiting PUBACK at once (1–65535). ``secrets_base``: folder
    of relative ``file:`` secret references (the configuration file's folder).

    Raises:
        ValueError: a bad connector id or ``inflight``, or unreadable TLS files.
        connector.config.SecretError: the password reference cannot be resolved.
    """

    def __init__(
        self,
        platform: PlatformConfig,
        connector_id: str,
        queue: OutboundQueue,
        *,
        inflight: int = 20,
        on_desired: Callable[[DesiredConfig], None] | None = None,
        on_command: Callable[[CommandRequest], None] | None = None,
        secrets_base: Path | None = None,
        desired_ids: Sequence[str] = (),
    ) -> None:
        if not 1 <= inflight <= 65_535:
            raise ValueError(f"inflight must be 1–65535, not {inflight}")
        self.platform = platform
        self.connector_id = connector_id
        self.client_id = platform.client_id or connector_id
        self.queue = queue
        self.inflight = inflight
        self.on_desired = on_desired
        self.on_command = on_command
        request = topic(TopicKind.COMMAND_REQUEST, connector_id)  # validates the id
        desired = [topic(TopicKind.DESIRED_CONFIG, connector_id)]
        desired += [topic(TopicKind.DESIRED_CONFIG, d) for d in desired_ids if d != connector_id]
        self.subscriptions: tuple[str, ...] = (request, *dict.fromkeys(desired))
        try:
            self._password = (
                resolve_secret(platform.password, base=secrets_base)
                if platform.password is not None
                else None
            )
        except SecretError as err:
            raise SecretError(f"platform.password: {err}") from err
        self._tls = _tls_context(platform)
        self._rng = random.Random()

        self._lock = threading.Lock()
        self._acked = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._recent_commands = RecentMessages(4096)  # QoS 1 redeliveries run once
        self._inbox: queue_module.Queue[tuple[str, bytes] | None] = queue_module.Queue()
        self._network: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._published = 0
        self._acknowledged = 0
        self._rejected = 0
        self._reconnects = 0
        self._last_error: str | None = None
        # network-thread state of the current connection
        self._window = inflight
        self._outstanding: dict[int, tuple[int, str]] = {}  # paho mid → (seq, topic)
        self._pubacks: list[tuple[int, ReasonCode]] = []
        self._sent_upto = 0
        self._connack: ReasonCode | None = None
        self._session_lost = False
        self._subscribing: dict[int, tuple[str, ...]] = {}

    # ------------------------------------------------------------------ public

    def start(self) -> None:
        """Start connecting in the background (returns at once).

        Raises:
            RuntimeError: already started.
        """
        if self._network is not None:
            raise RuntimeError("the platform link is started already")
        self._worker = threading.Thread(
            target=self._dispatch, name=f"link-dispatch-{self.connector_id}", daemon=True
        )
        self._network = threading.Thread(
            target=self._run, name=f"link-net-{self.connector_id}", daemon=True
        )
        self._worker.start()
        self._network.start()

    def send(self, kind: TopicKind, message: Message) -> int:
        """Queue ``message`` for the connector's topic of ``kind`` (durably: on disk when
        this returns); return its queue ``seq``.

        Raises:
            ValueError: ``kind`` is not one a connector publishes (:data:`SENDABLE_KINDS`),
                or the JSON is larger than :data:`aios.messages.MAX_PAYLOAD_BYTES`.
            TypeError: ``message`` is not the model of ``kind``.
            connector.queue.QueueFull: the queue is full (the platform unreachable too long).
        """
        kind = TopicKind(kind)
        if kind not in SENDABLE_KINDS:
            raise ValueError(
                f"a connector does not publish {kind.value} messages; use one of "
                + ", ".join(sorted(k.value for k in SENDABLE_KINDS))
            )
        model = MESSAGE_MODELS[kind]
        if not isinstance(message, model):
            raise TypeError(f"{kind.value} messages are {model.__name__}, not {type(message)}")
        payload = message.model_dump_json().encode("utf-8")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"{kind.value} message is {len(payload)} bytes, more than the platform's "
                f"{MAX_PAYLOAD_BYTES}: split it into smaller messages"
            )
        return self.queue.put(topic(kind, self.connector_id), payload)

    @property
    def connected(self) -> bool:
        """Whether the broker accepted the connection and it has not been lost since."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a connection; return :attr:`connected`."""
        return self._connected.wait(timeout)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until the queue is empty (every message acknowledged
        or rejected); return whether it is."""
        deadline = time.monotonic() + timeout
        with self._acked:
            while self.queue.depth() > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._acked.wait(min(remaining, 0.5))
        return True

    def stop(self, flush_timeout: float = 10.0) -> None:
        """Flush for up to ``flush_timeout`` s (while connected), then disconnect and stop
        the threads. What is left stays queued for the next start. Idempotent."""
        if self._network is None:
            return
        if flush_timeout > 0 and self.connected:
            self.flush(flush_timeout)
        self._stopping.set()
        self._network.join(_CONNACK_SECONDS + 5.0)
        self._inbox.put(None)
        if self._worker is not None:
            self._worker.join(5.0)

    def stats(self) -> LinkStats:
        """A snapshot of the connection, the queue and the counters."""
        with self._lock:
            return LinkStats(
                connected=self.connected,
                queue_depth=self.queue.depth(),
                queue_bytes=self.queue.size_bytes(),
                published=self._published,
                acknowledged=self._acknowledged,
                rejected=self._rejected,
                reconnects=self._reconnects,
                last_error=self._last_error,
            )

    # ------------------------------------------------------------------ network thread

    def _run(self) -> None:
        attempt = 0
        connections = 0
        while not self._stopping.is_set():
            client = self._new_client()
            try:
                if self._connect(client):
                    connections += 1
                    if connections > 1 or attempt > 0:
                        with self._lock:
                            self._reconnects += 1
                    attempt = 0
                    self._session(client)
                    if self._stopping.is_set():
                        self._disconnect(client)
                        break
            except Exception as err:  # a queue (disk) error must not end the link
                log.exception("platform link: unexpected error; reconnecting")
                self._error(f"unexpected error: {type(err).__name__}: {err}")
                self._close(client)
            delay = backoff_delay(
                attempt,
                self.platform.reconnect_min_seconds,
                self.platform.reconnect_max_seconds,
                self._rng,
            )
            attempt += 1
            log.info("platform link: reconnecting in %.1f s", delay)
            self._stopping.wait(delay)

    def _new_client(self) -> mqtt.Client:
        if self.platform.mqtt_version == "3.1.1":
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=self.client_id,
                protocol=mqtt.MQTTv311,
                clean_session=False,
            )
        else:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
            )
        if self._tls is not None:
            client.tls_set_context(self._tls)
        if self.platform.username is not None:
            client.username_pw_set(self.platform.username, self._password)
        client.max_inflight_messages_set(self.inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect(self, client: mqtt.Client) -> bool:
        self._connack = None
        self._session_lost = False
        where = f"{self.platform.host}:{self.platform.port}"
        try:
            if self.platform.mqtt_version == "3.1.1":
                client.connect(
                    self.platform.host,
                    self.platform.port,
                    keepalive=self.platform.keepalive_seconds,
                )
            else:
                properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
                client.connect(
                    self.platform.host,
                    self.platform.port,
                    keepalive=self.platform.keepalive_seconds,
                    clean_start=False,
                    properties=properties,
                )
        except (OSError, ssl.SSLError) as err:
            self._error(f"cannot connect to {where}: {_reason(err)}")
            return False
        deadline = time.monotonic() + _CONNACK_SECONDS
        while self._connack is None and not self._session_lost:
            if self._stopping.is_set():
                self._close(client)
                return False
            if time.monotonic() > deadline:
                self._error(
                    f"no CONNACK from {where} within {_CONNACK_SECONDS:g} s" + self._version_hint()
                )
                self._close(client)
                return False
            if client.loop(timeout=0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        if self._connack is None or self._connack.is_failure:
            reason = self._connack.getName() if self._connack is not None else "closed"
            # no answer but a closed socket, or 0x84 Unsupported Protocol Version
            unanswered = self._connack is None or self._connack.value == 0x84
            hint = self._version_hint() if unanswered else ""
            self._error(f"the broker at {where} refused the connection: {reason}{hint}")
            self._close(client)
            return False
        return True

    def _version_hint(self) -> str:
        return mqtt_version_hint(self.platform)

    def _session(self, client: mqtt.Client) -> None:
        self._outstanding.clear()
        self._pubacks.clear()
        self._sent_upto = 0
        self._subscribing.clear()
        if self.platform.mqtt_version == "3.1.1":
            result, mid = client.subscribe([(f, 1) for f in self.subscriptions])
        else:
            options = SubscribeOptions(qos=1)
            result, mid = client.subscribe([(f, options) for f in self.subscriptions])
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._subscribing[mid] = self.subscriptions
        log.info(
            "platform link: connected to %s:%d as %s (window %d)",
            self.platform.host,
            self.platform.port,
            self.client_id,
            self._window,
        )
        self._connected.set()
        try:
            while not self._stopping.is_set():
                rc = client.loop(timeout=_LOOP_SECONDS)
                self._settle()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._session_lost:
                    why = (
                        mqtt.error_string(rc)
                        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS
                        else "disconnected"
                    )
                    self._error(f"connection lost: {why}")
                    break
                self._fill(client)
        finally:
            self._connected.clear()
            self._outstanding.clear()

    def _fill(self, client: mqtt.Client) -> None:
        room = self._window - len(self._outstanding)
        if room <= 0 or self.queue.depth() <= len(self._outstanding):
            return
        for message in self.queue.pending(room, after=self._sent_upto):
            info = client.publish(message.topic, message.payload, qos=1, retain=message.retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # the connection is going: the loop notices
            self._outstanding[info.mid] = (message.seq, message.topic)
            self._sent_upto = message.seq
            with self._lock:
                self._published += 1

    def _settle(self) -> None:
        if not self._pubacks:
            return
        pubacks, self._pubacks = self._pubacks, []
        acked: list[int] = []
        for mid, reason in pubacks:
            entry = self._outstanding.pop(mid, None)
            if entry is None:
                continue
            seq, message_topic = entry
            if reason.is_failure:
                text = f"{reason.value:#04x} {reason.getName()}"
                log.warning(
                    "platform link: the broker refused message %d on %s: %s; moved to the "
                    "dead letters, not retried",
                    seq,
                    message_topic,
                    text,
                )
                self.queue.reject(seq, text)
                with self._lock:
                    self._rejected += 1
            else:
                acked.append(seq)
        self.queue.ack_many(acked)
        with self._acked:
            self._acknowledged += len(acked)
            self._acked.notify_all()

    def _disconnect(self, client: mqtt.Client) -> None:
        client.disconnect()
        deadline = time.monotonic() + 2.0
        while client.is_connected() and time.monotonic() < deadline:
            if client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        self._close(client)

    @staticmethod
    def _close(client: mqtt.Client) -> None:
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.close()

    def _error(self, text: str) -> None:
        log.warning("platform link: %s", text)
        with self._lock:
            self._last_error = text

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connack = reason
        receive_maximum = getattr(properties, "ReceiveMaximum", None)
        self._window = min(self.inflight, receive_maximum or self.inflight)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._session_lost = True
        if reason.is_failure:
            hint = ""
            if reason.value == 0x8E:  # Session taken over (MQTT 5)
                hint = (
                    f"; if another client connects with the client id {self.client_id!r}, "
                    "the broker drops one for the other: give each connector its own "
                    "connector.id (or platform.client_id)"
                )
            self._error(f"disconnected by the broker: {reason.getName()}{hint}")

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        self._pubacks.append((mid, reason))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        filters = self._subscribing.pop(mid, ())
        for name, reason in zip(filters, reasons, strict=False):
            if reason.is_failure:
                log.warning(
                    "platform link: the broker refused the subscription to %s: %s",
                    name,
                    reason.getName(),
                )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._inbox.put((message.topic, bytes(message.payload)))

    # ------------------------------------------------------------------ dispatch thread

    def _dispatch(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            try:
                self._deliver(*item)
            except Exception:
                log.exception("platform link: a message handler failed")

    def _deliver(self, message_topic: str, payload: bytes) -> None:
        try:
            device_id, kind = parse_topic(message_topic)
        except ValueError as err:
            log.warning("platform link: dropped a message: %s", err)
            return
        if kind == TopicKind.DESIRED_CONFIG and not payload:
            log.info("platform link: the desired configuration on %s was cleared", message_topic)
            return
        if kind not in (TopicKind.DESIRED_CONFIG, TopicKind.COMMAND_REQUEST):
            log.warning(
                "platform link: dropped a message on %s: not a platform topic", message_topic
            )
            return
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            log.warning(
                "platform link: dropped a message on %s: not JSON (%s)",
                message_topic,
                type(err).__name__,
            )
            return
        try:
            parsed = MESSAGE_MODELS[kind].model_validate(data)
        except ValidationError as err:
            log.warning(
                "platform link: dropped an invalid message on %s: %s",
                message_topic,
                describe_errors(err),
            )
            return
        if isinstance(parsed, DesiredConfig):
            if parsed.device_id != device_id:
                log.warning(
                    "platform link: dropped a desired configuration on %s: its device_id "
                    "is %s, not the topic's",
                    message_topic,
                    parsed.device_id,
                )
                return
            if self.on_desired is not None:
                self.on_desired(parsed)
        elif isinstance(parsed, CommandRequest):
            key = (device_id, parsed.message_id)
            if key in self._recent_commands:
                log.info("platform link: dropped a redelivered command %s", parsed.request_id)
                return
            self._recent_commands.add(key)
            if self.on_command is not None:
                self.on_command(parsed)
