"""MQTT ingestion: device messages from the broker into the fleet.

:func:`handle_message` takes one message (topic and payload bytes) through validation to
:class:`~aios.fleet.service.FleetService` and says what became of it (:class:`Outcome`).
It never raises for a bad message; the cloud's ingest function (an IoT rule invoking a
Lambda function) calls it too, so both paths keep the same rules.

:class:`MqttIngester` subscribes, with paho-mqtt 2.x at QoS 1, to::

    dt/aios/+/heartbeat   dt/aios/+/telemetry   dt/aios/+/events   cmd/aios/+/res

paho's network thread only queues each message; worker threads (one queue each, chosen by
the topic's device id so one device's messages are handled in order) call
:func:`handle_message`, so a slow database never stalls the connection. A full queue
blocks the network thread: the broker then holds messages back (flow control) instead of
the process growing without bound. Lost connections are retried by paho with exponential
backoff (``reconnect_min_delay_seconds`` to ``reconnect_max_delay_seconds``). Given a stable
``client_id``, the session is persistent (``clean_session=False``): the broker keeps QoS 1
messages for the ingester while it is away; without one, a random id and a clean session.
:meth:`MqttIngester.stop` handles every message already received before it returns.

Outcomes are counted per reason in :attr:`MqttIngester.stats`; refused messages are logged
with topic, reason, size and a detail made of field paths and error types — never the
payload or any value from it, which may hold credentials — the first 20
of each reason, then every 1000th (a misbehaving device must not flood the log). A message
whose ``(device, message_id)`` was handled within the last ``dedup_window`` messages is
dropped as a duplicate (QoS 1 delivers at least once).
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from aios.fleet.service import FleetService, InvalidRequest, MessageRefused
from aios.messages import (
    MAX_PAYLOAD_BYTES,
    SUBSCRIPTIONS,
    CommandResponse,
    DeviceEventsMessage,
    Heartbeat,
    RecentMessages,
    Telemetry,
    TopicKind,
    describe_errors,
    parse_topic,
)

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

REASONS = (
    "accepted",
    "duplicate",
    "too_large",
    "bad_topic",
    "bad_json",
    "invalid",
    "unknown_device",
    "not_a_child",
    "unknown_command",
    "wrong_device",
    "late_response",
    "error",
)
"""Every :attr:`Outcome.reason`: ``accepted``, or why the message was not taken."""


@dataclass(frozen=True)
class Outcome:
    """What became of one message. ``detail`` explains a refusal: field paths, error
    types, device ids — never a value from the payload."""

    reason: str
    kind: TopicKind | None = None
    device_id: str | None = None
    detail: str = ""

    @property
    def accepted(self) -> bool:
        """Whether the message was stored."""
        return self.reason == "accepted"


def handle_message(
    fleet: FleetService,
    topic: str,
    payload: bytes,
    *,
    recent: RecentMessages | None = None,
) -> Outcome:
    """Validate one device message and hand it to ``fleet``; never raises for bad input.

    ``recent``: remembered message keys; a message whose (device, message_id) is in it is
    a ``duplicate``; accepted messages are added. Reasons: :data:`REASONS`. Store errors
    (a database that is down) are counted as ``error`` and logged with their type.
    """
    try:
        device_id, kind = parse_topic(topic)
    except ValueError as err:
        return Outcome("bad_topic", detail=str(err))
    if kind not in _MODELS:
        return Outcome("bad_topic", kind, device_id, f"devices do not publish on {kind} topics")
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Outcome("too_large", kind, device_id, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        return Outcome("bad_json", kind, device_id, f"not JSON: {type(err).__name__}")
    if not isinstance(data, dict):
        return Outcome("bad_json", kind, device_id, "not a JSON object")
    try:
        message = _MODELS[kind].model_validate(data)
    except ValidationError as err:
        return Outcome("invalid", kind, device_id, describe_errors(err))
    key = (device_id, message.message_id)
    if recent is not None and key in recent:
        return Outcome("duplicate", kind, device_id, "message_id handled already")
    try:
        if isinstance(message, Heartbeat):
            fleet.record_heartbeat(device_id, message)
        elif isinstance(message, Telemetry):
            fleet.record_telemetry(device_id, message)
        elif isinstance(message, DeviceEventsMessage):
            fleet.record_events(device_id, message)
        elif (
            isinstance(message, CommandResponse)
            and fleet.record_command_response(device_id, message) is None
        ):
            if recent is not None:
                recent.add(key)
            return Outcome(
                "late_response", kind, device_id, "request answered already or past its deadline"
            )
    except MessageRefused as err:
        return Outcome(err.reason, kind, device_id, str(err))
    except InvalidRequest as err:
        return Outcome("invalid", kind, device_id, str(err))
    except Exception as err:  # the store failed: count it, keep the loop alive
        # The type only: an exception's text (and a traceback's last line) may quote the
        # message's content.
        log.error("ingest: %s from %s failed: %s", kind, device_id, _error_type(err))
        return Outcome("error", kind, device_id, _error_type(err))
    if recent is not None:
        recent.add(key)
    return Outcome("accepted", kind, device_id)


_MODELS: dict[TopicKind, type[Heartbeat | Telemetry | DeviceEventsMessage | CommandResponse]] = {
    TopicKind.HEARTBEAT: Heartbeat,
    TopicKind.TELEMETRY: Telemetry,
    TopicKind.EVENTS: DeviceEventsMessage,
    TopicKind.COMMAND_RESPONSE: CommandResponse,
}


def _error_type(err: BaseException) -> str:
    cls = type(err)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


class _LogLimiter:
    """Log the first ``first`` refusals of each reason, then every ``every``-th."""

    def __init__(self, first: int = 20, every: int = 1000) -> None:
        self.first = first
        self.every = every
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def should_log(self, reason: str) -> bool:
        with self._lock:
            self._counts[reason] += 1
            n = self._counts[reason]
        return n <= self.first or n % self.every == 0


_STOP = object()


class MqttIngester:
    """Subscribes to device messages and stores them through ``fleet`` (see module doc).

    ``tls``: an SSL context for ``mqtts`` (server verification, client certificate);
    ``username``/``password``: MQTT credentials. ``workers``: handler threads.
    ``queue_size``: messages waiting per worker before the network thread blocks.
    """

    def __init__(
        self,
        fleet: FleetService,
        *,
        host: str,
        port: int,
        client_id: str | None = None,
        tls: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        workers: int = 2,
        queue_size: int = 10000,
        keepalive_seconds: int = 60,
        clean_session: bool | None = None,
        reconnect_min_delay_seconds: int = 1,
        reconnect_max_delay_seconds: int = 60,
        dedup_window: int = 65536,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be ≥ 1")
        self.fleet = fleet
        self.host = host
        self.port = port
        self.client_id = client_id or f"aios-ingest-{uuid.uuid4().hex[:8]}"
        self.tls = tls
        self.username = username
        self.password = password
        self.keepalive_seconds = keepalive_seconds
        self.clean_session = client_id is None if clean_session is None else clean_session
        self.reconnect_delays = (reconnect_min_delay_seconds, reconnect_max_delay_seconds)
        self.recent = RecentMessages(dedup_window)
        self._queues: list[queue.Queue[Any]] = [queue.Queue(queue_size) for _ in range(workers)]
        self._threads: list[threading.Thread] = []
        self._client: mqtt.Client | None = None
        self._subscribed = threading.Event()
        self._sub_mid: int | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._stats: Counter[str] = Counter()
        self._log_limiter = _LogLimiter()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the workers and connect in the background; return at once."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        if self._client is not None:
            return
        for i, q in enumerate(self._queues):
            thread = threading.Thread(
                target=self._work, args=(q,), name=f"aios-ingest-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=self.clean_session,
        )
        client.reconnect_delay_set(*self.reconnect_delays)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.connect_async(self.host, self.port, keepalive=self.keepalive_seconds)
        client.loop_start()
        self._client = client
        log.info("ingest: connecting to %s:%d as %s", self.host, self.port, self.client_id)

    def stop(self, timeout: float = 30.0) -> None:
        """Disconnect, then handle the messages already queued and end the workers."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self._subscribed.clear()
        for q in self._queues:
            q.put(_STOP)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until the broker granted the subscriptions, or ``timeout`` seconds pass."""
        return self._subscribed.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every received message has been handled, or ``timeout`` passes."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    @property
    def stats(self) -> dict[str, int]:
        """Counts since start: ``received``, one per outcome reason (:data:`REASONS`), and
        ``accepted.<kind>`` per topic kind."""
        with self._lock:
            return dict(self._stats)

    # ------------------------------------------------------------------ workers

    def _work(self, q: queue.Queue[Any]) -> None:
        while True:
            item = q.get()
            if item is _STOP:
                return
            topic, payload = item
            try:
                outcome = handle_message(self.fleet, topic, payload, recent=self.recent)
            except Exception as err:  # handle_message does not raise; belt and braces
                log.error("ingest: unexpected failure on %s: %s", topic, _error_type(err))
                outcome = Outcome("error", detail=_error_type(err))
            with self._idle:
                self._stats[outcome.reason] += 1
                if outcome.accepted and outcome.kind is not None:
                    self._stats[f"accepted.{outcome.kind.value}"] += 1
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.notify_all()
            if not outcome.accepted and self._log_limiter.should_log(outcome.reason):
                log.warning(
                    "ingest: message on %s (%d bytes) not stored: %s%s",
                    topic,
                    len(payload),
                    outcome.reason,
                    f" — {outcome.detail}" if outcome.detail else "",
                )

    # ------------------------------------------------------------------ paho callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning(
                "ingest: broker %s:%d refused the connection: %s (check credentials)",
                self.host,
                self.port,
                reason_code,
            )
            return
        _, mid = client.subscribe([(t, 1) for t in SUBSCRIPTIONS])
        self._sub_mid = mid
        log.info("ingest: connected to %s:%d, subscribing", self.host, self.port)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        log.warning(
            "ingest: cannot reach broker %s:%d; retrying with backoff", self.host, self.port
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._subscribed.clear()
        if reason_code.is_failure:
            log.warning("ingest: disconnected (%s); reconnecting", reason_code)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid != self._sub_mid:
            return
        if any(rc.is_failure for rc in reason_codes):
            log.warning(
                "ingest: the broker refused a subscription (%s)",
                ", ".join(str(rc) for rc in reason_codes),
            )
            return
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Runs in paho's network thread: only queue. Never raise (it would end the thread).
        try:
            topic = message.topic
            payload = bytes(message.payload)
            levels = topic.split("/")
            shard_key = levels[2] if len(levels) > 2 else topic
            q = self._queues[zlib.crc32(shard_key.encode()) % len(self._queues)]
            with self._lock:
                self._stats["received"] += 1
                self._in_flight += 1
            q.put((topic, payload))
        except Exception as err:
            log.error("ingest: could not queue a message: %s", type(err).__name__)
            with self._idle:
                self._stats["error"] += 1
