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
naive times are refused because their zone is unknowable). Unknown fields are refused: a
misspelt field is an error, not a silently dropped value.

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
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aios.domain import DEVICE_ID_PATTERN, DeviceKind

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
            if not re.match(METRIC_PATTERN, name):
                raise ValueError(
                    f"health metric name {name!r} must match {METRIC_PATTERN} "
                    "(letters, digits, '_', '.', ':', '-')"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"health metric {name!r} must be a number")
            if not math.isfinite(value):
                raise ValueError(f"health metric {name!r} must be finite")
        return self

    def as_dict(self) -> dict[str, float]:
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


class DeviceEventItem(BaseModel):
    """One event a device reports (a door opened, a Modbus unit stopped answering)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: str = Field(pattern=EVENT_TYPE_PATTERN, max_length=100)
    severity: Severity = "info"
    message: str = Field(default="", max_length=2000)
    data: dict[str, Any] = Field(default_factory=dict)
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
    config: dict[str, Any] | None = Field(
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
    params: dict[str, Any] = Field(default_factory=dict)
    deadline: datetime = Field(description="After this (UTC) the answer is ignored.")

    @field_validator("deadline")
    @classmethod
    def _deadline_is_aware(cls, value: datetime) -> datetime:
        return _utc(value)


class CommandResponse(Message):
    """``cmd/aios/{device_id}/res``: the outcome of a request, matched by ``request_id``."""

    request_id: str = Field(min_length=1, max_length=128)
    ok: bool
    result: dict[str, Any] | None = None
    error: str | None = Field(default=None, max_length=2000)


# --------------------------------------------------------------------------- configuration


class DesiredConfig(Message):
    """``cfg/aios/{device_id}/desired`` (retained): the configuration to run."""

    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    version: int = Field(ge=1, description="Increases by 1 on every change.")
    config: dict[str, Any] = Field(default_factory=dict)


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
