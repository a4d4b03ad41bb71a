"""The fleet: devices, their derived status, desired/reported configuration, commands,
alert rules, and what devices report (heartbeats, telemetry, events, command responses).

One :class:`FleetService` per process, over :class:`~aios.services.Services`. Every time
comes from ``services.clock()``. The API calls the device methods; the MQTT ingester (or
the cloud's ingest function) calls the ``record_*`` methods; :meth:`FleetService.evaluate`
runs periodically (every few seconds in ``aios up``, a scheduled function in the cloud).

**Status** is always derived (:mod:`aios.fleet.status`). To record each *transition* once,
:meth:`~FleetService.evaluate` keeps the last status it saw per device in the settings
store (key ``fleet.status/{device_id}``) — bookkeeping of the evaluator, never displayed.
Transition events get an id derived from (device, previous status, new status, last seen),
so two evaluators running at once store one event. The time of each transition is kept
with it and gives ``status_since`` (:meth:`FleetService.status_since`), together with
:data:`CONTACT_KEY` (the first message after a silence); the status itself is never read
from there.

**Ingestion** checks a whole message before writing any of it: times (at most
:data:`~aios.messages.MAX_CLOCK_SKEW` ahead), every record it will write (built and
validated as the store will validate it, e.g. JSON depth). A bad message writes nothing
and raises :class:`InvalidRequest` with field paths and error types, never the values.
Logs of this module never hold message content.

**Unknown devices** that publish are refused (:class:`MessageRefused`, reason
``unknown_device``) unless the setting ``allow_pending_devices`` is on, or the settings
store's ``fleet`` key holds ``{"allow_pending": true}``: then they are registered with
``pending=True`` (kind from the heartbeat's ``kind``, else connector; a child named by a
connector's message: kind sensor, parent the connector) and their messages are kept.

**Desired configuration** is stored, then published retained on
``cfg/aios/{device_id}/desired`` when the process has a device link. Without a link (a
process that cannot reach the broker) it is stored only: the process that owns the link
publishes the stored desired state when the device connects (retained messages also
survive until replaced, so a device picks it up when it subscribes).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from aios.domain import (
    Alert,
    AlertRule,
    AlertRuleKind,
    AlertState,
    Command,
    CommandStatus,
    Device,
    DeviceEvent,
    DeviceKind,
    DeviceStatus,
    TelemetryPoint,
)
from aios.fleet.status import FleetThresholds, StatusInfo, derive_status
from aios.messages import (
    CONFIG_REPORTED,
    HEARTBEAT_TIME_KEY,
    MAX_PAYLOAD_BYTES,
    CommandRequest,
    CommandResponse,
    ConfigReport,
    DesiredConfig,
    DeviceEventsMessage,
    Heartbeat,
    Message,
    Telemetry,
    TopicKind,
    check_times,
    describe_errors,
    topic,
)
from aios.services import Services
from aios.store.port import Conflict, DeviceQuery, NotFound, Page

log = logging.getLogger(__name__)

STATUS_KEY = "fleet.status/{device_id}"
"""Settings key of the evaluator's last seen status of a device."""

CONTACT_KEY = "fleet.contact/{device_id}"
"""Settings key of when a device was first heard from after silence (``{"since": iso}``):
written by ingestion only when a message ends a silence (never seen, or silent for the
warning delay), so not on every heartbeat. The start of "online since" until the
evaluator records the transition."""

CONDITION_KEY = "fleet.condition/{rule_id}"
"""Settings key of when a metric rule's condition started to hold (for ``for_minutes``)."""

FLEET_SETTINGS_KEY = "fleet"
"""Settings key of site-wide fleet settings, e.g. ``{"allow_pending": true}``."""

UPDATABLE_FIELDS = frozenset({"name", "site", "tags", "location", "parent_id", "firmware_version"})
"""Fields :meth:`FleetService.update` may change."""

MAX_COMMAND_TIMEOUT_SECONDS = 24 * 3600.0
LIST_SCAN_BUDGET = 5000
"""Devices examined at most by one status-filtered :meth:`FleetService.list` call."""

_PAGE = 1000
_RETRIES = 5
_SEVERITIES = ("info", "warning", "critical")


class FleetError(Exception):
    """Base of the fleet's errors (besides the store's NotFound and Conflict)."""


class InvalidRequest(FleetError, ValueError):
    """The request cannot be carried out as given (the message says what to change)."""


class DeviceUnreachable(FleetError):
    """The process has no link to the devices, or the broker refused the publish."""


class MessageRefused(FleetError):
    """A device message the fleet will not take.

    ``reason``: ``unknown_device`` (not registered, pending not allowed), ``not_a_child``
    (the message names a device that is not a child of the publisher), ``unknown_command``
    (a response to no known request), ``wrong_device`` (a response from a device the
    request was not sent to), ``late_response`` (the request is no longer pending or its
    deadline passed).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DeviceView(Device):
    """A device as the API returns it: the stored record plus its derived status."""

    status: DeviceStatus
    status_reasons: builtins.list[str] = Field(default_factory=builtins.list)
    status_since: datetime | None = None


class FleetSummary(BaseModel):
    """Counts over the whole fleet. ``online + warning + offline == total``; ``pending``
    counts devices awaiting approval (whatever their status); ``by_site`` counts devices
    that have a site."""

    total: int
    online: int
    warning: int
    offline: int
    pending: int
    by_kind: dict[str, int]
    by_site: dict[str, int]


@dataclass(frozen=True)
class StatusTransition:
    """A status change :meth:`FleetService.evaluate` recorded."""

    device_id: str
    previous: DeviceStatus
    status: DeviceStatus
    reasons: builtins.list[str]


@dataclass(frozen=True)
class EvaluationResult:
    """What one :meth:`FleetService.evaluate` did."""

    devices: int
    transitions: builtins.list[StatusTransition]
    alerts_raised: builtins.list[Alert]
    alerts_cleared: builtins.list[Alert]
    commands_timed_out: int


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _error_type(err: BaseException) -> str:
    cls = type(err)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class FleetService:
    """Devices and what they report. See the module doc for the rules it keeps."""

    def __init__(self, services: Services, thresholds: FleetThresholds | None = None) -> None:
        self.services = services
        self.store = services.store
        self.thresholds = thresholds or FleetThresholds()

    # ------------------------------------------------------------------ internals

    def _now(self) -> datetime:
        return self.services.clock()

    def _publish_feed(self, channel: str, message: dict[str, Any]) -> None:
        try:
            self.services.feed.publish(channel, message)
        except Exception as err:  # a console feed failing must not lose the write
            log.warning(
                "feed: could not publish %s on %s: %s",
                message.get("type"),
                channel,
                type(err).__name__,
            )

    def _event(
        self,
        device_id: str,
        type_: str,
        message: str = "",
        *,
        severity: str = "info",
        data: dict[str, Any] | None = None,
        event_id: str | None = None,
        at: datetime | None = None,
    ) -> DeviceEvent:
        event = DeviceEvent(
            device_id=device_id,
            time=at or self._now(),
            type=type_,
            severity=severity,
            message=message,
            data=data or {},
        )
        if event_id is not None:
            event = event.model_copy(update={"id": event_id})
        self.store.device_events.append(event)
        return event

    def status_of(self, device: Device) -> StatusInfo:
        """The derived status of ``device`` now."""
        return derive_status(device, self._now(), self.thresholds)

    def _require(self, device_id: str) -> Device:
        device = self.store.devices.get(device_id)
        if device is None:
            raise NotFound(f"device {device_id!r} does not exist")
        return device

    def _check_parent(self, device_id: str, parent_id: str | None) -> None:
        if parent_id is None:
            return
        if parent_id == device_id:
            raise InvalidRequest("parent_id: a device cannot be its own parent")
        parent = self.store.devices.get(parent_id)
        if parent is None:
            raise InvalidRequest(f"parent_id: device {parent_id!r} does not exist")
        if parent.kind is not DeviceKind.CONNECTOR:
            raise InvalidRequest(
                f"parent_id: device {parent_id!r} is a {parent.kind.value}; "
                "a parent must be a connector"
            )

    # ------------------------------------------------------------------ devices

    def view(self, device: Device) -> DeviceView:
        """``device`` with its status derived now (``status_since``: :meth:`status_since`)."""
        info = self.status_of(device)
        return DeviceView(
            **device.model_dump(),
            status=info.status,
            status_reasons=info.reasons,
            status_since=self.status_since(device, info),
        )

    def status_since(self, device: Device, info: StatusInfo) -> datetime | None:
        """When the device's current status (``info``, derived) began, where known.

        - Offline or warning by silence, or never seen: from the data
          (:class:`~aios.fleet.status.StatusInfo`'s ``since``: last seen plus the delay).
        - Online: as :meth:`evaluate` recorded it with the transition — the first message
          after the silence that ended (:data:`CONTACT_KEY`) when the device came back
          from silence, else the time of the transition (a health warning that ended);
          before the evaluator has run, the first message after silence. ``None`` only for
          a device online since before either was recorded.
        - Warning by a health value: the time :meth:`evaluate` recorded the transition to
          warning — when the condition was first seen, to within one evaluation interval
          (a few seconds in ``aios up``). ``None`` until the evaluator has run once since:
          heartbeats keep only the latest health, so the heartbeat that first carried the
          value is not known.

        The stored times are bookkeeping: the status itself is always derived.
        """
        if info.since is not None:
            return info.since
        state = self.store.settings.get(STATUS_KEY.format(device_id=device.id))
        if isinstance(state, dict) and state.get("status") == info.status.value:
            return _parse_time(state.get("since"))
        if info.status is DeviceStatus.ONLINE:
            return self._contact_since(device.id)
        return None

    def _contact_since(self, device_id: str) -> datetime | None:
        contact = self.store.settings.get(CONTACT_KEY.format(device_id=device_id))
        return _parse_time(contact.get("since")) if isinstance(contact, dict) else None

    def get(self, device_id: str) -> DeviceView | None:
        """The device with its status, or ``None``."""
        device = self.store.devices.get(device_id)
        return None if device is None else self.view(device)

    def register(self, device: Device, *, actor: str | None) -> DeviceView:
        """Add a device. ``created_at``/``updated_at`` become now, ``version`` 1.

        Raises:
            Conflict: the id exists.
            InvalidRequest: ``parent_id`` is not an existing connector.
        """
        now = self._now()
        self._check_parent(device.id, device.parent_id)
        record = device.model_copy(update={"created_at": now, "updated_at": now, "version": 1})
        stored = self.store.devices.create(record)
        self._event(
            stored.id,
            "device.registered",
            f"registered by {actor}" if actor else "registered",
            data={"actor": actor, "kind": stored.kind.value, "pending": stored.pending},
        )
        return self.view(stored)

    def update(
        self,
        device_id: str,
        changes: dict[str, Any],
        *,
        expected_version: int | None,
        actor: str | None,
    ) -> DeviceView:
        """Change some of name, site, tags, location, parent_id, firmware_version.

        ``expected_version``: the ``version`` the editor read (a newer stored version
        raises Conflict); ``None``: apply to the current version (retried if a heartbeat
        lands in between). Approving a pending device is ``pending=False`` (also allowed).

        Raises:
            NotFound: no such device.
            Conflict: ``expected_version`` is not the stored version.
            InvalidRequest: an unknown or read-only field, an invalid value, a bad parent.
        """
        allowed = UPDATABLE_FIELDS | {"pending"}
        unknown = sorted(set(changes) - allowed)
        if unknown:
            raise InvalidRequest(
                f"cannot change {', '.join(unknown)}; changeable fields: "
                f"{', '.join(sorted(allowed))}"
            )
        if "parent_id" in changes:
            self._check_parent(device_id, changes["parent_id"])
        for _ in range(_RETRIES):
            current = self._require(device_id)
            if expected_version is not None and current.version != expected_version:
                raise Conflict(
                    f"device {device_id!r} is at version {current.version}, not "
                    f"{expected_version}; reload it and apply the change again"
                )
            data = current.model_dump() | changes | {"updated_at": self._now()}
            try:
                new = Device.model_validate(data)
            except ValidationError as err:
                raise InvalidRequest(f"invalid device change: {err}") from err
            try:
                stored = self.store.devices.update(new, current.version)
            except Conflict:
                if expected_version is not None:
                    raise
                continue
            self._event(
                device_id,
                "device.updated",
                f"updated by {actor}" if actor else "updated",
                data={"actor": actor, "fields": sorted(changes)},
            )
            return self.view(stored)
        raise Conflict(f"device {device_id!r} kept changing; try again")

    def delete(self, device_id: str, *, actor: str | None) -> bool:
        """Remove a device (its history, telemetry and rules are kept). False if absent.

        Raises:
            Conflict: other devices have it as their parent (move or delete them first).
        """
        children = self.store.devices.list(DeviceQuery(parent_id=device_id), limit=1)
        if children.items:
            raise Conflict(
                f"device {device_id!r} is the parent of other devices (e.g. "
                f"{children.items[0].id!r}); change their parent_id or delete them first"
            )
        existed = self.store.devices.delete(device_id)
        if existed:
            self._event(
                device_id,
                "device.deleted",
                f"deleted by {actor}" if actor else "deleted",
                data={"actor": actor},
            )
            self.store.settings.put(STATUS_KEY.format(device_id=device_id), None)
            self.store.settings.put(CONTACT_KEY.format(device_id=device_id), None)
        return existed

    def list(
        self,
        query: DeviceQuery | None = None,
        *,
        status: DeviceStatus | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[DeviceView]:
        """Devices by id, filtered by ``query`` and, if given, by derived ``status``.

        With ``status``, store pages are read and filtered here; at most
        :data:`LIST_SCAN_BUDGET` devices are examined per call, so a page can hold fewer
        than ``limit`` items (even none) while ``next_cursor`` is set: keep following it.
        The cursor resumes after the last device examined, stable under inserts.

        Raises:
            ValueError: ``limit`` outside 1–1000, or a cursor that is not one of this list.
        """
        if not 1 <= limit <= 1000:
            raise InvalidRequest(f"limit must be 1–1000, got {limit}")
        if status is None:
            page = self.store.devices.list(query, limit=limit, cursor=cursor)
            return Page([self.view(d) for d in page.items], page.next_cursor)
        found: builtins.list[DeviceView] = []
        examined = 0
        next_cursor = cursor
        while True:
            need = limit - len(found)
            page = self.store.devices.list(query, limit=need, cursor=next_cursor)
            examined += len(page.items)
            found.extend(v for v in map(self.view, page.items) if v.status is status)
            next_cursor = page.next_cursor
            if next_cursor is None or len(found) >= limit or examined >= LIST_SCAN_BUDGET:
                return Page(found, next_cursor)

    def _all_devices(self, query: DeviceQuery | None = None) -> builtins.list[Device]:
        devices: builtins.list[Device] = []
        cursor: str | None = None
        while True:
            page = self.store.devices.list(query, limit=_PAGE, cursor=cursor)
            devices.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return devices

    def summary(self) -> FleetSummary:
        """Counts by derived status, pending, kind and site."""
        now = self._now()
        statuses: Counter[DeviceStatus] = Counter()
        kinds: Counter[str] = Counter()
        sites: Counter[str] = Counter()
        pending = 0
        devices = self._all_devices()
        for device in devices:
            statuses[derive_status(device, now, self.thresholds).status] += 1
            kinds[device.kind.value] += 1
            if device.site:
                sites[device.site] += 1
            pending += device.pending
        return FleetSummary(
            total=len(devices),
            online=statuses[DeviceStatus.ONLINE],
            warning=statuses[DeviceStatus.WARNING],
            offline=statuses[DeviceStatus.OFFLINE],
            pending=pending,
            by_kind=dict(kinds),
            by_site=dict(sites),
        )

    # ------------------------------------------------------------------ configuration

    def set_desired_config(
        self,
        device_id: str,
        config: dict[str, Any],
        *,
        expected_version: int | None,
        actor: str | None,
    ) -> DeviceView:
        """Make ``config`` the device's desired configuration (``desired_version`` + 1) and
        publish it retained on ``cfg/aios/{device_id}/desired`` (see the module doc when
        the process has no link).

        ``expected_version``: the ``desired_version`` the editor read (not the record's
        ``version``, which heartbeats move); ``None``: on top of the current one.

        Raises:
            NotFound: no such device.
            Conflict: the desired version is no longer ``expected_version``.
            InvalidRequest: ``config`` is not JSON-serialisable or larger than 128 KiB.
        """
        try:
            size = len(json.dumps(config, allow_nan=False).encode())
        except (TypeError, ValueError) as err:
            raise InvalidRequest(f"config must be a JSON object: {err}") from err
        if size > MAX_PAYLOAD_BYTES - 1024:
            raise InvalidRequest(
                f"config is {size} bytes; at most {MAX_PAYLOAD_BYTES - 1024} fit in one "
                "MQTT message (AWS IoT Core's 128 KB limit)"
            )
        for _ in range(_RETRIES):
            current = self._require(device_id)
            if expected_version is not None and current.desired_version != expected_version:
                raise Conflict(
                    f"device {device_id!r} desired config is at version "
                    f"{current.desired_version}, not {expected_version}; reload it"
                )
            now = self._now()
            new = current.model_copy(
                update={
                    "desired_config": config,
                    "desired_version": current.desired_version + 1,
                    "updated_at": now,
                }
            )
            try:
                stored = self.store.devices.update(new, current.version)
            except Conflict:
                continue
            break
        else:
            raise Conflict(f"device {device_id!r} kept changing; try again")
        published = self.publish_desired_config(stored)
        self._event(
            device_id,
            "config.desired",
            f"desired configuration version {stored.desired_version}",
            data={"actor": actor, "version": stored.desired_version, "published": published},
        )
        return self.view(stored)

    def publish_desired_config(self, device: Device) -> bool:
        """Publish the device's desired configuration (retained); False without a link.

        A failed publish is logged, not raised: the desired state is stored and is
        published again on the next change or by :meth:`publish_desired_config`.
        """
        link = self.services.link
        if link is None or device.desired_version < 1:
            return False
        message = DesiredConfig(
            message_id=f"cfg_{device.id}_{device.desired_version}",
            time=self._now(),
            device_id=device.id,
            version=device.desired_version,
            config=device.desired_config,
        )
        try:
            link.publish(
                topic(TopicKind.DESIRED_CONFIG, device.id),
                message.model_dump(mode="json"),
                retain=True,
            )
        except Exception as err:
            log.warning(
                "config: could not publish version %d to %s: %s",
                device.desired_version,
                device.id,
                err,
            )
            return False
        return True

    # ------------------------------------------------------------------ ingestion

    def allow_pending(self) -> bool:
        """Whether unknown devices that publish are registered as pending."""
        if self.services.settings.allow_pending_devices:
            return True
        value = self.store.settings.get(FLEET_SETTINGS_KEY)
        return isinstance(value, dict) and value.get("allow_pending") is True

    def _register_pending(self, device: Device) -> Device:
        try:
            stored = self.store.devices.create(device)
        except Conflict:
            return self._require(device.id)
        log.info("fleet: registered unknown device %s as pending", device.id)
        self._event(
            device.id,
            "device.registered",
            "registered as pending by its first message",
            severity="warning",
            data={"actor": None, "kind": device.kind.value, "pending": True},
        )
        return stored

    def resolve_publisher(
        self, device_id: str, about: str | None, *, kind: DeviceKind | None = None
    ) -> tuple[Device, Device]:
        """Return ``(publisher, subject)`` of a message on ``device_id``'s topic that is
        ``about`` a device (``None``: the publisher itself). ``kind``: the subject's kind,
        should it be registered as pending (a pending publisher of a child is a connector).

        Raises:
            MessageRefused: unknown device (pending not allowed) or not a child.
        """
        publisher = self.store.devices.get(device_id)
        if publisher is None:
            if not self.allow_pending():
                raise MessageRefused(
                    "unknown_device",
                    f"device {device_id!r} is not registered (register it, or allow "
                    "pending devices)",
                )
            now = self._now()
            publisher = self._register_pending(
                Device(
                    id=device_id,
                    name=device_id,
                    kind=(kind if about in (None, device_id) else None) or DeviceKind.CONNECTOR,
                    pending=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        if about is None or about == device_id:
            return publisher, publisher
        child = self.store.devices.get(about)
        if child is None:
            if not (self.allow_pending() and publisher.kind is DeviceKind.CONNECTOR):
                raise MessageRefused(
                    "unknown_device",
                    f"device {about!r} (published by {device_id!r}) is not registered",
                )
            now = self._now()
            child = self._register_pending(
                Device(
                    id=about,
                    name=about,
                    kind=kind or DeviceKind.SENSOR,
                    parent_id=device_id,
                    pending=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        if child.parent_id != device_id:
            raise MessageRefused(
                "not_a_child",
                f"device {about!r} is not a child of {device_id!r} (its parent_id is "
                f"{child.parent_id!r}); a connector may only publish for its children",
            )
        return publisher, child

    def _check_times(self, msg: Message) -> None:
        try:
            check_times(msg, self._now())
        except ValueError as err:
            raise InvalidRequest(str(err)) from err

    def _mark_contact(self, device: Device, now: datetime) -> None:
        """Remember ``now`` as the start of contact if ``device`` (as read before this
        message) was never seen or silent for its warning delay (see :data:`CONTACT_KEY`)."""
        limits = self.thresholds.for_kind(device.kind)
        if (
            device.last_seen is None
            or (now - device.last_seen).total_seconds() >= limits.warning_after_seconds
        ):
            self.store.settings.put(
                CONTACT_KEY.format(device_id=device.id), {"since": now.isoformat()}
            )

    def _seen(self, publisher: Device, subject: Device, now: datetime) -> None:
        self._mark_contact(subject, now)
        if publisher.id != subject.id:
            self._mark_contact(publisher, now)
            self.store.devices.touch(publisher.id, now)

    def record_heartbeat(self, device_id: str, msg: Heartbeat) -> Device:
        """Store a heartbeat received on ``device_id``'s topic: ``last_seen`` becomes the
        time of receipt (``services.clock()``, not the device's clock, which may drift),
        ``health`` the message's metrics, plus ``config_version`` when sent and
        :data:`~aios.messages.HEARTBEAT_TIME_KEY` (the message's own ``time``, what
        :meth:`metric_value` compares with telemetry sample times).

        Raises:
            MessageRefused: see :meth:`resolve_publisher`.
            InvalidRequest: a time beyond :data:`~aios.messages.MAX_CLOCK_SKEW`.
        """
        self._check_times(msg)
        health: dict[str, Any] = dict(msg.health.as_dict())
        if msg.config_version is not None:
            health["config_version"] = msg.config_version
        health[HEARTBEAT_TIME_KEY] = msg.time.isoformat()
        publisher, subject = self.resolve_publisher(device_id, msg.device_id, kind=msg.kind)
        now = self._now()
        stored = self.store.devices.touch(
            subject.id, now, health=health, firmware_version=msg.firmware_version
        )
        self._seen(publisher, subject, now)
        self._publish_feed(
            "devices",
            {
                "type": "device.heartbeat",
                "device_id": subject.id,
                "time": now.isoformat(),
                "health": health,
            },
        )
        return stored

    def record_telemetry(self, device_id: str, msg: Telemetry) -> int:
        """Store the samples (time: the sample's, else the message's); return how many.
        Marks the device seen. Every sample is checked before any is written.

        Raises:
            MessageRefused: see :meth:`resolve_publisher`.
            InvalidRequest: a time beyond :data:`~aios.messages.MAX_CLOCK_SKEW`.
        """
        self._check_times(msg)
        subject_id = msg.device_id or device_id
        try:
            points = [
                TelemetryPoint(
                    device_id=subject_id,
                    metric=s.metric,
                    time=s.time or msg.time,
                    value=s.value,
                    unit=s.unit,
                )
                for s in msg.samples
            ]
        except ValidationError as err:
            raise InvalidRequest(f"samples: {describe_errors(err)}") from err
        publisher, subject = self.resolve_publisher(device_id, msg.device_id)
        now = self._now()
        self.store.telemetry.append(points)
        self.store.devices.touch(subject.id, now)
        self._seen(publisher, subject, now)
        return len(points)

    def record_events(self, device_id: str, msg: DeviceEventsMessage) -> builtins.list[DeviceEvent]:
        """Store the events of a message and publish them on the ``devices`` feed.

        Once stored, the items are given to every hook of ``services.device_event_hooks``
        (pipelines running at the edge take their events from there).

        A ``config.reported`` event (data: :class:`~aios.messages.ConfigReport`) moves the
        device's reported configuration and is stored as ``config.acknowledged`` (or
        ``config.refused`` when the device did not accept it); a report of a version never
        desired, or older than the one reported, changes nothing and is stored as
        ``config.report_ignored``. Event ids come from the item's ``id``, else from the
        message id and position, so a redelivered message stores nothing new.

        All or nothing as far as the message goes: every report is parsed and every event
        record built (and so checked as the store will check it) before the first write;
        a message with one bad item writes nothing.

        Raises:
            MessageRefused: see :meth:`resolve_publisher`.
            InvalidRequest: a ``config.reported`` event's data is not a ConfigReport, an
                event that could not be stored, a time beyond the allowed clock skew.
        """
        self._check_times(msg)
        subject_id = msg.device_id or device_id
        reports: dict[int, ConfigReport] = {}
        drafts: dict[int, DeviceEvent] = {}
        for i, item in enumerate(msg.events):
            key = item.id if item.id is not None else f"{msg.message_id}#{i}"
            event_id = f"dev_{_digest(subject_id, key)}"
            try:
                if item.type == CONFIG_REPORTED:
                    reports[i] = ConfigReport.model_validate(item.data)
                else:
                    drafts[i] = DeviceEvent(
                        id=event_id,
                        device_id=subject_id,
                        time=item.time or msg.time,
                        type=item.type,
                        severity=item.severity,
                        message=item.message,
                        data=item.data,
                    )
            except ValidationError as err:
                what = "data is not a config report" if item.type == CONFIG_REPORTED else "event"
                raise InvalidRequest(f"events.{i}.{what}: {describe_errors(err)}") from err
        publisher, subject = self.resolve_publisher(device_id, msg.device_id)
        now = self._now()
        stored: builtins.list[DeviceEvent] = []
        for i, item in enumerate(msg.events):
            if i in reports:
                key = item.id if item.id is not None else f"{msg.message_id}#{i}"
                event_id = f"dev_{_digest(subject.id, key)}"
                event = self._apply_config_report(
                    subject.id, reports[i], event_id, item.time or msg.time
                )
            else:
                event = drafts[i]
                self.store.device_events.append(event)
            stored.append(event)
            self._publish_feed(
                "devices",
                {"type": "device.event", "event": event.model_dump(mode="json")},
            )
        self.store.devices.touch(subject.id, now)
        self._seen(publisher, subject, now)
        for hook in self.services.device_event_hooks:
            try:
                hook(subject.id, list(msg.events))
            except Exception:
                log.exception("a device event hook failed on events of %s", subject.id)
        return stored

    def _apply_config_report(
        self, device_id: str, report: ConfigReport, event_id: str, at: datetime
    ) -> DeviceEvent:
        data: dict[str, Any] = {"version": report.version}
        if not report.accepted:
            data["error"] = report.error
            return self._event(
                device_id,
                "config.refused",
                f"device refused configuration version {report.version}: {report.error or ''}",
                severity="warning",
                data=data,
                event_id=event_id,
                at=at,
            )
        for _ in range(_RETRIES):
            current = self._require(device_id)
            problem = None
            if report.version > current.desired_version:
                problem = f"version {report.version} was never desired"
            elif report.version < current.reported_version:
                problem = f"version {current.reported_version} is reported already"
            elif report.config is None and report.version != current.desired_version:
                problem = "an older version was reported without its config"
            if problem is not None:
                return self._event(
                    device_id,
                    "config.report_ignored",
                    f"configuration report ignored: {problem}",
                    severity="warning",
                    data=data,
                    event_id=event_id,
                    at=at,
                )
            config = report.config if report.config is not None else current.desired_config
            new = current.model_copy(
                update={
                    "reported_config": config,
                    "reported_version": report.version,
                    "updated_at": self._now(),
                }
            )
            try:
                self.store.devices.update(new, current.version)
            except Conflict:
                continue
            in_sync = report.version == current.desired_version
            data["in_sync"] = in_sync
            return self._event(
                device_id,
                "config.acknowledged",
                f"device runs configuration version {report.version}",
                data=data,
                event_id=event_id,
                at=at,
            )
        raise Conflict(f"device {device_id!r} kept changing; the report will be redelivered")

    # ------------------------------------------------------------------ commands

    def send_command(
        self,
        device_id: str,
        name: str,
        params: dict[str, Any],
        *,
        actor: str | None,
        timeout_seconds: float | None = None,
    ) -> Command:
        """Store a pending command and publish it on ``cmd/aios/{device_id}/req`` (for a
        device behind a connector: the connector's topic, target id in the payload).

        ``timeout_seconds``: how long the device has to answer (default: the setting
        ``command_timeout_seconds``); after it the command is ``timed_out``.

        Raises:
            NotFound: no such device.
            InvalidRequest: bad name, params or timeout.
            DeviceUnreachable: no device link in this process, or the publish failed (the
                command is then stored as failed).
        """
        device = self._require(device_id)
        link = self.services.link
        if link is None:
            raise DeviceUnreachable(
                "this process has no connection to the device broker; commands cannot be sent"
            )
        timeout = (
            self.services.settings.command_timeout_seconds
            if timeout_seconds is None
            else timeout_seconds
        )
        if not 0 < timeout <= MAX_COMMAND_TIMEOUT_SECONDS:
            raise InvalidRequest(
                f"timeout_seconds must be > 0 and ≤ {MAX_COMMAND_TIMEOUT_SECONDS:g}, got {timeout}"
            )
        now = self._now()
        try:
            command = Command(
                device_id=device_id,
                name=name,
                params=params,
                requested_by=actor,
                requested_at=now,
                deadline=now + timedelta(seconds=timeout),
            )
            request = CommandRequest(
                message_id=command.request_id,
                time=now,
                request_id=command.request_id,
                device_id=device_id,
                name=name,
                params=params,
                deadline=command.deadline,
            )
            payload = request.model_dump(mode="json")
            size = len(json.dumps(payload, allow_nan=False).encode())
        except (ValidationError, TypeError, ValueError) as err:
            raise InvalidRequest(f"invalid command: {err}") from err
        if size > MAX_PAYLOAD_BYTES:
            raise InvalidRequest(f"command is {size} bytes; at most {MAX_PAYLOAD_BYTES}")
        command = self.store.commands.create(command)
        target = device.parent_id or device_id
        try:
            link.publish(topic(TopicKind.COMMAND_REQUEST, target), payload)
        except Exception as err:
            self.store.commands.complete(
                command.request_id, CommandStatus.FAILED, at=self._now(), error=f"not sent: {err}"
            )
            raise DeviceUnreachable(f"could not publish the command to {target!r}: {err}") from err
        self._event(
            device_id,
            "command.sent",
            f"{name} sent" + (f" by {actor}" if actor else ""),
            data={"request_id": command.request_id, "name": name, "actor": actor, "via": target},
        )
        return command

    def record_command_response(self, device_id: str, msg: CommandResponse) -> Command | None:
        """Record the answer to a request, received on ``device_id``'s response topic
        (the device itself or its connector). Returns the completed command, or ``None``
        for a late answer (after the deadline, or once the command is no longer pending:
        kept out and logged; a pending command past its deadline becomes ``timed_out``).

        Raises:
            MessageRefused: unknown request id (``unknown_command``), or the publisher is
                neither the target nor its parent (``wrong_device``).
            InvalidRequest: a time beyond :data:`~aios.messages.MAX_CLOCK_SKEW`.
        """
        self._check_times(msg)
        command = self.store.commands.get(msg.request_id)
        if command is None:
            raise MessageRefused("unknown_command", "no command has this request_id")
        if command.device_id != device_id:
            target = self.store.devices.get(command.device_id)
            if target is None or target.parent_id != device_id:
                raise MessageRefused(
                    "wrong_device",
                    f"command {msg.request_id!r} was sent to {command.device_id!r}, "
                    f"not to {device_id!r}",
                )
        now = self._now()
        if command.status is not CommandStatus.PENDING:
            log.info(
                "command %s: late response from %s ignored (already %s)",
                msg.request_id,
                device_id,
                command.status.value,
            )
            return None
        if now > command.deadline:
            log.info(
                "command %s: response from %s arrived %.1f s after its deadline; ignored",
                msg.request_id,
                device_id,
                (now - command.deadline).total_seconds(),
            )
            self._time_out(command, now)
            return None
        status = CommandStatus.SUCCEEDED if msg.ok else CommandStatus.FAILED
        try:
            done = self.store.commands.complete(
                command.request_id, status, at=now, response=msg.result, error=msg.error
            )
        except Conflict:
            log.info("command %s: late response from %s ignored", msg.request_id, device_id)
            return None
        self._event(
            command.device_id,
            f"command.{status.value}",
            f"{command.name} {status.value}" + (f": {msg.error}" if msg.error else ""),
            severity="info" if msg.ok else "warning",
            data={"request_id": command.request_id, "name": command.name},
        )
        self._publish_feed(
            "devices", {"type": "device.command", "command": done.model_dump(mode="json")}
        )
        return done

    def _time_out(self, command: Command, now: datetime) -> bool:
        try:
            done = self.store.commands.complete(
                command.request_id,
                CommandStatus.TIMED_OUT,
                at=now,
                error="no response before the deadline",
            )
        except (Conflict, NotFound):
            return False
        self._event(
            command.device_id,
            "command.timed_out",
            f"{command.name}: no response before the deadline",
            severity="warning",
            data={"request_id": command.request_id, "name": command.name},
        )
        self._publish_feed(
            "devices", {"type": "device.command", "command": done.model_dump(mode="json")}
        )
        return True

    def expire_commands(self) -> int:
        """Mark pending commands past their deadline ``timed_out``; return how many."""
        now = self._now()
        expired = 0
        while True:
            batch = self.store.commands.list_pending(limit=_PAGE)
            due = [c for c in batch if c.deadline <= now]
            for command in due:
                expired += self._time_out(command, now)
            if len(due) < len(batch) or len(batch) < _PAGE or not due:
                return expired

    # ------------------------------------------------------------------ alert rules

    def put_rule(self, rule: AlertRule, actor: str | None = None) -> AlertRule:
        """Create or replace an alert rule.

        Raises:
            NotFound: the rule's device does not exist.
            InvalidRequest: a metric rule without metric or threshold; unknown severity.
        """
        self._require(rule.device_id)
        if rule.kind is not AlertRuleKind.OFFLINE and (
            rule.metric is None or rule.threshold is None
        ):
            raise InvalidRequest(f"a {rule.kind.value} rule needs 'metric' and 'threshold'")
        if rule.severity not in _SEVERITIES:
            raise InvalidRequest(f"severity must be one of {', '.join(_SEVERITIES)}")
        stored = self.store.alerts.put_rule(rule)
        self._event(
            rule.device_id,
            "alert.rule_saved",
            f"alert rule {rule.id} saved" + (f" by {actor}" if actor else ""),
            data={"rule": rule.model_dump(mode="json"), "actor": actor},
        )
        return stored

    def list_rules(self, device_id: str | None = None) -> builtins.list[AlertRule]:
        """The rules of a device, or all rules; by id."""
        return self.store.alerts.list_rules(device_id)

    def delete_rule(self, rule_id: str, actor: str | None = None) -> bool:
        """Delete a rule and clear its active alert; False if there was no such rule."""
        rule = self.store.alerts.get_rule(rule_id)
        if rule is None:
            return False
        deleted = self.store.alerts.delete_rule(rule_id)
        cleared = self.store.alerts.clear(rule.device_id, rule_id, at=self._now())
        if cleared is not None:
            self._announce_alert("alert.cleared", cleared)
        self.store.settings.put(CONDITION_KEY.format(rule_id=rule_id), None)
        self._event(
            rule.device_id,
            "alert.rule_deleted",
            f"alert rule {rule_id} deleted" + (f" by {actor}" if actor else ""),
            data={"rule_id": rule_id, "actor": actor},
        )
        return deleted

    def _announce_alert(self, type_: str, alert: Alert) -> None:
        self._publish_feed("notifications", {"type": type_, "alert": alert.model_dump(mode="json")})

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> EvaluationResult:
        """Derive every device's status; record and publish transitions once; raise and
        clear alerts; time out overdue commands. Safe to run as often as wanted.

        A device (or rule) whose evaluation fails, whatever the exception, is logged (its
        id and the exception type, no content) and skipped: the others are evaluated.
        ``devices`` counts every device listed, skipped ones included."""
        now = self._now()
        devices = {d.id: d for d in self._all_devices()}
        infos: dict[str, StatusInfo] = {}
        transitions: builtins.list[StatusTransition] = []
        for device in devices.values():
            try:
                info = derive_status(device, now, self.thresholds)
                transition = self._transition(device, info, now)
            except Exception as err:  # one bad device must not stop the fleet's evaluation
                log.warning("fleet: device %s not evaluated: %s", device.id, _error_type(err))
                continue
            infos[device.id] = info
            if transition is not None:
                transitions.append(transition)
        raised, cleared = self._evaluate_rules(devices, infos, now)
        try:
            timed_out = self.expire_commands()
        except Exception as err:
            log.warning("fleet: commands not expired: %s", _error_type(err))
            timed_out = 0
        return EvaluationResult(
            devices=len(devices),
            transitions=transitions,
            alerts_raised=raised,
            alerts_cleared=cleared,
            commands_timed_out=timed_out,
        )

    def _transition(
        self, device: Device, info: StatusInfo, now: datetime
    ) -> StatusTransition | None:
        key = STATUS_KEY.format(device_id=device.id)
        state = self.store.settings.get(key)
        previous = DeviceStatus.OFFLINE
        if isinstance(state, dict) and state.get("status") in DeviceStatus.__members__.values():
            previous = DeviceStatus(state["status"])
        if previous is info.status:
            if state is None:
                self.store.settings.put(
                    key, {"status": info.status.value, "since": now.isoformat()}
                )
            return None
        since = now
        if info.status is DeviceStatus.ONLINE:
            # Back from silence: online since the first message after it, if that came
            # after the previous status began (else a health warning just ended: now).
            contact = self._contact_since(device.id)
            before = _parse_time(state.get("since")) if isinstance(state, dict) else None
            if contact is not None and contact <= now and (before is None or contact > before):
                since = contact
        last_seen = device.last_seen.isoformat() if device.last_seen else "never"
        event_id = f"dev_{_digest(device.id, previous.value, info.status.value, last_seen)}"
        severity = {"online": "info", "warning": "warning", "offline": "critical"}[
            info.status.value
        ]
        self._event(
            device.id,
            f"status.{info.status.value}",
            "; ".join(info.reasons) or f"{info.status.value}",
            severity=severity,
            data={"previous": previous.value, "reasons": info.reasons},
            event_id=event_id,
            at=now,
        )
        self.store.settings.put(key, {"status": info.status.value, "since": since.isoformat()})
        self._publish_feed(
            "devices",
            {
                "type": "device.status",
                "device_id": device.id,
                "status": info.status.value,
                "previous": previous.value,
                "reasons": info.reasons,
                "time": now.isoformat(),
            },
        )
        return StatusTransition(device.id, previous, info.status, info.reasons)

    def _active_alerts(self) -> set[tuple[str, str]]:
        active: set[tuple[str, str]] = set()
        cursor: str | None = None
        while True:
            page = self.store.alerts.list(state=AlertState.ACTIVE, limit=_PAGE, cursor=cursor)
            active.update((a.device_id, a.rule_id) for a in page.items)
            cursor = page.next_cursor
            if cursor is None:
                return active

    def metric_value(self, device: Device, metric: str) -> float | None:
        """The most recent value of ``metric`` reported by the device, from its last
        heartbeat's health or its newest telemetry sample; ``None`` if neither has it.

        "Most recent" compares the heartbeat's own ``time`` (kept in ``health`` under
        :data:`~aios.messages.HEARTBEAT_TIME_KEY`) with the sample's ``time`` — both set
        by the same sender's clock (the device, or for a child its connector), so a clock
        that lags or leads shifts both alike and they stay comparable. The platform's
        receive time (``last_seen``) is not used: against device-clock sample times it
        would make every heartbeat of a device whose clock lags look newer than all its
        telemetry. Times further ahead than :data:`~aios.messages.MAX_CLOCK_SKEW` are
        refused at ingestion, so a wild timestamp cannot stay "latest". On a tie the
        sample wins (a dedicated reading); health stored without a time (before it was
        kept) loses to any sample.
        """
        health_value = _number(device.health.get(metric))
        point = self.store.telemetry.latest(device.id).get(metric)
        if point is None or not math.isfinite(point.value):
            return health_value
        if health_value is None:
            return point.value
        health_time = _parse_time(device.health.get(HEARTBEAT_TIME_KEY))
        if health_time is not None and health_time > point.time:
            return health_value
        return point.value

    def _held_since(self, rule: AlertRule, holds: bool, now: datetime) -> datetime | None:
        key = CONDITION_KEY.format(rule_id=rule.id)
        state = self.store.settings.get(key)
        since = datetime.fromisoformat(state["since"]) if isinstance(state, dict) else None
        if holds and since is None:
            since = now
            self.store.settings.put(key, {"since": now.isoformat()})
        elif not holds and since is not None:
            since = None
            self.store.settings.put(key, None)
        return since

    def _evaluate_rules(
        self, devices: dict[str, Device], infos: dict[str, StatusInfo], now: datetime
    ) -> tuple[builtins.list[Alert], builtins.list[Alert]]:
        raised: builtins.list[Alert] = []
        cleared: builtins.list[Alert] = []
        active = self._active_alerts()
        for rule in self.store.alerts.list_rules():
            device = devices.get(rule.device_id)
            info = infos.get(rule.device_id)
            if device is None or info is None:
                continue
            try:
                up, down = self._evaluate_rule(rule, device, info, active, now)
            except Exception as err:  # one bad rule or device must not stop the others
                log.warning(
                    "fleet: rule %s of device %s not evaluated: %s",
                    rule.id,
                    device.id,
                    _error_type(err),
                )
                continue
            if up is not None:
                raised.append(up)
            if down is not None:
                cleared.append(down)
        return raised, cleared

    def _evaluate_rule(
        self,
        rule: AlertRule,
        device: Device,
        info: StatusInfo,
        active: set[tuple[str, str]],
        now: datetime,
    ) -> tuple[Alert | None, Alert | None]:
        """Evaluate one rule; return the alert it raised and the one it cleared."""
        up: Alert | None = None
        down: Alert | None = None
        value: float | None = None
        message = ""
        if not rule.enabled:
            holds, due = False, False
        elif rule.kind is AlertRuleKind.OFFLINE:
            holds = info.status is DeviceStatus.OFFLINE
            since = info.since or now
            due = holds and now - since >= timedelta(minutes=rule.for_minutes)
            message = f"{device.name} ({device.id}) offline: {'; '.join(info.reasons)}"
        else:
            if info.status is DeviceStatus.OFFLINE:
                return None, None  # its metrics are stale: keep the alert as it is
            assert rule.metric is not None and rule.threshold is not None
            value = self.metric_value(device, rule.metric)
            if value is None:
                return None, None
            above = rule.kind is AlertRuleKind.METRIC_ABOVE
            holds = value > rule.threshold if above else value < rule.threshold
            held = self._held_since(rule, holds, now)
            due = held is not None and now - held >= timedelta(minutes=rule.for_minutes)
            message = (
                f"{device.name} ({device.id}): {rule.metric} {value:g} "
                f"{'above' if above else 'below'} {rule.threshold:g}"
            )
        pair = (device.id, rule.id)
        if due and pair not in active:
            alert = Alert(
                device_id=device.id,
                rule_id=rule.id,
                kind=rule.kind,
                severity=rule.severity,
                message=message,
                raised_at=now,
                value=value,
            )
            if self.store.alerts.raise_alert(alert):
                up = alert
                self._event(
                    device.id,
                    "alert.raised",
                    message,
                    severity=rule.severity,
                    data={"alert_id": alert.id, "rule_id": rule.id},
                    event_id=f"dev_{_digest(alert.id)}",
                    at=now,
                )
                self._announce_alert("alert.raised", alert)
        elif not holds and pair in active:
            done = self.store.alerts.clear(device.id, rule.id, at=now)
            if done is not None:
                down = done
                self._event(
                    device.id,
                    "alert.cleared",
                    f"cleared: {done.message}",
                    data={"alert_id": done.id, "rule_id": rule.id},
                    event_id=f"dev_{_digest(done.id, 'cleared')}",
                    at=now,
                )
                self._announce_alert("alert.cleared", done)
        return up, down
