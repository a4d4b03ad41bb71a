"""The service stores: one port per record family, two adapters each.

Adapters: :mod:`aios.store.sqlite` (embedded default: one file, WAL, migrations) and
:mod:`aios.store.dynamodb` (the cloud: one table with GSIs, conditional writes). Both pass
the same contract suite (``tests/integration/store``).

Rules every adapter keeps:

- ``get`` returns ``None`` for an absent record; writes to an absent record raise
  :class:`NotFound`; a create whose key exists, or a write whose ``expected_version`` is not
  the stored one, raises :class:`Conflict` and changes nothing.
- A write that returned has been made durable (SQLite: committed with WAL; DynamoDB: the
  call succeeded).
- Lists return a :class:`Page`; ``cursor`` is opaque, stable under inserts (keyset, not
  offset), and ``None`` on the last page. ``limit`` is 1–1000.
- Times go in and come out as timezone-aware UTC datetimes, with microseconds kept.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from aios.domain import (
    Alert,
    AlertRule,
    AlertState,
    AuditEntry,
    Command,
    CommandStatus,
    Device,
    DeviceEvent,
    DeviceKind,
    EventRecord,
    PipelineRecord,
    PipelineRevision,
    RefreshToken,
    Run,
    TelemetryPoint,
    User,
)

T = TypeVar("T")


class StoreError(Exception):
    """Base of store errors."""


class NotFound(StoreError):
    """The record does not exist."""


class Conflict(StoreError):
    """The key exists, or the record changed since it was read (``expected_version``)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; pass ``next_cursor`` back to get the next (``None``: last)."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True)
class BoundingBox:
    """A latitude/longitude box, degrees, edges inclusive (no antimeridian wrap)."""

    min_lat: float
    min_lon: float
    max_lat: float
    max_lon: float


@dataclass(frozen=True)
class DeviceQuery:
    """Filters of :meth:`DeviceStore.list`; all given ones must match.

    ``search`` matches a case-insensitive substring of the name or of the id. Order: by id.
    """

    search: str | None = None
    kind: DeviceKind | None = None
    site: str | None = None
    tag: str | None = None
    parent_id: str | None = None
    box: BoundingBox | None = None
    pending: bool | None = None


@dataclass(frozen=True)
class EventQuery:
    """Filters of :meth:`EventStore.list`. Order: newest ``time`` first (ties by id)."""

    pipeline_id: str | None = None
    run_id: str | None = None
    type: str | None = None
    source_id: str | None = None
    since: datetime | None = None
    until: datetime | None = field(default=None)
    severity: str | None = None
    acknowledged: bool | None = None
    """``True``: acknowledged events only; ``False``: unacknowledged only; ``None``: all."""


class DeviceStore(Protocol):
    def create(self, device: Device) -> Device:
        """Store a new device. Raises Conflict if the id exists."""
        ...

    def get(self, device_id: str) -> Device | None: ...

    def update(self, device: Device, expected_version: int) -> Device:
        """Replace the device if its stored version is ``expected_version``.

        Returns the stored device (``version`` = expected + 1, ``updated_at`` as given).
        Raises NotFound, Conflict.
        """
        ...

    def touch(
        self,
        device_id: str,
        seen_at: datetime,
        *,
        health: dict[str, Any] | None = None,
        firmware_version: str | None = None,
    ) -> Device:
        """Record a heartbeat without a read-modify-write race: ``last_seen`` becomes
        ``max(last_seen, seen_at)``; ``health``/``firmware_version`` are replaced only when
        given and ``seen_at`` is not older than the stored ``last_seen`` (late messages do
        not roll health back). Bumps ``version``. Raises NotFound."""
        ...

    def delete(self, device_id: str) -> bool:
        """Remove the device (its history, telemetry and rules are kept). True if it existed."""
        ...

    def list(
        self, query: DeviceQuery | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[Device]: ...


class DeviceEventStore(Protocol):
    def append(self, event: DeviceEvent) -> None:
        """Store the event (same id twice keeps one)."""
        ...

    def list(
        self,
        device_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[DeviceEvent]:
        """The device's events, newest first, ``since <= time < until``."""
        ...


class TelemetryStore(Protocol):
    def append(self, points: Sequence[TelemetryPoint]) -> None:
        """Store samples; a second sample of the same (device, metric, time) replaces it."""
        ...

    def query(
        self,
        device_id: str,
        *,
        metric: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        cursor: str | None = None,
    ) -> Page[TelemetryPoint]:
        """Samples oldest first (by time, then metric), ``since <= time < until``."""
        ...

    def latest(self, device_id: str) -> dict[str, TelemetryPoint]:
        """The newest sample of each metric of the device."""
        ...

    def prune(self, before: datetime) -> int:
        """Delete the samples of every device whose ``time < before`` (retention).

        When it returns, :meth:`query` returns no sample older than ``before`` (whatever its
        ``since``), and :meth:`latest` leaves out a metric whose samples were all older
        (a metric with a newer sample keeps its newest). Samples at ``before`` are kept.
        What it dropped stays dropped: repeating it, or pruning with an earlier ``before``,
        brings nothing back. A sample older than ``before`` appended *after* the call is
        the adapter's to keep (SQLite, until the next prune) or hide (DynamoDB).

        Returns how many samples it deleted. An adapter whose deletion is asynchronous
        (DynamoDB: TTL deletes the items later) hides them at once and returns 0.
        Raises ValueError for a naive ``before``.
        """
        ...


class CommandStore(Protocol):
    def create(self, command: Command) -> Command:
        """Raises Conflict if the request id exists."""
        ...

    def get(self, request_id: str) -> Command | None: ...

    def complete(
        self,
        request_id: str,
        status: CommandStatus,
        *,
        at: datetime,
        response: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Command:
        """Record the outcome of a pending command. Raises NotFound; Conflict if it is no
        longer pending (a late response after a timeout is refused, not overwritten)."""
        ...

    def list(self, device_id: str, *, limit: int = 100, cursor: str | None = None) -> Page[Command]:
        """The device's commands, newest first."""
        ...

    def list_pending(self, *, limit: int = 1000) -> builtins.list[Command]:
        """Commands still pending (any device), oldest deadline first."""
        ...


class PipelineStore(Protocol):
    def create(self, record: PipelineRecord, document: dict[str, Any]) -> PipelineRecord:
        """Store a new pipeline and its revision 1. Raises Conflict if the id exists."""
        ...

    def get(self, pipeline_id: str) -> PipelineRecord | None: ...

    def add_revision(
        self,
        pipeline_id: str,
        document: dict[str, Any],
        *,
        expected_revision: int,
        name: str | None = None,
        description: str | None = None,
        created_by: str | None = None,
        at: datetime,
    ) -> PipelineRecord:
        """Store revision ``expected_revision + 1`` and make it the latest (also updating
        name/description when given). Raises NotFound; Conflict if ``expected_revision`` is
        not the latest (two editors saving at once: the second is refused)."""
        ...

    def get_revision(self, pipeline_id: str, revision: int) -> PipelineRevision | None: ...

    def list_revisions(
        self, pipeline_id: str, *, limit: int = 100, cursor: str | None = None
    ) -> Page[PipelineRevision]:
        """Newest revision first."""
        ...

    def delete(self, pipeline_id: str) -> bool:
        """Remove the pipeline and its revisions (runs and events are kept)."""
        ...

    def list(
        self, *, search: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[PipelineRecord]:
        """Pipelines by id; ``search`` is a case-insensitive substring of the name or id."""
        ...


class RunStore(Protocol):
    def create(self, run: Run) -> Run:
        """Raises Conflict if the id exists."""
        ...

    def get(self, run_id: str) -> Run | None: ...

    def update(self, run: Run, expected_version: int) -> Run:
        """Raises NotFound, Conflict."""
        ...

    def list(self, pipeline_id: str, *, limit: int = 100, cursor: str | None = None) -> Page[Run]:
        """The pipeline's runs, newest ``started_at`` first."""
        ...

    def list_active(self) -> builtins.list[Run]:
        """Runs whose status is starting, running or stopping (any pipeline)."""
        ...


class EventStore(Protocol):
    def put(self, event: EventRecord) -> bool:
        """Store the event unless its id is stored already; return whether it was new."""
        ...

    def get(self, event_id: str) -> EventRecord | None: ...

    def acknowledge(self, event_id: str, *, by: str, at: datetime) -> EventRecord:
        """Mark the event acknowledged by ``by`` at ``at`` (idempotent: the first
        acknowledgement is kept, a later one returns the event unchanged).
        Raises NotFound."""
        ...

    def list(
        self, query: EventQuery | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[EventRecord]: ...


class AlertStore(Protocol):
    def put_rule(self, rule: AlertRule) -> AlertRule:
        """Create or replace a rule."""
        ...

    def get_rule(self, rule_id: str) -> AlertRule | None: ...

    def delete_rule(self, rule_id: str) -> bool: ...

    def list_rules(self, device_id: str | None = None) -> builtins.list[AlertRule]:
        """Rules of one device, or all rules; by id."""
        ...

    def raise_alert(self, alert: Alert) -> bool:
        """Store ``alert`` as the active alert of (device, rule) unless one is active
        already; return whether it was raised (deduplicated by a conditional write)."""
        ...

    def clear(self, device_id: str, rule_id: str, *, at: datetime) -> Alert | None:
        """Clear the active alert of (device, rule); return it, or None if none was."""
        ...

    def acknowledge(self, alert_id: str, *, by: str, at: datetime) -> Alert:
        """Mark acknowledged (idempotent: the first acknowledgement is kept).
        Raises NotFound."""
        ...

    def get(self, alert_id: str) -> Alert | None: ...

    def list(
        self,
        *,
        state: AlertState | None = None,
        device_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Alert]:
        """Newest ``raised_at`` first."""
        ...


class UserStore(Protocol):
    def create(self, user: User) -> User:
        """Raises Conflict if the id or the username (case-insensitive) exists."""
        ...

    def get(self, user_id: str) -> User | None: ...

    def get_by_username(self, username: str) -> User | None:
        """Case-insensitive."""
        ...

    def update(self, user: User, expected_version: int) -> User:
        """Raises NotFound; Conflict on version, or if the new username is taken."""
        ...

    def delete(self, user_id: str) -> bool: ...

    def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[User]:
        """By username (case-insensitive)."""
        ...

    def count(self) -> int: ...


class RefreshTokenStore(Protocol):
    def put(self, token: RefreshToken) -> None: ...

    def get_by_hash(self, token_hash: str) -> RefreshToken | None: ...

    def rotate(self, token_id: str, replacement: RefreshToken, *, at: datetime) -> bool:
        """Store ``replacement`` and mark ``token_id`` replaced, only if ``token_id`` is
        neither revoked nor replaced; return whether it rotated (False: reuse)."""
        ...

    def revoke(self, token_id: str, *, at: datetime) -> None: ...

    def revoke_family(self, family_id: str, *, at: datetime) -> int:
        """Revoke every token of the family; return how many were live."""
        ...

    def revoke_user(self, user_id: str, *, at: datetime) -> int:
        """Revoke every token of the user; return how many were live."""
        ...


class AuditStore(Protocol):
    def append(self, entry: AuditEntry) -> None: ...

    def list(
        self,
        *,
        actor_id: str | None = None,
        target_type: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[AuditEntry]:
        """Newest first."""
        ...


class SettingsStore(Protocol):
    """Site-wide settings as JSON values by key (e.g. 'fleet' → allow pending devices)."""

    def get(self, key: str) -> Any | None: ...

    def put(self, key: str, value: Any) -> None: ...


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown of a stored integration secret: never its value.

    ``hint``: the value's last 4 characters when it has at least
    :data:`SECRET_HINT_MIN_LENGTH` characters (``None`` for shorter values: too much of
    them would show). ``updated_by``: username of who set it.
    """

    name: str
    updated_at: datetime
    updated_by: str | None = None
    hint: str | None = None


SECRET_HINT_MIN_LENGTH = 12
"""Shortest secret value whose last 4 characters are shown as its hint."""

MAX_SECRET_BYTES = 8192
"""Largest secret value stored (UTF-8 bytes): tokens, passwords, signing keys."""


def secret_hint(value: str) -> str | None:
    """The last 4 characters of ``value`` when it is long enough to show them, else None."""
    return value[-4:] if len(value) >= SECRET_HINT_MIN_LENGTH else None


class IntegrationSecretStore(Protocol):
    """Integration secrets set from the console (tokens, passwords, signing keys), by name.

    The values are only ever read by the pipelines' nodes (through
    :class:`aios.store.secrets.StoredSecrets`); lists give :class:`SecretInfo` only.
    Adapters: SQLite (values encrypted with AES-GCM under a key file kept beside the
    database, mode 0600); DynamoDB (the table, encrypted at rest by DynamoDB; AWS Secrets
    Manager is the adapter meant for production in the cloud).
    """

    def get(self, name: str) -> str | None:
        """The value, or None when the secret is not stored."""
        ...

    def info(self, name: str) -> SecretInfo | None:
        """What may be shown of the secret, or None."""
        ...

    def put(self, name: str, value: str, *, by: str | None, at: datetime) -> SecretInfo:
        """Store (or replace) the secret. Raises ValueError for an empty value or one over
        :data:`MAX_SECRET_BYTES`."""
        ...

    def delete(self, name: str) -> bool:
        """Remove the secret; True if it was stored."""
        ...

    def list(self) -> builtins.list[SecretInfo]:
        """Every stored secret, by name."""
        ...


class Store(Protocol):
    """Every store of the service, from one adapter."""

    devices: DeviceStore
    device_events: DeviceEventStore
    telemetry: TelemetryStore
    commands: CommandStore
    pipelines: PipelineStore
    runs: RunStore
    events: EventStore
    alerts: AlertStore
    users: UserStore
    refresh_tokens: RefreshTokenStore
    audit: AuditStore
    settings: SettingsStore
    secrets: IntegrationSecretStore

    def close(self) -> None: ...
