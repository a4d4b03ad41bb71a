"""``aios/sensor.data@1`` — readings arriving on an MQTT topic, as pipeline events.

The node subscribes to one topic filter on an MQTT broker (paho-mqtt, MQTT 5 or 3.1.1) and
turns each message into a ``sensor.reading`` event. Two payload shapes are understood:

* the platform's telemetry message, published on ``dt/aios/{device_id}/telemetry``::

      {"device_id": "press-7", "ts": "2026-01-05T09:00:00Z", "metrics": {"temp_c": 71.5}}

* anything else that is a JSON object (``{"temp_c": 71.5}``, whose keys are the readings)
  or a bare JSON number or boolean (``71.5``, the reading ``value``).

The event (``data.readings`` holds the values, keyed by metric name)::

    {"event_id": "…", "event_type": "sensor.reading", "time": "2026-01-05T09:00:00Z",
     "source_id": "press-7",
     "data": {"topic": "dt/aios/press-7/telemetry", "readings": {"temp_c": 71.5},
              "received_at": "2026-01-05T09:00:00.120000Z"}}

``time`` is the payload's ``ts`` when it has one (ISO 8601, or seconds since the Unix
epoch), else the time the message arrived. The device id comes from the topic
(``dt/aios/{device_id}/…``, or the level named by ``device_id_topic_level``), else from the
payload's ``device_id``, else it is the topic itself. The topic wins over the payload:
broker ACLs bind topics to devices, payloads are whatever the device says.

``event_id`` is derived from the topic, device, ``ts`` and the payload's SHA-256, so a
message the broker delivers twice (QoS 1 redelivery) gets the same id when it carries a
``ts``; without one, the arrival time is part of the key.

Malformed payloads (not UTF-8 JSON, ``NaN``, a string or list, ``metrics`` that is not an
object, a ``ts`` that is not a time, larger than ``max_payload_bytes``) are counted in
:attr:`SensorDataSource.stats` and logged with the topic and the reason, never the payload
(it may hold credentials or personal data); the client keeps running. Lost connections are
retried by paho's own loop with exponential backoff between ``reconnect_min_delay_seconds``
and ``reconnect_max_delay_seconds`` (``Client.reconnect_delay_set``); the subscription is
renewed on every connect.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

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
from aios.events.secrets import SecretName, SecretNotFound, env_var_for
from aios.events.task import Emit, Event, PermanentError, TaskServices
from aios.runtime.events import event_key

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

EVENT_TYPE = "sensor.reading"
PLATFORM_TOPIC_PREFIX = ("dt", "aios")
"""Device-to-cloud topics are ``dt/aios/{device_id}/{heartbeat|telemetry|events}``."""

MS_EPOCH_THRESHOLD = 1e11
"""A numeric ``ts`` above this is milliseconds: 1e11 seconds after 1970 is the year 5138."""


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


class SensorDataConfig(NodeConfig):
    """Subscribe to readings published on an MQTT broker."""

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
        default="dt/aios/+/telemetry",
        title="Topic filter",
        description="Topic filter to subscribe to; '+' matches one level, '#' the rest, "
        "e.g. 'dt/aios/+/telemetry' or 'plant/#'.",
    )
    qos: Literal[0, 1] = Field(
        default=1,
        title="QoS",
        description="0: at most once (readings may be lost); 1: at least once (the broker "
        "redelivers until acknowledged, so a reading may arrive twice).",
    )
    device_id_topic_level: int | None = Field(
        default=None,
        ge=0,
        le=31,
        title="Device id topic level",
        description="0-based topic level holding the device id (e.g. 1 for "
        "'sensors/{id}/temp'); empty: level 2 of 'dt/aios/{id}/…' topics, else the "
        "payload's device_id, else the whole topic.",
    )
    fields: list[str] = Field(
        default_factory=list,
        max_length=100,
        title="Fields",
        description="Reading names to keep (a bare number is 'value'); messages with none of "
        "them are skipped. Empty: keep every reading.",
    )
    max_payload_bytes: int = Field(
        default=65_536,
        ge=16,
        le=1_048_576,
        title="Largest payload (bytes)",
        description="Messages larger than this many bytes are counted as malformed.",
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
        return validate_topic_filter(value)

    @field_validator("fields")
    @classmethod
    def _valid_fields(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("field names must not be empty")
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
    description="Readings published on an MQTT topic (telemetry from devices, or any JSON "
    "number or object), each one an event for conditions and actions.",
    icon="thermometer",
    outputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Readings",
            description="One 'sensor.reading' event per message; values in data.readings.",
        ),
    ),
)


class MalformedPayload(ValueError):
    """A message that is not a reading; the text says why, never what the payload held."""


def _reject_constant(name: str) -> Any:
    raise MalformedPayload(f"JSON constant {name} is not a number")


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_ts(value: Any) -> datetime:
    """Return the payload's ``ts`` as an aware UTC datetime.

    Accepts ISO 8601 text (no offset means UTC) or seconds since the Unix epoch (a
    number above :data:`MS_EPOCH_THRESHOLD` is milliseconds).
    """
    if isinstance(value, bool):
        raise MalformedPayload("ts must be ISO 8601 text or seconds since the epoch")
    if isinstance(value, int | float):
        seconds = value / 1000.0 if abs(value) > MS_EPOCH_THRESHOLD else float(value)
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as err:
            raise MalformedPayload("ts is out of range") from err
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as err:
            raise MalformedPayload("ts is not an ISO 8601 date and time") from err
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    raise MalformedPayload("ts must be ISO 8601 text or seconds since the epoch")


def parse_payload(payload: bytes) -> tuple[dict[str, Any], str | None, datetime | None]:
    """Return ``(readings, device_id or None, ts or None)`` from a message payload.

    Raises:
        MalformedPayload: not UTF-8 JSON, or JSON that is not a reading (see module doc).
    """
    try:
        value = json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        raise MalformedPayload("payload is not UTF-8 text") from err
    except json.JSONDecodeError as err:
        raise MalformedPayload(
            f"payload is not JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from err
    except RecursionError as err:
        raise MalformedPayload("payload is nested too deeply") from err
    if isinstance(value, bool | int | float):
        return {"value": value}, None, None
    if not isinstance(value, dict):
        raise MalformedPayload(
            f"payload is a JSON {type(value).__name__}, expected an object or a number"
        )
    device = value.get("device_id")
    if device is not None and not (isinstance(device, str | int) and not isinstance(device, bool)):
        raise MalformedPayload("device_id must be text")
    device_id = str(device) if device is not None and str(device) else None
    ts = _parse_ts(value["ts"]) if value.get("ts") is not None else None
    if "metrics" in value:
        metrics = value["metrics"]
        if not isinstance(metrics, dict):
            raise MalformedPayload("metrics must be a JSON object of name to value")
        return dict(metrics), device_id, ts
    readings = {k: v for k, v in value.items() if k not in ("device_id", "ts")}
    return readings, device_id, ts


class SensorDataSource:
    """Subscribes to the configured topic and emits one event per well-formed reading.

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
        self._stats = {"received": 0, "emitted": 0, "malformed": 0, "skipped": 0, "failed": 0}

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
        """Counts since start: ``received``, ``emitted``, ``malformed``, ``skipped`` (no
        configured field in the message) and ``failed`` (the pipeline refused the event,
        or reading the message failed unexpectedly)."""
        with self._lock:
            return dict(self._stats)

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

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
        try:
            event = self.to_event(message.topic, bytes(message.payload))
        except MalformedPayload as err:
            self._count("malformed")
            self.log.warning(
                "sensor data: malformed message on %s (%d bytes): %s",
                message.topic,
                len(message.payload),
                err,
            )
            return
        except Exception as err:  # a defect here must not end the network thread
            self._count("failed")
            self.log.error(
                "sensor data: could not read the message on %s: %s",
                message.topic,
                type(err).__name__,
            )
            return
        if event is None:
            self._count("skipped")
            return
        emit = self._emit
        if emit is None:
            return
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
            return
        self._count("emitted")

    # --- messages to events ------------------------------------------------------------------

    def device_id_for(self, topic: str, payload_device: str | None) -> str:
        """Return the device id of a message on ``topic`` (see the module doc for the order)."""
        levels = topic.split("/")
        level = self.config.device_id_topic_level
        if level is not None:
            if level < len(levels) and levels[level]:
                return levels[level]
        elif len(levels) >= 3 and tuple(levels[:2]) == PLATFORM_TOPIC_PREFIX and levels[2]:
            return levels[2]
        return payload_device or topic

    def to_event(self, topic: str, payload: bytes) -> Event | None:
        """Return the event for one message, or ``None`` when ``fields`` keeps no reading.

        Raises:
            MalformedPayload: the payload is too large or not a reading.
        """
        if len(payload) > self.config.max_payload_bytes:
            raise MalformedPayload(
                f"payload is larger than max_payload_bytes ({self.config.max_payload_bytes})"
            )
        readings, payload_device, ts = parse_payload(payload)
        if self.config.fields:
            readings = {k: readings[k] for k in self.config.fields if k in readings}
            if not readings:
                return None
        if any(isinstance(v, float) and not math.isfinite(v) for v in readings.values()):
            raise MalformedPayload("a reading is not a finite number")
        received = self.services.now()
        device_id = self.device_id_for(topic, payload_device)
        digest = hashlib.sha256(payload).hexdigest()
        moment = ts or received
        return {
            "event_id": event_key(
                EVENT_TYPE, topic, device_id, _utc_iso(ts) if ts else _utc_iso(received), digest
            ),
            "event_type": EVENT_TYPE,
            "time": _utc_iso(moment),
            "source_id": device_id,
            "data": {"topic": topic, "readings": readings, "received_at": _utc_iso(received)},
        }


NODE = NodeType(
    manifest=MANIFEST,
    config_model=SensorDataConfig,
    implementation=SensorDataSource,
    event_role=EventRole.SOURCE,
)
