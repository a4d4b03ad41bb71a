"""The service side's records: devices, pipelines and runs, events, alerts, users, audit.

These are the shapes the stores keep and the API returns (secrets excepted: a
:class:`User`'s password hash and a :class:`RefreshToken`'s hash never leave the service).
Times are timezone-aware UTC datetimes. Records that can be edited concurrently carry a
``version`` (1 on creation, +1 on every write): writers pass the version they read and a
store refuses the write with :class:`~aios.store.port.Conflict` if it moved on — optimistic
concurrency, as DynamoDB's conditional writes give it.

A device's status (online / warning / offline) is *not* stored: it is derived from
``last_seen`` and ``health`` against per-kind thresholds (:mod:`aios.fleet.status`).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
"""Device ids are also MQTT topic levels and IoT thing names: no '/', '+', '#'."""


MAX_JSON_DEPTH = 24
"""Deepest nesting of objects and arrays accepted in a free-form JSON value (a device's
configuration, an event's data, a pipeline document). DynamoDB stores nested attributes up
to 32 levels (Amazon DynamoDB Developer Guide, "Service, account, and table quotas":
nested attribute depth); the records around these values take up to 8 of them."""


def json_depth(value: Any) -> int:
    """Nesting depth of a JSON-like value: 0 for a scalar, 1 for ``{}``/``[]`` of scalars.

    Iterative, so a value nested deeper than Python's recursion limit is measured too.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> Any:
    """``value`` unchanged if nested at most ``limit`` levels.

    Raises:
        ValueError: deeper; the message gives the limit.
    """
    if json_depth(value) > limit:
        raise ValueError(f"nested deeper than {limit} levels of objects and arrays")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_depth)]
"""A free-form JSON object, nested at most :data:`MAX_JSON_DEPTH` levels."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random identifier such as ``run_3f9c2a7b1d0e4c55`` (64 random bits)."""
    return f"{prefix}_{secrets.token_hex(8)}"


class Record(BaseModel):
    """Base of stored records: unknown fields refused, enums kept as their values."""

    model_config = ConfigDict(extra="forbid", use_enum_values=False)


# --------------------------------------------------------------------------- devices


class DeviceKind(StrEnum):
    CONNECTOR = "connector"
    CAMERA = "camera"
    PLC = "plc"
    SENSOR = "sensor"


class DeviceStatus(StrEnum):
    ONLINE = "online"
    WARNING = "warning"
    OFFLINE = "offline"


class GeoPoint(Record):
    """WGS 84 position in decimal degrees."""

    lat: float = Field(ge=-90, le=90, title="Latitude", description="Degrees, WGS 84.")
    lon: float = Field(ge=-180, le=180, title="Longitude", description="Degrees, WGS 84.")


class Device(Record):
    """A connector, camera, PLC or sensor of the fleet.

    ``desired_config``/``desired_version`` is what the platform wants the device to run;
    ``reported_config``/``reported_version`` what the device last acknowledged. They differ
    while a change is in flight (or refused: see the device's events).
    """

    id: str = Field(pattern=DEVICE_ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    kind: DeviceKind
    site: str | None = Field(default=None, max_length=100)
    tags: list[str] = Field(default_factory=list)
    location: GeoPoint | None = None
    parent_id: str | None = Field(
        default=None, description="The connector this device is reached through."
    )
    firmware_version: str | None = None
    desired_config: JsonObject = Field(default_factory=dict)
    desired_version: int = 0
    reported_config: JsonObject = Field(default_factory=dict)
    reported_version: int = 0
    last_seen: datetime | None = None
    health: JsonObject = Field(
        default_factory=dict, description="The last heartbeat's health metrics."
    )
    pending: bool = Field(
        default=False, description="Registered by its first message; awaits approval."
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = 1


class DeviceEvent(Record):
    """One entry of a device's history: came online, config acknowledged, command sent…"""

    id: str = Field(default_factory=lambda: new_id("dev"))
    device_id: str
    time: datetime = Field(default_factory=utcnow)
    type: str = Field(description="Dotted type, e.g. 'status.offline', 'config.acknowledged'.")
    severity: str = Field(default="info", description="info | warning | critical")
    message: str = ""
    data: JsonObject = Field(default_factory=dict)


class TelemetryPoint(Record):
    """One sample of one metric of one device (a sensor reading, a PLC register)."""

    device_id: str
    metric: str = Field(min_length=1, max_length=128)
    time: datetime
    value: float
    unit: str | None = None


class CommandStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


class Command(Record):
    """A request sent to a device (``cmd/aios/{device_id}/req``) and its outcome."""

    request_id: str = Field(default_factory=lambda: new_id("req"))
    device_id: str
    name: str = Field(description="What to do, e.g. 'write_coil', 'reboot', 'snapshot'.")
    params: JsonObject = Field(default_factory=dict)
    status: CommandStatus = CommandStatus.PENDING
    requested_by: str | None = None
    requested_at: datetime = Field(default_factory=utcnow)
    deadline: datetime
    responded_at: datetime | None = None
    response: JsonObject | None = None
    error: str | None = None


# --------------------------------------------------------------------------- pipelines


class PipelineRecord(Record):
    """A pipeline: its name and its revisions (documents are immutable per revision)."""

    id: str = Field(default_factory=lambda: new_id("pl"))
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    latest_revision: int = 1
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PipelineRevision(Record):
    """One saved version of a pipeline document, never changed once stored."""

    pipeline_id: str
    revision: int = Field(ge=1)
    document: JsonObject
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class RunStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.STOPPING)


class Run(Record):
    """One Play of one pipeline revision, until Stop (or its sources end, or it fails)."""

    id: str = Field(default_factory=lambda: new_id("run"))
    pipeline_id: str
    revision: int
    status: RunStatus = RunStatus.STARTING
    started_by: str | None = None
    started_at: datetime = Field(default_factory=utcnow)
    stopped_at: datetime | None = None
    counters: JsonObject = Field(
        default_factory=dict, description="Per-node counters and totals (frames, events…)."
    )
    error: str | None = None
    version: int = 1


class EventRecord(Record):
    """An event a pipeline produced (zone entered, loitering, sensor threshold…).

    ``id`` is the event's idempotency key: storing the same id twice keeps one.
    """

    id: str
    pipeline_id: str
    run_id: str | None = None
    node_id: str
    source_id: str | None = Field(default=None, description="Camera/device the event is about.")
    type: str
    time: datetime
    severity: str = "info"
    data: JsonObject = Field(default_factory=dict)
    acknowledged_by: str | None = Field(
        default=None, description="Username of the first person who acknowledged it."
    )
    acknowledged_at: datetime | None = Field(
        default=None, description="When it was first acknowledged (later ones are not kept)."
    )


# --------------------------------------------------------------------------- alerts


class AlertRuleKind(StrEnum):
    OFFLINE = "offline"
    METRIC_ABOVE = "metric_above"
    METRIC_BELOW = "metric_below"


class AlertRule(Record):
    """When to raise an alert about one device.

    ``offline``: the device has been offline for ``for_minutes``. ``metric_above`` /
    ``metric_below``: the latest value of ``metric`` (health or telemetry) is beyond
    ``threshold``.
    """

    id: str = Field(default_factory=lambda: new_id("rule"))
    device_id: str
    kind: AlertRuleKind
    metric: str | None = None
    threshold: float | None = None
    for_minutes: float = Field(default=0, ge=0)
    severity: str = "warning"
    enabled: bool = True


class AlertState(StrEnum):
    ACTIVE = "active"
    CLEARED = "cleared"


class Alert(Record):
    """A raised alert. At most one is active per (device, rule) — deduplicated on write."""

    id: str = Field(default_factory=lambda: new_id("alert"))
    device_id: str
    rule_id: str
    kind: AlertRuleKind
    severity: str = "warning"
    message: str
    state: AlertState = AlertState.ACTIVE
    raised_at: datetime = Field(default_factory=utcnow)
    cleared_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    value: float | None = None


# --------------------------------------------------------------------------- users


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"


class User(Record):
    """An account of the console and API. ``password_hash`` is an Argon2id PHC string."""

    id: str = Field(default_factory=lambda: new_id("usr"))
    username: str = Field(min_length=1, max_length=100)
    display_name: str = ""
    email: str | None = None
    role: Role = Role.VIEWER
    password_hash: str
    disabled: bool = False
    failed_logins: int = 0
    locked_until: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    version: int = 1


class RefreshToken(Record):
    """A refresh token, stored by its SHA-256 hash. Rotation: each use replaces it;
    reuse of a replaced token revokes its whole family (RFC 9700 §4.14.2)."""

    id: str = Field(default_factory=lambda: new_id("rt"))
    user_id: str
    family_id: str
    token_hash: str
    issued_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None
    replaced_by: str | None = None


class AuditEntry(Record):
    """Who did what to what, when and from where (every write through the API)."""

    id: str = Field(default_factory=lambda: new_id("aud"))
    time: datetime = Field(default_factory=utcnow)
    actor_id: str | None = None
    actor: str | None = Field(default=None, description="Username at the time.")
    action: str = Field(description="e.g. 'device.create', 'pipeline.execute', 'auth.login'.")
    target_type: str | None = None
    target_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    outcome: str = "success"
    detail: JsonObject = Field(default_factory=dict)
