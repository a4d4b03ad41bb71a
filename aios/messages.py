"""Messages between devices and the platform: versioned pydantic models, one per topic.

Topics follow AWS IoT's topic design (whitepaper "Designing MQTT Topics for AWS IoT Core")::

    dt/aios/{device_id}/heartbeat    device → platform   Heartbeat
    dt/aios/{device_id}/telemetry    device → platform   Telemetry
    dt/aios/{device_id}/events       device → platform   DeviceEventsMessage
    cmd/aios/{device_id}/req         platform → device   CommandRequest
    cmd/aios/{device_id}/res         device → platform   CommandResponse
    cfg/aios/{device_id}/desired     platform → device   DesiredConfig (retained)

Every message is a JSON object with ``schema_version`` (1; may be omitted), ``message_id``
(required, the idempotency key: a message delivered twice — MQTT QoS 1 redelivery — carries
the same id and is processed once) and ``time`` (required, ISO 8601 with a UTC offset;
naive times are refused because their zone is unknowable; times more than
:data:`MAX_CLOCK_SKEW` ahead of the platform's clock are refused by the fleet, see
:func:`check_times`). Unknown fields are refused: a misspelt field is an error, not a
silently dropped value. Free-form objects (an event's ``data``, a configuration, command
``params`` and ``result``) are nested at most :data:`aios.domain.MAX_JSON_DEPTH` levels.

**Configuration acknowledgement.** A device acknowledges a desired configuration with an
event of type ``config.reported`` on its events topic, whose ``data`` is a
:class:`ConfigReport` (``{"version": 3, "config": {...}, "accepted": true}``; a device that
cannot apply it sends ``"accepted": false`` and an ``error``). The heartbeat's
``config_version`` is informational (shown with the device's health); only the event moves
the device's reported configuration.

**Child devices.** A connector publishes for the PLCs, sensors and cameras behind it: a
heartbeat, telemetry or events message may name the device it is about in ``device_id``.
That device must be a child of the publisher (its ``parent_id`` is the device of the
topic); otherwise the message is refused. Without ``device_id`` the message is about the
topic's device. Commands to a child are published on its connector's request topic with the
child's id in :attr:`CommandRequest.device_id`; the connector answers on its own response
topic. A child's desired configuration is retained on the child's own ``cfg`` topic (one
retained message per topic: children must not overwrite each other's).
"""

from __future__ import annotations

import math
import re
import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aios.domain import (
    DEVICE_ID_PATTERN,
    MAX_JSON_DEPTH,
    DeviceKind,
    JsonObject,
    check_json_depth,
    json_depth,
)

SCHEMA_VERSION = 1
"""The version of every message model of this module."""

MAX_PAYLOAD_BYTES = 128 * 1024
"""Largest message accepted: AWS IoT Core's MQTT payload limit (128 KB)."""

MAX_TELEMETRY_SAMPLES = 1000
"""Samples per telemetry message (a batch of readings; more: split the message)."""

MAX_EVENTS_PER_MESSAGE = 100
"""Events per events message."""

METRIC_PATTERN = r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$"
"""Metric names: ``temperature_c``, ``hr.40001``, ``line1:count``."""

EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
"""Dotted lower-case event types: ``door.opened``, ``modbus.timeout``."""

RESERVED_EVENT_PREFIXES = ("status.", "device.", "command.", "alert.", "config.")
"""Event types the platform writes itself; devices may not send them (except
``config.reported``), so that history cannot be forged."""

CONFIG_REPORTED = "config.reported"
"""The event type of a configuration acknowledgement (see the module doc)."""

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far into the future (by the platform's clock) a message's or sample's time may be.

A time further ahead is refused (reason ``invalid``): a device whose clock runs ahead, or
a sample stamped 2099, would otherwise stay the "latest" value of its metric and hide
every real reading sent after it. Five minutes is far more than NTP-synchronised clocks
drift (milliseconds) and than transit and queueing delay, yet short enough that a bad
value cannot mask real ones for long. Times in the past are accepted (buffered readings
sent after a connection loss are legitimate)."""

HEARTBEAT_TIME_KEY = "heartbeat_time"
"""Key in ``Device.health`` of the heartbeat's own ``time`` (the sender's clock, ISO 8601):
what the health values are compared with telemetry sample times by (see
``FleetService.metric_value``). Reserved: a device cannot send a health metric of that name."""

RESERVED_HEALTH_KEYS = frozenset({HEARTBEAT_TIME_KEY, "config_version"})
"""Keys of ``Device.health`` the platform fills in; not accepted as health metrics."""

_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "time has no UTC offset; send ISO 8601 with 'Z' or an offset, e.g. 2026-01-05T09:00:00Z"
        )
    return value.astimezone(UTC)


class Message(BaseModel):
    """Fields every message has: schema version, idempotency key, UTC time."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    schema_version: Literal[1] = Field(default=1, description="Version of the message schema (1).")
    message_id: str = Field(
        min_length=1,
        max_length=128,
        description="Idempotency key: a redelivered message keeps its id and is processed once.",
    )
    time: datetime = Field(description="When the sender created the message, UTC.")

    @field_validator("time")
    @classmethod
    def _time_is_aware(cls, value: datetime) -> datetime:
        return _utc(value)


class DeviceMessage(Message):
    """A device → platform message, optionally about a child device of the publisher."""

    device_id: str | None = Field(
        default=None,
        pattern=DEVICE_ID_PATTERN,
        description="The device this message is about, when it is a child (parent_id) of "
        "the publishing connector; absent: the device of the topic.",
    )


# --------------------------------------------------------------------------- heartbeat


class HealthMetrics(BaseModel):
    """Health of a device at heartbeat time. Known metrics are typed and bounded; other
    numeric metrics may be added (names as :data:`METRIC_PATTERN`, at most 64)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    cpu_percent: float | None = Field(default=None, ge=0, le=100, description="CPU use, %.")
    memory_percent: float | None = Field(
        default=None, ge=0, le=100, description="Memory in use, %."
    )
    disk_percent: float | None = Field(
        default=None, ge=0, le=100, description="Data disk in use, %."
    )
    temperature_c: float | None = Field(
        default=None, ge=-100, le=200, description="SoC/board temperature, °C."
    )
    fps: float | None = Field(
        default=None, ge=0, le=1000, description="Frames per second processed (cameras)."
    )
    queue_depth: int | None = Field(
        default=None, ge=0, description="Messages or frames waiting to be processed."
    )
    uptime_seconds: float | None = Field(default=None, ge=0, description="Seconds since start.")

    @model_validator(mode="after")
    def _extra_metrics_are_numbers(self) -> HealthMetrics:
        extra = self.model_extra or {}
        if len(extra) > 64:
            raise ValueError("at most 64 additional health metrics")
        for name, value in extra.items():
            if name in RESERVED_HEALTH_KEYS:
                raise ValueError(
                    f"health metric name {name!r} is reserved for the platform "
                    f"({', '.join(sorted(RESERVED_HEALTH_KEYS))}); use another name"
                )
            if not re.match(METRIC_PATTERN, name):
                raise ValueError(
                    # the name is not shown: it is not a valid name, so could be anything
                    f"health metric names must match {METRIC_PATTERN} "
                    "(letters, digits, '_', '.', ':', '-'; at most 128)"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"health metric {name!r} must be a number")
            if not math.isfinite(value):
                raise ValueError(f"health metric {name!r} must be finite")
        return self

    def as_dict(self) -> dict[str, float | int]:
        """The metrics that were given, by name (what ``Device.health`` keeps)."""
        return {k: v for k, v in self.model_dump(exclude_none=True).items()}


class Heartbeat(DeviceMessage):
    """``dt/aios/{device_id}/heartbeat``: the device is alive, and how it is doing.

    Example::

        {"schema_version": 1, "message_id": "hb-42", "time": "2026-01-05T09:00:00Z",
         "health": {"cpu_percent": 37.5, "memory_percent": 61, "temperature_c": 58},
         "firmware_version": "connector 0.4.1", "config_version": 3}
    """

    health: HealthMetrics = Field(default_factory=HealthMetrics)
    firmware_version: str | None = Field(
        default=None,
        max_length=100,
        description="Firmware version; for a connector, the connector daemon's version.",
    )
    config_version: int | None = Field(
        default=None, ge=0, description="Desired-config version the device runs (informational)."
    )
    kind: DeviceKind | None = Field(
        default=None,
        description="What the device is; used only when an unknown device is registered "
        "as pending (default: connector).",
    )


# --------------------------------------------------------------------------- telemetry


class TelemetrySample(BaseModel):
    """One reading of one metric."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric: str = Field(pattern=METRIC_PATTERN, description="Metric name, e.g. 'temperature_c'.")
    value: float = Field(description="The reading (booleans and coils as 0/1).")
    unit: str | None = Field(default=None, max_length=32, description="Unit, e.g. '°C', 'bar'.")
    time: datetime | None = Field(
        default=None, description="When it was read, UTC; absent: the message's time."
    )

    @field_validator("time")
    @classmethod
    def _time_is_aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)


class Telemetry(DeviceMessage):
    """``dt/aios/{device_id}/telemetry``: a batch of readings (1–1000 samples).

    Example::

        {"schema_version": 1, "message_id": "t-9", "time": "2026-01-05T09:00:00Z",
         "samples": [{"metric": "temperature_c", "value": 71.5, "unit": "°C"}]}
    """

    samples: list[TelemetrySample] = Field(min_length=1, max_length=MAX_TELEMETRY_SAMPLES)


# --------------------------------------------------------------------------- events


Severity = Literal["info", "warning", "critical"]


_EventData = Annotated[
    dict[str, Any], AfterValidator(partial(check_json_depth, limit=MAX_JSON_DEPTH + 1))
]


class DeviceEventItem(BaseModel):
    """One event a device reports (a door opened, a Modbus unit stopped answering)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=100)
    severity: Severity = "info"
    message: str = Field(default="", max_length=2000)
    data: _EventData = Field(
        default_factory=dict,
        description="Free-form JSON object, nested at most 24 levels (a config.reported "
        "event's: 25, its config being one level down and at most 24).",
    )
    time: datetime | None = Field(default=None, description="UTC; absent: the message's time.")
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The event's own idempotency key; absent: derived from message_id.",
    )

    @field_validator("time")
    @classmethod
    def _time_is_aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)

    @model_validator(mode="after")
    def _data_depth(self) -> DeviceEventItem:
        # Stored as the event's data: at most MAX_JSON_DEPTH. A config report's data is
        # not stored as such; its config (one level down) is checked by ConfigReport.
        if self.type != CONFIG_REPORTED and json_depth(self.data) > MAX_JSON_DEPTH:
            raise ValueError(f"data: nested deeper than {MAX_JSON_DEPTH} levels")
        return self

    @field_validator("type")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value != CONFIG_REPORTED and value.startswith(RESERVED_EVENT_PREFIXES):
            raise ValueError(
                f"event type {value!r} is reserved for the platform "
                f"({', '.join(p + '*' for p in RESERVED_EVENT_PREFIXES)}); "
                f"only {CONFIG_REPORTED!r} may be sent"
            )
        return value


class DeviceEventsMessage(DeviceMessage):
    """``dt/aios/{device_id}/events``: 1–100 events."""

    events: list[DeviceEventItem] = Field(min_length=1, max_length=MAX_EVENTS_PER_MESSAGE)


class ConfigReport(BaseModel):
    """``data`` of a ``config.reported`` event: the device applied (or refused) a version."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: int = Field(ge=0, description="The desired-config version acknowledged.")
    config: JsonObject | None = Field(
        default=None, description="The configuration now running; absent: the desired one."
    )
    accepted: bool = True
    error: str | None = Field(default=None, max_length=2000, description="Why it was refused.")


# --------------------------------------------------------------------------- commands


class CommandRequest(Message):
    """``cmd/aios/{device_id}/req``: do something, answer by ``deadline``."""

    request_id: str = Field(min_length=1, max_length=128)
    device_id: str = Field(
        pattern=DEVICE_ID_PATTERN,
        description="The target device: the topic's device, or a child of that connector.",
    )
    name: str = Field(min_length=1, max_length=100, description="e.g. 'write_coil', 'reboot'.")
    params: JsonObject = Field(default_factory=dict)
    deadline: datetime = Field(description="After this (UTC) the answer is ignored.")

    @field_validator("deadline")
    @classmethod
    def _deadline_is_aware(cls, value: datetime) -> datetime:
        return _utc(value)


class CommandResponse(Message):
    """``cmd/aios/{device_id}/res``: the outcome of a request, matched by ``request_id``."""

    request_id: str = Field(min_length=1, max_length=128)
    ok: bool
    result: JsonObject | None = None
    error: str | None = Field(default=None, max_length=2000)


# --------------------------------------------------------------------------- configuration


class DesiredConfig(Message):
    """``cfg/aios/{device_id}/desired`` (retained): the configuration to run."""

    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    version: int = Field(ge=1, description="Increases by 1 on every change.")
    config: JsonObject = Field(default_factory=dict)


# --------------------------------------------------------------------------- topics


class TopicKind(StrEnum):
    """What a topic carries."""

    HEARTBEAT = "heartbeat"
    TELEMETRY = "telemetry"
    EVENTS = "events"
    COMMAND_REQUEST = "command_request"
    COMMAND_RESPONSE = "command_response"
    DESIRED_CONFIG = "desired_config"


_TOPIC_FORMAT: dict[TopicKind, tuple[str, str]] = {
    TopicKind.HEARTBEAT: ("dt", "heartbeat"),
    TopicKind.TELEMETRY: ("dt", "telemetry"),
    TopicKind.EVENTS: ("dt", "events"),
    TopicKind.COMMAND_REQUEST: ("cmd", "req"),
    TopicKind.COMMAND_RESPONSE: ("cmd", "res"),
    TopicKind.DESIRED_CONFIG: ("cfg", "desired"),
}
_TOPIC_KINDS = {v: k for k, v in _TOPIC_FORMAT.items()}

MESSAGE_MODELS: dict[TopicKind, type[Message]] = {
    TopicKind.HEARTBEAT: Heartbeat,
    TopicKind.TELEMETRY: Telemetry,
    TopicKind.EVENTS: DeviceEventsMessage,
    TopicKind.COMMAND_REQUEST: CommandRequest,
    TopicKind.COMMAND_RESPONSE: CommandResponse,
    TopicKind.DESIRED_CONFIG: DesiredConfig,
}
"""The model of the messages on each kind of topic."""

SUBSCRIPTIONS = (
    "dt/aios/+/heartbeat",
    "dt/aios/+/telemetry",
    "dt/aios/+/events",
    "cmd/aios/+/res",
)
"""Topic filters the platform's ingester subscribes to."""


def topic(kind: TopicKind | str, device_id: str) -> str:
    """Return the topic of ``kind`` for ``device_id``, e.g. ``dt/aios/cam-1/heartbeat``.

    Raises:
        ValueError: unknown kind, or a device id that is not a valid topic level.
    """
    try:
        k = TopicKind(kind)
    except ValueError as err:
        raise ValueError(
            f"unknown topic kind {kind!r}; use one of {', '.join(t.value for t in TopicKind)}"
        ) from err
    if not _DEVICE_ID_RE.match(device_id):
        raise ValueError(f"device id {device_id!r} must match {DEVICE_ID_PATTERN}")
    prefix, suffix = _TOPIC_FORMAT[k]
    return f"{prefix}/aios/{device_id}/{suffix}"


def parse_topic(value: str) -> tuple[str, TopicKind]:
    """Return ``(device_id, kind)`` of a platform topic.

    Raises:
        ValueError: the topic is not one of the module doc's, saying which part is wrong.
    """
    levels = value.split("/")
    if len(levels) != 4 or levels[1] != "aios":
        raise ValueError(
            f"topic {value!r} is not '<dt|cmd|cfg>/aios/<device_id>/<kind>' (four levels)"
        )
    prefix, _, device_id, suffix = levels
    kind = _TOPIC_KINDS.get((prefix, suffix))
    if kind is None:
        known = ", ".join(f"{p}/aios/+/{s}" for p, s in _TOPIC_FORMAT.values())
        raise ValueError(f"topic {value!r} is none of {known}")
    if not _DEVICE_ID_RE.match(device_id):
        raise ValueError(
            f"device id {device_id!r} in topic {value!r} must match {DEVICE_ID_PATTERN}"
        )
    return device_id, kind


def future_times(message: Message, now: datetime) -> list[str]:
    """Field paths of the times of ``message`` more than :data:`MAX_CLOCK_SKEW` after
    ``now`` (UTC): ``time``, ``samples.<i>.time``, ``events.<i>.time``. Empty: all fine."""
    limit = now + MAX_CLOCK_SKEW
    found = ["time"] if message.time > limit else []
    items: list[TelemetrySample | DeviceEventItem] = []
    prefix = ""
    if isinstance(message, Telemetry):
        items, prefix = list(message.samples), "samples"
    elif isinstance(message, DeviceEventsMessage):
        items, prefix = list(message.events), "events"
    found.extend(
        f"{prefix}.{i}.time"
        for i, item in enumerate(items)
        if item.time is not None and item.time > limit
    )
    return found


def check_times(message: Message, now: datetime) -> None:
    """Refuse a message with a time too far in the future (see :data:`MAX_CLOCK_SKEW`).

    Raises:
        ValueError: naming the fields (at most 3) and the limit; never their values.
    """
    paths = future_times(message, now)
    if paths:
        more = f" (+{len(paths) - 3} more)" if len(paths) > 3 else ""
        raise ValueError(
            f"{', '.join(paths[:3])}{more}: more than {MAX_CLOCK_SKEW.total_seconds():g} s "
            "after the platform's clock; check the device's clock (NTP)"
        )


_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\-]")


def describe_errors(err: ValidationError, limit: int = 3) -> str:
    """Field paths and error types of a validation error — never the input values, which
    are device content (may hold credentials): e.g. ``events.0.data.version: int_parsing``.

    The types are pydantic's error types (``missing``, ``greater_than``, ``value_error``…).
    A path level that is a key sent by the device (an unknown field) is kept — it says
    what to fix — but cut to 64 characters, other than ``[A-Za-z0-9_.:-]`` shown as ``?``.
    """
    parts = []
    for e in err.errors(include_input=False, include_url=False, include_context=False)[:limit]:
        path = ".".join(_PATH_UNSAFE.sub("?", str(p))[:64] for p in e["loc"]) or "(message)"
        # A value_error's text is this module's or aios.domain's own (what to change;
        # it names fields, never values); every other message could quote the schema only,
        # but the type says as much.
        reason = f"value_error ({e['msg']})" if e["type"] == "value_error" else e["type"]
        parts.append(f"{path}: {reason}")
    more = err.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class RecentMessages:
    """The last ``size`` (publisher, ``message_id``) keys seen, oldest forgotten first
    (thread-safe): how a receiver processes a redelivered message once."""

    def __init__(self, size: int = 65536) -> None:
        if size < 1:
            raise ValueError("size must be ≥ 1")
        self.size = size
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._keys

    def add(self, key: tuple[str, str]) -> None:
        """Remember ``key``, forgetting the oldest beyond ``size``."""
        with self._lock:
            self._keys[key] = None
            self._keys.move_to_end(key)
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)
