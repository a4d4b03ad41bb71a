"""Request and response bodies of the REST API (those that are not domain records as is).

Request models refuse unknown fields (a misspelt field is a 422 naming it, not a silently
ignored value), and free-form JSON fields nested deeper than
:data:`aios.domain.MAX_JSON_DEPTH` (a 422 naming the field: what could not be stored is
refused before anything is). Responses never carry a password hash or a token hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from aios.domain import (
    DEVICE_ID_PATTERN,
    MAX_JSON_DEPTH,
    AlertRuleKind,
    DeviceKind,
    GeoPoint,
    JsonObject,
    Role,
    User,
    json_depth,
)
from aios.pipeline.document import PipelineDocument, PipelineNode

T = TypeVar("T")

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
PASSWORD_MIN = 8
PASSWORD_MAX = 256
"""Bounds of new passwords (NIST SP 800-63B §5.1.1.2: at least 8; a cap keeps hashing
cheap enough not to be a denial-of-service lever)."""


SECRET: dict[str, Any] = {"format": "password", "writeOnly": True}
"""JSON Schema of secret fields; their ``repr=False`` keeps them out of logged reprs."""


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields refused."""

    model_config = ConfigDict(extra="forbid")


class PageOut(BaseModel, Generic[T]):
    """One page of a list. Pass ``next_cursor`` as ``cursor`` to get the next page;
    ``null`` on the last page."""

    items: list[T]
    next_cursor: str | None = None


# --------------------------------------------------------------------------- auth


class LoginRequest(RequestModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(
        min_length=1, max_length=PASSWORD_MAX, repr=False, json_schema_extra=SECRET
    )


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=512, repr=False, json_schema_extra=SECRET)


class PasswordChange(RequestModel):
    current_password: str = Field(
        min_length=1, max_length=PASSWORD_MAX, repr=False, json_schema_extra=SECRET
    )
    new_password: str = Field(
        min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, repr=False, json_schema_extra=SECRET
    )


class UserOut(BaseModel):
    """A user as the API shows it (no password hash)."""

    id: str
    username: str
    display_name: str
    email: str | None
    role: Role
    disabled: bool
    locked_until: datetime | None = Field(
        description="Set while the account is locked after failed logins."
    )
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            display_name=user.display_name,
            email=user.email,
            role=user.role,
            disabled=user.disabled,
            locked_until=user.locked_until,
            created_at=user.created_at,
            updated_at=user.updated_at,
            version=user.version,
        )


class TokenResponse(BaseModel):
    """Tokens of a session: send ``access_token`` as ``Authorization: Bearer …``; trade
    ``refresh_token`` for a new pair at ``POST /api/v1/auth/refresh`` before it expires."""

    access_token: str = Field(repr=False)
    token_type: str = "Bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(repr=False)
    refresh_expires_at: datetime
    user: UserOut


class UserCreate(RequestModel):
    username: str = Field(pattern=USERNAME_PATTERN, description="Letters, digits, _ . @ -")
    password: str = Field(
        min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, repr=False, json_schema_extra=SECRET
    )
    display_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, pattern=EMAIL_PATTERN, max_length=254)
    role: Role = Role.VIEWER


class UserUpdate(RequestModel):
    """Fields to change (absent fields are kept; ``email: null`` clears it).

    Users may change their own ``display_name``, ``email`` and ``password`` (giving
    ``current_password``); only admins change ``role``, ``disabled``, others' passwords, or
    ``unlock`` an account."""

    display_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, pattern=EMAIL_PATTERN, max_length=254)
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(
        default=None,
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        repr=False,
        json_schema_extra=SECRET,
    )
    current_password: str | None = Field(
        default=None, min_length=1, max_length=PASSWORD_MAX, repr=False, json_schema_extra=SECRET
    )
    unlock: bool = Field(default=False, description="Clear a lockout after failed logins.")
    version: int | None = Field(
        default=None, ge=1, description="The version read; the update is refused if it moved."
    )


# --------------------------------------------------------------------------- pipelines


class PipelineIssueOut(BaseModel):
    """One problem of a pipeline document, located by node id/edge and field path."""

    code: str
    message: str
    node_id: str | None = None
    edge: str | None = None
    edge_index: int | None = None
    edge_id: str | None = None
    path: list[str | int] = Field(default_factory=list)
    location: str


class ValidationResult(BaseModel):
    """Whether a pipeline document can run, and every problem if not."""

    valid: bool
    issues: list[PipelineIssueOut] = Field(default_factory=list)


class PipelineOut(BaseModel):
    id: str
    name: str
    description: str
    latest_revision: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class PipelineDetail(PipelineOut):
    """A pipeline with its latest document, whether that document validates, and its
    active run (if one is starting, running or stopping)."""

    document: dict[str, Any]
    validation: ValidationResult
    active_run_id: str | None = None


NODE_CONFIG_DEPTH = MAX_JSON_DEPTH - 3
"""Deepest nesting of a node's ``config``: the document, its ``nodes`` list and the node
take 3 of the :data:`aios.domain.MAX_JSON_DEPTH` levels a stored document may use."""

METADATA_DEPTH = MAX_JSON_DEPTH - 1
"""Deepest nesting of a document's ``metadata`` (the document takes 1 level)."""


def _nested_at_most(limit: int, what: str) -> AfterValidator:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        depth = json_depth(value)
        if depth > limit:
            raise ValueError(
                f"nested {depth} levels deep; {what} may nest at most {limit} levels of "
                f"objects and arrays (a whole pipeline document: {MAX_JSON_DEPTH})"
            )
        return value

    return AfterValidator(check)


class PipelineNodeIn(PipelineNode):
    """A node of a pipeline document sent to be saved: its ``config`` nests at most
    :data:`NODE_CONFIG_DEPTH` levels."""

    config: Annotated[dict[str, Any], _nested_at_most(NODE_CONFIG_DEPTH, "a node's config")] = (
        Field(
            default_factory=dict,
            title="Configuration",
            description="Validated against the node type's config JSON Schema; nested at "
            f"most {NODE_CONFIG_DEPTH} levels.",
        )
    )


class PipelineDocumentIn(PipelineDocument):
    """A pipeline document sent to be saved. As stored, a whole document nests at most
    :data:`aios.domain.MAX_JSON_DEPTH` levels of objects and arrays, counting its own
    (document, ``nodes``, node): a node's ``config`` at most :data:`NODE_CONFIG_DEPTH`,
    ``metadata`` at most :data:`METADATA_DEPTH`."""

    metadata: Annotated[dict[str, Any], _nested_at_most(METADATA_DEPTH, "metadata")] = Field(
        default_factory=dict,
        title="Metadata",
        description="Free-form data kept with the document (site, owner, tags); nested at "
        f"most {METADATA_DEPTH} levels.",
    )
    nodes: list[PipelineNodeIn] = Field(title="Nodes")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _whole_document_depth(self) -> PipelineDocumentIn:
        depth = json_depth(self.model_dump(mode="json", by_alias=True))
        if depth > MAX_JSON_DEPTH:
            raise ValueError(
                f"the document nests {depth} levels deep; at most {MAX_JSON_DEPTH} levels of "
                "objects and arrays are stored"
            )
        return self


class PipelineUpdate(RequestModel):
    """A new revision of a pipeline. Saving over a newer revision than ``expected_revision``
    is refused (409): two editors saving at once do not overwrite each other."""

    expected_revision: int = Field(ge=1, description="The latest revision the editor loaded.")
    document: PipelineDocumentIn


class ExecuteRequest(RequestModel):
    """What to play (the body of ``POST …/execute`` is optional)."""

    revision: int | None = Field(
        default=None,
        ge=1,
        le=2**31,
        description="The revision to run (default: the latest). Same as the 'revision' "
        "query parameter; give one or the other.",
    )


# --------------------------------------------------------------------------- analytics


class HourCount(BaseModel):
    hour: datetime = Field(description="Start of the UTC hour.")
    count: int


class EventAnalytics(BaseModel):
    """Pipeline events recorded in ``[since, until)`` (the time the service recorded them;
    an event's own clock is its ``data.event_time``): totals by type, severity, pipeline
    and hour. ``truncated``: more than ``scanned`` events matched; counts cover the newest
    ones."""

    since: datetime
    until: datetime
    total: int
    by_type: dict[str, int]
    by_severity: dict[str, int]
    by_pipeline: dict[str, int]
    by_hour: list[HourCount]
    scanned: int
    truncated: bool


class RunPerformance(BaseModel):
    """What one run processed, from its counters."""

    run_id: str
    pipeline_id: str
    revision: int
    status: str
    started_at: datetime
    stopped_at: datetime | None
    elapsed_seconds: float | None = Field(description="Seconds the run has been active.")
    frames: int = Field(description="Frames processed over all video sources.")
    fps: float | None = Field(description="Frames per second, summed over sources.")
    dropped_frames: int
    events: int = Field(description="Events emitted by the pipeline's nodes.")
    events_stored: int
    executions: dict[str, int] = Field(description="Event-tier executions by status.")
    latency_ms: float | None = Field(
        default=None, description="Mean processing latency per frame, if the run reports it."
    )


class PerformanceOut(BaseModel):
    """Totals over the runs listed (newest first)."""

    runs: list[RunPerformance]
    active_runs: int
    frames: int
    events: int
    executions: dict[str, int]
    fps: float = Field(description="Sum of the active runs' frames per second.")


class SiteSettings(BaseModel):
    """Site-wide settings kept in the store."""

    allow_pending_devices: bool = Field(
        description="Register devices that publish before being created as pending "
        "(in effect: the stored choice, or forced on by the service's configuration)."
    )
    forced_by_configuration: bool = Field(
        description="AIOS_ALLOW_PENDING_DEVICES is on: pending devices are allowed "
        "whatever is stored here."
    )


class SiteSettingsUpdate(RequestModel):
    allow_pending_devices: bool | None = None


# --------------------------------------------------------------------------- devices


class DeviceCreate(RequestModel):
    """A device to register. Its status is derived from what it reports, never set."""

    id: str = Field(
        pattern=DEVICE_ID_PATTERN,
        description="Stable unique id; also its MQTT topic level (no '/', '+', '#').",
    )
    name: str = Field(min_length=1, max_length=200)
    kind: DeviceKind
    site: str | None = Field(default=None, max_length=100)
    tags: list[str] = Field(default_factory=list, max_length=50)
    location: GeoPoint | None = None
    parent_id: str | None = Field(
        default=None,
        pattern=DEVICE_ID_PATTERN,
        description="The connector this device is reached through.",
    )
    firmware_version: str | None = Field(default=None, max_length=100)


class DeviceUpdate(RequestModel):
    """Fields to change (absent fields are kept; ``null`` clears ``site``, ``location``,
    ``parent_id``). ``pending: false`` approves a device registered by its first message."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    site: str | None = Field(default=None, max_length=100)
    tags: list[str] | None = Field(default=None, max_length=50)
    location: GeoPoint | None = None
    parent_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)
    firmware_version: str | None = Field(default=None, max_length=100)
    pending: bool | None = None
    version: int | None = Field(
        default=None, ge=1, description="The version read; refused (409) if it moved."
    )


class CommandIn(RequestModel):
    """A command for a device; the device answers on its response topic by the deadline."""

    name: str = Field(min_length=1, max_length=100, description="e.g. 'write_coil', 'reboot'.")
    params: JsonObject = Field(
        default_factory=dict,
        description=f"Free-form arguments; nested at most {MAX_JSON_DEPTH} levels.",
    )
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=24 * 3600,
        description="Seconds the device has to answer (default: the service setting).",
    )


class DesiredConfigIn(RequestModel):
    """A new desired configuration; ``expected_version`` is the ``desired_version`` the
    editor read (409 if another change came first; absent: on top of the current one)."""

    config: JsonObject = Field(
        description=f"The whole desired configuration; nested at most {MAX_JSON_DEPTH} levels."
    )
    expected_version: int | None = Field(default=None, ge=0)


class AlertRuleIn(RequestModel):
    """When to raise an alert about the device: ``offline`` for ``for_minutes``, or a
    metric (health or telemetry) above/below ``threshold`` for ``for_minutes``."""

    kind: AlertRuleKind
    metric: str | None = Field(default=None, min_length=1, max_length=128)
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    for_minutes: float = Field(default=0, ge=0, le=7 * 24 * 60)
    severity: Literal["info", "warning", "critical"] = "warning"
    enabled: bool = True


class DeviceAnalytics(BaseModel):
    """The fleet now: counts by derived status, and availability.

    ``availability_percent``: devices not offline (online or warning) over all devices;
    ``online_percent``: devices online over all devices (both 0 when there are none).
    """

    total: int
    online: int
    warning: int
    offline: int
    pending: int
    by_kind: dict[str, int]
    by_site: dict[str, int]
    availability_percent: float
    online_percent: float
    active_alerts: int


# --------------------------------------------------------------------------- integrations


class SecretUse(BaseModel):
    """Where a secret is named: a node of a pipeline's latest revision."""

    pipeline_id: str
    pipeline_name: str
    node_id: str
    node_type: str
    field: str = Field(description="The node configuration field that names the secret.")


class IntegrationSecretOut(BaseModel):
    """An integration secret as the console shows it: never its value.

    ``source`` is where the pipelines' nodes find it, in order of precedence: ``env``
    (``AIOS_SECRET_<NAME>`` of the service, set by whoever runs it: it wins over the
    others), ``store`` (set from the console), ``file`` (the service's secrets file); ``null``
    when it is not set anywhere. ``masked`` is what to display: ``"••••wxyz"`` (the last 4
    characters, only for a value set from the console of at least 12 characters),
    ``"•••• set"``, or ``null`` when not set.
    """

    name: str
    title: str
    description: str
    env_var: str = Field(description="The environment variable that would override it.")
    set: bool
    source: Literal["env", "store", "file"] | None
    masked: str | None
    hint: str | None = Field(description="Last 4 characters (store only), else null.")
    stored: bool = Field(description="A value set from the console is stored.")
    updated_at: datetime | None = Field(description="When the stored value was set.")
    updated_by: str | None
    used_by: list[SecretUse] = Field(default_factory=list)


class IntegrationsOut(BaseModel):
    """Every integration secret known: the well-known ones of the notification nodes,
    those named by a node of a pipeline's latest revision, and any stored one."""

    items: list[IntegrationSecretOut]


class IntegrationSecretIn(RequestModel):
    value: str = Field(
        min_length=1,
        max_length=8192,
        repr=False,
        json_schema_extra=SECRET,
        description="The secret (token, password, signing key). Never shown again.",
    )


# --------------------------------------------------------------------------- backup


class BackupUser(BaseModel):
    """A user in a backup: no password hash (a restored new user must set a password
    through an admin before signing in)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    username: str
    display_name: str = ""
    email: str | None = None
    role: Role
    disabled: bool = False


class BackupPipeline(BaseModel):
    """A pipeline and its revisions (oldest first; the last is the latest)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    revisions: list[JsonObject] = Field(
        min_length=1, description="Pipeline documents, revision 1 first."
    )


class BackupFile(BaseModel):
    """The configuration of a site as one JSON file (``GET /api/v1/backup``).

    Holds devices (with their desired configuration, no runtime state), pipelines with all
    their revisions, alert rules, site settings, users (role and names, never password
    hashes), and the *names* of the integration secrets (never their values).
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(ge=1, description="Version of this file's format.")
    exported_at: datetime
    exported_by: str | None = None
    devices: list[dict[str, Any]] = Field(default_factory=list)
    pipelines: list[dict[str, Any]] = Field(default_factory=list)
    alert_rules: list[dict[str, Any]] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    users: list[dict[str, Any]] = Field(default_factory=list)
    integration_secrets: list[str] = Field(
        default_factory=list, description="Names of the secrets set; values are not exported."
    )


class KindCounts(BaseModel):
    created: int = 0
    updated: int = 0
    unchanged: int = 0


class RestoreOut(BaseModel):
    """What a restore did, per kind of record."""

    mode: Literal["merge"]
    devices: KindCounts
    pipelines: KindCounts
    alert_rules: KindCounts
    settings: KindCounts
    users: KindCounts
    missing_secrets: list[str] = Field(
        description="Secrets the backup names that are not set here: set them in "
        "Settings → Integrations."
    )


# --------------------------------------------------------------------------- cameras


class CameraSnapshotIn(RequestModel):
    url: str = Field(
        min_length=1,
        max_length=2048,
        repr=False,
        description="rtsp://… (credentials in the URL are used, never echoed), or a video "
        "or image file: file:///path, a path, or asset:NAME (a bundled sample).",
    )
    username: str | None = Field(
        default=None, max_length=128, description="Camera login, when not in the URL."
    )
    password: str | None = Field(default=None, max_length=256, repr=False, json_schema_extra=SECRET)
    timeout_seconds: float = Field(
        default=8.0, gt=0, le=30, description="How long to wait for a frame, seconds."
    )


# --------------------------------------------------------------------------- system


class AvailabilityHour(BaseModel):
    """One UTC hour of the fleet: the share of device-time online, and not offline."""

    hour: datetime
    devices: int = Field(description="Devices registered during (part of) the hour.")
    online_ratio: float = Field(description="0–1: device-seconds online over all.")
    available_ratio: float = Field(description="0–1: device-seconds online or warning.")


class AvailabilityOut(BaseModel):
    since: datetime
    until: datetime
    by_hour: list[AvailabilityHour]


class SystemOut(BaseModel):
    """The dashboard's key figures in one call."""

    version: str
    time: datetime = Field(description="The service's clock now (UTC).")
    started_at: datetime = Field(description="When the process serving the API started.")
    uptime_seconds: float
    devices_total: int
    devices_online: int
    devices_warning: int
    devices_offline: int
    active_pipelines: int = Field(description="Pipelines with a run starting/running/stopping.")
    active_runs: int
    active_alerts: int
    alerts_last_24h: int = Field(description="Device alerts raised in the last 24 hours.")
    alerts_unacknowledged: int = Field(description="Active device alerts nobody acknowledged.")
    events_last_24h: int = Field(description="Pipeline events recorded in the last 24 hours.")
    notable_events_last_24h: int = Field(
        description="Of those, with severity warning or critical (dashboard events)."
    )
