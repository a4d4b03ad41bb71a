"""``aios/sensor.data@1`` — device telemetry arriving over MQTT, as pipeline events.

The node subscribes (paho-mqtt, MQTT 5 or 3.1.1) to the platform's telemetry topic,
``dt/aios/{device_id}/telemetry`` — the filter ``dt/aios/+/telemetry`` for every device, or
one device's topic — where devices publish :class:`aios.messages.Telemetry`::

    {"schema_version": 1, "message_id": "t-9", "time": "2026-01-05T09:00:00Z",
     "samples": [{"metric": "temp_c", "value": 71.5, "unit": "°C"},
                 {"metric": "running", "value": 1}]}

Messages are read as the platform's ingester reads them: the topic with
:func:`aios.messages.parse_topic`, the payload with the :class:`~aios.messages.Telemetry`
model, so what a device may send is defined once, in :mod:`aios.messages`.

Each message becomes one ``sensor.reading`` event per sample time (a sample's ``time``,
else the message's): one event for the usual message whose samples were read together;
for a batch read at several moments, one event per moment, in time order, so that no
reading is lost in ``readings``, which holds one value per metric. Of two samples of one
metric at the same time, the later in the message wins. ``data.readings`` holds the
values (floats; booleans and coils as 0/1) by metric, ``data.units`` the units that were
sent::

    {"event_id": "…", "event_type": "sensor.reading", "time": "2026-01-05T09:00:00Z",
     "source_id": "press-7",
     "data": {"topic": "dt/aios/press-7/telemetry",
              "readings": {"temp_c": 71.5, "running": 1.0}, "units": {"temp_c": "°C"},
              "message_id": "t-9", "publisher_id": "press-7",
              "received_at": "2026-01-05T09:00:00.120000Z"}}

``source_id`` is the device the readings are about: the message's ``device_id`` when a
connector publishes for one of its child devices, else the topic's device.
``publisher_id`` is always the topic's device, the one the broker authenticated (its ACLs
bind each device to its own topics). The node has no device registry, so unlike the
ingester it cannot check that a named ``device_id`` is a child of the publisher: a
condition that must trust ``source_id`` can compare it with ``publisher_id``.

``event_id`` is derived from the publisher, ``message_id`` and the event's time, so it is
the same whenever a message is delivered. A message whose ``(publisher, message_id)`` was
handled within the last :data:`DEDUP_WINDOW` messages is dropped as a ``duplicate`` (QoS 1
delivers at least once; the protocol processes a message once).

Messages that are not platform telemetry are dropped, counted in
:attr:`SensorDataSource.stats` by reason — ``bad_topic`` (not ``dt/aios/{id}/telemetry``),
``too_large`` (over ``max_payload_bytes``), ``bad_json`` (not UTF-8 JSON, ``NaN``, not an
object), ``invalid`` (not a :class:`~aios.messages.Telemetry`), the ingester's names — and
logged with the topic, size, reason and the field paths at fault, never the payload (it may
hold credentials or personal data): the first :data:`LOG_FIRST` of each reason, then every
:data:`LOG_EVERY`-th, so a misbehaving device cannot flood the log. The client keeps
running. Lost connections are retried by paho's own loop with exponential backoff between
``reconnect_min_delay_seconds`` and ``reconnect_max_delay_seconds``
(``Client.reconnect_delay_set``); the subscription is renewed on every connect.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from aios.catalog.base import (
    Category,
    EventRole,
    NodeConfig,
    NodeManifest,
    NodeType,
    PortKind,
    PortSpec,
    Tier,
)
from aios.domain import DEVICE_ID_PATTERN
from aios.events.secrets import SecretName, SecretNotFound, env_var_for
from aios.events.task import Emit, Event, PermanentError, TaskServices
from aios.messages import (
    MAX_PAYLOAD_BYTES,
    METRIC_PATTERN,
    RecentMessages,
    Telemetry,
    TelemetrySample,
    TopicKind,
    check_times,
    parse_topic,
)
from aios.runtime.events import event_key

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

EVENT_TYPE = "sensor.reading"

TELEMETRY_FILTER = "dt/aios/+/telemetry"
"""The filter of every device's telemetry topic (:mod:`aios.messages`)."""

DROP_REASONS = ("bad_topic", "too_large", "bad_json", "invalid")
"""Why a message is dropped (:class:`InvalidMessage.reason`); the ingester's names."""

DEDUP_WINDOW = 10_000
"""Messages remembered for duplicate detection (a QoS 1 redelivery comes within seconds)."""

LOG_FIRST = 20
"""Dropped messages logged per reason before logging thins out."""

LOG_EVERY = 1000
"""After :data:`LOG_FIRST`, every this-many-th dropped message of a reason is logged."""

_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
_METRIC_RE = re.compile(METRIC_PATTERN)


def validate_topic_filter(value: str) -> str:
    """Return an MQTT topic filter unchanged if valid, else raise ``ValueError``.

    Rules from MQTT 3.1.1 §4.7 (same in MQTT 5 §4.7): 1 to 65535 UTF-8 bytes, no NUL;
    ``+`` must fill a whole level; ``#`` must fill the last level.
    """
    if not value or len(value.encode("utf-8")) > 65_535:
        raise ValueError("a topic filter is 1 to 65535 bytes long")
    if "\x00" in value:
        raise ValueError("a topic filter must not contain the NUL character")
    levels = value.split("/")
    for i, level in enumerate(levels):
        if "+" in level and level != "+":
            raise ValueError(
                f"'+' must be a whole topic level, e.g. 'dt/aios/+/telemetry' ({value!r})"
            )
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(
                f"'#' must be the whole last topic level, e.g. 'dt/aios/#' ({value!r})"
            )
    return value


def validate_telemetry_filter(value: str) -> str:
    """Return ``value`` if it is a valid filter of platform telemetry topics, else raise
    ``ValueError`` saying what to write: ``dt/aios/+/telemetry`` (every device) or
    ``dt/aios/{device_id}/telemetry`` (one device, id as :data:`DEVICE_ID_PATTERN`)."""
    validate_topic_filter(value)
    levels = value.split("/")
    if (
        len(levels) != 4
        or levels[:2] != ["dt", "aios"]
        or levels[3] != "telemetry"
        or not (levels[2] == "+" or _DEVICE_ID_RE.match(levels[2]))
    ):
        raise ValueError(
            f"topic {value!r} is not a telemetry topic: devices publish aios.messages.Telemetry "
            f"on 'dt/aios/{{device_id}}/telemetry'; use '{TELEMETRY_FILTER}' for every device "
            "or 'dt/aios/<device id>/telemetry' for one"
        )
    return value


class SensorDataConfig(NodeConfig):
    """Subscribe to the telemetry devices publish on an MQTT broker."""

    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=253,
        title="Broker host",
        description="Host name or IP address of the MQTT broker.",
    )
    port: int = Field(
        default=1883,
        ge=1,
        le=65_535,
        title="Broker port",
        description="TCP port of the broker: usually 1883, or 8883 with TLS.",
    )
    mqtt_version: Literal["3.1.1", "5"] = Field(
        default="3.1.1",
        title="MQTT version",
        description="Protocol version to speak; 3.1.1 works with every broker.",
    )
    tls: bool = Field(
        default=False,
        title="TLS",
        description="Connect over TLS and verify the broker's certificate and host name.",
    )
    ca_file: str | None = Field(
        default=None,
        min_length=1,
        max_length=4_096,
        title="CA certificate file",
        description="PEM file of the CA that signed the broker's certificate (TLS only; "
        "empty: the system's trusted CAs).",
    )
    username: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        title="Username",
        description="User name for the broker, if it asks for one.",
    )
    password_secret: SecretName | None = Field(
        default=None,
        title="Password secret",
        description="Name of the secret holding the broker password (needs a username).",
    )
    client_id_prefix: str = Field(
        default="aios-sensor-",
        pattern=r"^[A-Za-z0-9_-]{1,14}$",
        title="Client id prefix",
        description="Start of the MQTT client id; 8 random hex digits are appended so two "
        "nodes never share an id (MQTT 3.1.1 brokers must accept ids of up to 23 "
        "characters, hence at most 14 here).",
    )
    topic: str = Field(
        default=TELEMETRY_FILTER,
        title="Telemetry topic",
        description="Where devices publish telemetry: 'dt/aios/+/telemetry' for every "
        "device, or 'dt/aios/<device id>/telemetry' for one.",
    )
    qos: Literal[0, 1] = Field(
        default=1,
        title="QoS",
        description="0: at most once (readings may be lost); 1: at least once (the broker "
        "redelivers until acknowledged; redelivered messages are dropped by message_id).",
    )
    fields: list[str] = Field(
        default_factory=list,
        max_length=100,
        title="Metrics",
        description="Metric names to keep, e.g. 'temp_c'; messages with none of them are "
        "skipped. Empty: keep every metric.",
    )
    max_payload_bytes: int = Field(
        default=MAX_PAYLOAD_BYTES,
        ge=64,
        le=MAX_PAYLOAD_BYTES,
        title="Largest message (bytes)",
        description="Messages larger than this many bytes are dropped (too_large); at most "
        f"{MAX_PAYLOAD_BYTES}, the platform's limit (AWS IoT Core's MQTT payload limit).",
    )
    keepalive_seconds: int = Field(
        default=60,
        ge=5,
        le=3_600,
        title="Keep-alive (s)",
        description="Seconds between pings when idle; the broker drops the client after "
        "1.5 times this without traffic.",
    )
    reconnect_min_delay_seconds: int = Field(
        default=1,
        ge=1,
        le=60,
        title="First reconnect after (s)",
        description="Seconds before the first reconnect attempt; each failure doubles it.",
    )
    reconnect_max_delay_seconds: int = Field(
        default=120,
        ge=1,
        le=3_600,
        title="Longest reconnect wait (s)",
        description="Upper bound, in seconds, of the doubling reconnect delay.",
    )

    @field_validator("topic")
    @classmethod
    def _valid_topic(cls, value: str) -> str:
        return validate_telemetry_filter(value)

    @field_validator("fields")
    @classmethod
    def _valid_fields(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _METRIC_RE.match(name):
                raise ValueError(
                    f"metric name {name!r} must match {METRIC_PATTERN} (a letter, then "
                    "letters, digits, '_', '.', ':', '-'), as devices send it"
                )
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _consistent(self) -> SensorDataConfig:
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file is only used with TLS: set tls to true or remove ca_file")
        if self.password_secret is not None and self.username is None:
            raise ValueError("password_secret needs a username")
        if self.reconnect_min_delay_seconds > self.reconnect_max_delay_seconds:
            raise ValueError(
                "reconnect_min_delay_seconds must not exceed reconnect_max_delay_seconds"
            )
        return self


MANIFEST = NodeManifest(
    type="aios/sensor.data@1",
    category=Category.INPUT,
    tier=Tier.EVENT,
    title="Sensor data",
    description="Telemetry devices publish on dt/aios/{device}/telemetry (the platform's "
    "Telemetry message, also from connectors for their PLCs and sensors), each message an "
    "event for conditions and actions.",
    icon="thermometer",
    outputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Readings",
            description="One 'sensor.reading' event per message (per sample time in a "
            "batch); values by metric in data.readings, the device in source_id.",
        ),
    ),
)


class InvalidMessage(ValueError):
    """A message that is not platform telemetry; the text says why, never what it held.

    Attributes:
        reason: one of :data:`DROP_REASONS`.
        detail: what is wrong (topic, sizes, field paths and rules; no payload values).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _reject_constant(name: str) -> Any:
    raise InvalidMessage("bad_json", f"JSON constant {name} is not a number")


_JSON_TYPES = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}


def _errors(err: ValidationError, limit: int = 3) -> str:
    """Field paths and messages of a validation error, without the input values."""
    parts = []
    for e in err.errors(include_input=False, include_url=False)[:limit]:
        path = ".".join(str(p)[:64] for p in e["loc"]) or "(message)"
        parts.append(f"{path}: {e['msg']}")
    more = err.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_message(
    topic: str,
    payload: bytes,
    *,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    now: datetime | None = None,
) -> tuple[str, Telemetry]:
    """Return ``(device id of the topic, message)`` of one telemetry message.

    ``now`` (default: the current time) is the platform's clock: a message or sample time
    more than :data:`aios.messages.MAX_CLOCK_SKEW` after it is ``invalid``, as the fleet's
    ingester refuses it.

    Raises:
        InvalidMessage: ``bad_topic`` (not ``dt/aios/{device_id}/telemetry``),
            ``too_large`` (more than ``max_payload_bytes``), ``bad_json`` (not UTF-8 JSON
            text of an object; ``NaN`` and ``Infinity`` are not JSON) or ``invalid`` (not a
            :class:`aios.messages.Telemetry`, or dated in the future; the detail names the
            fields at fault, never their values).
    """
    try:
        publisher_id, kind = parse_topic(topic)
    except ValueError as err:
        raise InvalidMessage("bad_topic", str(err)) from err
    if kind is not TopicKind.TELEMETRY:
        raise InvalidMessage(
            "bad_topic", f"a {kind} topic; telemetry is published on dt/aios/<device id>/telemetry"
        )
    if len(payload) > max_payload_bytes:
        raise InvalidMessage("too_large", f"{len(payload)} bytes > {max_payload_bytes}")
    try:
        data = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        raise InvalidMessage("bad_json", "payload is not UTF-8 text") from err
    except json.JSONDecodeError as err:
        raise InvalidMessage(
            "bad_json", f"not JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from err
    except RecursionError as err:
        raise InvalidMessage("bad_json", "JSON nested too deeply") from err
    if not isinstance(data, dict):
        found = _JSON_TYPES.get(type(data), "null")
        raise InvalidMessage(
            "bad_json", f"a JSON {found}, expected an object (aios.messages.Telemetry)"
        )
    try:
        message = Telemetry.model_validate(data)
    except ValidationError as err:
        raise InvalidMessage("invalid", _errors(err)) from err
    try:
        check_times(message, now or datetime.now(UTC))
    except ValueError as err:
        raise InvalidMessage("invalid", str(err)) from err
    return publisher_id, message


class SensorDataSource:
    """Subscribes to the telemetry topic and emits the readings of each valid message.

    Attributes:
        config: the validated configuration.
        client_id: the MQTT client id used (prefix plus 8 random hex digits).
    """

    def __init__(self, config: SensorDataConfig, services: TaskServices) -> None:
        self.config = config
        self.services = services
        self.log = services.logger.getChild("sensor_data")
        self.client_id = f"{config.client_id_prefix}{uuid.uuid4().hex[:8]}"
        self._client: mqtt.Client | None = None
        self._emit: Emit | None = None
        self._subscribed = threading.Event()
        self._sub_mid: int | None = None
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter(
            dict.fromkeys(
                ("received", "emitted", "skipped", "duplicate", "failed", *DROP_REASONS), 0
            )
        )
        self._recent = RecentMessages(DEDUP_WINDOW)

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, emit: Emit) -> None:
        """Connect in the background and deliver readings to ``emit``; return at once.

        Raises:
            PermanentError: the password secret is not set, or the CA file cannot be read.
        """
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        if self._client is not None:
            return
        cfg = self.config
        password: str | None = None
        if cfg.password_secret is not None:
            try:
                password = self.services.secrets.get(cfg.password_secret)
            except SecretNotFound as err:
                raise PermanentError(
                    f"set secret '{cfg.password_secret}' ({env_var_for(cfg.password_secret)}) "
                    "to the MQTT broker password"
                ) from err
        v5 = cfg.mqtt_version == "5"
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.reconnect_delay_set(cfg.reconnect_min_delay_seconds, cfg.reconnect_max_delay_seconds)
        if cfg.tls:
            try:
                client.tls_set(ca_certs=cfg.ca_file)
            except (OSError, ValueError) as err:
                raise PermanentError(
                    f"cannot use CA file '{cfg.ca_file}' for TLS: {err}; give a readable PEM file"
                ) from err
        if cfg.username is not None:
            client.username_pw_set(cfg.username, password)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._emit = emit
        client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_seconds)
        client.loop_start()
        self._client = client
        self.log.info(
            "sensor data: connecting to %s:%d as %s, topic %s",
            cfg.host,
            cfg.port,
            self.client_id,
            cfg.topic,
        )

    def stop(self) -> None:
        """Disconnect from the broker and join paho's network thread; safe to call twice."""
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()
        self._subscribed.clear()
        self._emit = None

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until the broker has granted the subscription (or ``timeout`` seconds pass)."""
        return self._subscribed.wait(timeout)

    @property
    def stats(self) -> dict[str, int]:
        """Counts since the node was built: ``received`` messages; ``emitted`` events;
        ``skipped`` messages with none of the configured ``fields``; ``duplicate``
        messages (a ``message_id`` already handled); messages dropped as ``bad_topic``,
        ``too_large``, ``bad_json`` or ``invalid`` (:data:`DROP_REASONS`); ``failed``:
        events the pipeline refused, or messages whose reading failed unexpectedly."""
        with self._lock:
            return dict(self._stats)

    def _count(self, name: str) -> int:
        with self._lock:
            self._stats[name] += 1
            return self._stats[name]

    # --- paho callbacks (run in paho's network thread) ----------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.log.warning(
                "sensor data: broker %s:%d refused the connection: %s (check the username "
                "and password secret)",
                self.config.host,
                self.config.port,
                reason_code,
            )
            return
        _, mid = client.subscribe(self.config.topic, qos=self.config.qos)
        self._sub_mid = mid
        self.log.info("sensor data: connected, subscribing to %s", self.config.topic)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.log.warning(
            "sensor data: cannot reach broker %s:%d; retrying with backoff",
            self.config.host,
            self.config.port,
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
            self.log.warning("sensor data: disconnected (%s); reconnecting", reason_code)

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
            self.log.warning(
                "sensor data: the broker refused the subscription to %s (%s)",
                self.config.topic,
                ", ".join(str(rc) for rc in reason_codes),
            )
            return
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Never let an exception escape: paho would end its network thread.
        self._count("received")
        topic, payload = message.topic, bytes(message.payload)
        try:
            publisher_id, telemetry = parse_message(
                topic, payload, max_payload_bytes=self.config.max_payload_bytes
            )
            key = (publisher_id, telemetry.message_id)
            if key in self._recent:
                self._count("duplicate")
                return
            events = self.events_for(topic, publisher_id, telemetry)
        except InvalidMessage as err:
            n = self._count(err.reason)
            if n <= LOG_FIRST or n % LOG_EVERY == 0:
                self.log.warning(
                    "sensor data: dropped a message on %s (%d bytes), %s #%d: %s",
                    topic,
                    len(payload),
                    err.reason,
                    n,
                    err.detail,
                )
            return
        except Exception as err:  # a defect here must not end the network thread
            self._count("failed")
            self.log.error(
                "sensor data: could not read the message on %s: %s", topic, type(err).__name__
            )
            return
        self._recent.add(key)
        if not events:
            self._count("skipped")
            return
        emit = self._emit
        if emit is None:
            return
        for event in events:
            try:
                emit(event)
            except Exception as err:
                self._count("failed")
                self.log.error(
                    "sensor data: the pipeline did not take event %s: %s: %s",
                    event["event_id"],
                    type(err).__name__,
                    err,
                )
                continue
            self._count("emitted")

    # --- messages to events ------------------------------------------------------------------

    def events_for(self, topic: str, publisher_id: str, message: Telemetry) -> list[Event]:
        """Return the events of one valid message (see the module doc), in time order;
        empty when ``fields`` keeps none of its samples.

        ``publisher_id``: the device of ``topic``; ``source_id`` is ``message.device_id``
        (a child of the publisher) when set, else the publisher.
        """
        wanted = set(self.config.fields)
        groups: dict[datetime, list[TelemetrySample]] = {}
        for sample in message.samples:
            if wanted and sample.metric not in wanted:
                continue
            groups.setdefault(sample.time or message.time, []).append(sample)
        received = _utc_iso(self.services.now())
        device_id = message.device_id or publisher_id
        events: list[Event] = []
        for moment in sorted(groups):
            samples = groups[moment]
            at = _utc_iso(moment)
            events.append(
                {
                    "event_id": event_key(EVENT_TYPE, publisher_id, message.message_id, at),
                    "event_type": EVENT_TYPE,
                    "time": at,
                    "source_id": device_id,
                    "data": {
                        "topic": topic,
                        "readings": {s.metric: s.value for s in samples},
                        "units": {s.metric: s.unit for s in samples if s.unit is not None},
                        "message_id": message.message_id,
                        "publisher_id": publisher_id,
                        "received_at": received,
                    },
                }
            )
        return events

    def to_events(self, topic: str, payload: bytes) -> list[Event]:
        """Return the events of one message as it arrives (``topic``, raw ``payload``);
        empty when ``fields`` keeps none of its samples. Duplicates are not checked here.

        Raises:
            InvalidMessage: the message is not platform telemetry (see :func:`parse_message`).
        """
        publisher_id, message = parse_message(
            topic, payload, max_payload_bytes=self.config.max_payload_bytes
        )
        return self.events_for(topic, publisher_id, message)


NODE = NodeType(
    manifest=MANIFEST,
    config_model=SensorDataConfig,
    implementation=SensorDataSource,
    event_role=EventRole.SOURCE,
)
