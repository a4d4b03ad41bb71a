"""``/api/v1/devices``: the fleet — devices, their history, telemetry, desired
configuration, commands and alert rules; and ``/api/v1/analytics/devices``."""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BeforeValidator

from aios.api.errors import ConflictApi, NotFoundApi, Unprocessable
from aios.api.models import (
    AlertRuleIn,
    CommandIn,
    DesiredConfigIn,
    DeviceAnalytics,
    DeviceCreate,
    DeviceUpdate,
    PageOut,
)
from aios.api.permissions import API_PREFIX
from aios.api.routes._common import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    after_rule,
    as_utc,
    listed,
    require,
    rule_cursor,
)
from aios.domain import (
    AlertRule,
    AlertState,
    Command,
    Device,
    DeviceEvent,
    DeviceKind,
    DeviceStatus,
    TelemetryPoint,
)
from aios.fleet.service import DeviceView, FleetService
from aios.store.port import BoundingBox, Conflict, DeviceQuery

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

DeviceId = Annotated[str, Path(max_length=128, description="The device's id.")]
Since = Annotated[datetime | None, Query(description="From this time (ISO 8601; naive = UTC).")]
Until = Annotated[datetime | None, Query(description="Before this time (ISO 8601; naive = UTC).")]
Text = Annotated[str | None, Query(max_length=200)]


def _finite(value: object) -> object:
    """Refuse ``nan``/``inf`` before range checks do (they would say "less than 90")."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return value  # not a number at all: the float validation says so
    if not math.isfinite(number):
        raise ValueError("must be a finite number of degrees, not nan or infinity")
    return value


Latitude = Annotated[
    float | None,
    BeforeValidator(_finite),
    Query(ge=-90, le=90, description="Degrees, WGS 84."),
]
Longitude = Annotated[
    float | None,
    BeforeValidator(_finite),
    Query(ge=-180, le=180, description="Degrees, WGS 84."),
]


def _box(
    min_lat: float | None, min_lon: float | None, max_lat: float | None, max_lon: float | None
) -> BoundingBox | None:
    values = {"min_lat": min_lat, "min_lon": min_lon, "max_lat": max_lat, "max_lon": max_lon}
    given = [k for k, v in values.items() if v is not None]
    if not given:
        return None
    missing = [k for k in values if k not in given]
    if missing:
        raise Unprocessable.field(
            f"query.{missing[0]}", "a location box needs min_lat, min_lon, max_lat and max_lon"
        )
    assert min_lat is not None and min_lon is not None
    assert max_lat is not None and max_lon is not None
    if min_lat > max_lat:
        raise Unprocessable.field("query.min_lat", "must not exceed max_lat")
    if min_lon > max_lon:
        raise Unprocessable.field("query.min_lon", "must not exceed max_lon (no antimeridian wrap)")
    return BoundingBox(min_lat, min_lon, max_lat, max_lon)


def register(app: ApiResolver) -> None:
    """Add the device routes."""
    store = app.services.store
    fleet = FleetService(app.services)

    def get_device(device_id: str) -> Device:
        return require(store.devices.get(device_id), f"device '{device_id}'")

    @app.get(f"{API_PREFIX}/devices", tags=["devices"], summary="List devices (by id)")
    def list_devices(
        *,
        search: Annotated[
            str | None, Query(max_length=200, description="Substring of the name or id.")
        ] = None,
        kind: Annotated[DeviceKind | None, Query()] = None,
        status: Annotated[
            DeviceStatus | None,
            Query(description="Derived status; a page may then hold fewer items."),
        ] = None,
        site: Text = None,
        tag: Text = None,
        parent_id: Text = None,
        pending: Annotated[bool | None, Query()] = None,
        min_lat: Latitude = None,
        min_lon: Longitude = None,
        max_lat: Latitude = None,
        max_lon: Longitude = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> PageOut[DeviceView]:
        query = DeviceQuery(
            search=search,
            kind=kind,
            site=site,
            tag=tag,
            parent_id=parent_id,
            box=_box(min_lat, min_lon, max_lat, max_lon),
            pending=pending,
        )
        page = listed(lambda: fleet.list(query, status=status, limit=limit, cursor=cursor), cursor)
        return PageOut[DeviceView](items=page.items, next_cursor=page.next_cursor)

    @app.post(
        f"{API_PREFIX}/devices", tags=["devices"], summary="Register a device", status_code=201
    )
    def create_device(body: DeviceCreate) -> DeviceView:
        now = app.services.clock()
        device = Device(**body.model_dump(), created_at=now, updated_at=now)
        try:
            view = fleet.register(device, actor=app.principal().username)
        except Conflict:
            raise ConflictApi(
                f"a device with id '{body.id}' exists; choose another id", code="device_exists"
            ) from None
        app.audit_target(view.id, name=view.name, kind=view.kind.value)
        return view

    @app.get(f"{API_PREFIX}/devices/<device_id>", tags=["devices"], summary="Get a device")
    def read_device(device_id: DeviceId) -> DeviceView:
        return fleet.view(get_device(device_id))

    @app.put(f"{API_PREFIX}/devices/<device_id>", tags=["devices"], summary="Change a device")
    def update_device(device_id: DeviceId, body: DeviceUpdate) -> DeviceView:
        changes = body.model_dump(exclude_unset=True, exclude={"version"})
        if "name" in changes and changes["name"] is None:
            raise Unprocessable.field("body.name", "a device needs a name")
        if "tags" in changes and changes["tags"] is None:
            changes["tags"] = []
        if "pending" in changes and changes["pending"] is None:
            del changes["pending"]
        get_device(device_id)
        view = fleet.update(
            device_id, changes, expected_version=body.version, actor=app.principal().username
        )
        app.audit_target(device_id, fields=sorted(changes))
        return view

    @app.delete(
        f"{API_PREFIX}/devices/<device_id>",
        tags=["devices"],
        summary="Delete a device (its history, telemetry and rules are kept)",
        status_code=204,
    )
    def delete_device(device_id: DeviceId) -> Response[None]:
        if not fleet.delete(device_id, actor=app.principal().username):
            raise NotFoundApi(f"device '{device_id}' does not exist")
        return Response(status_code=204, body=None)

    @app.post(
        f"{API_PREFIX}/devices/<device_id>/command",
        tags=["devices"],
        summary="Send a command; poll its outcome at …/commands/{request_id}",
        status_code=202,
    )
    def send_command(device_id: DeviceId, body: CommandIn) -> Command:
        get_device(device_id)
        command = fleet.send_command(
            device_id,
            body.name,
            body.params,
            actor=app.principal().username,
            timeout_seconds=body.timeout_seconds,
        )
        app.audit_target(device_id, command_request_id=command.request_id, command=command.name)
        return command

    @app.get(
        f"{API_PREFIX}/devices/<device_id>/commands",
        tags=["devices"],
        summary="The device's commands (newest first)",
    )
    def list_commands(
        *, device_id: DeviceId, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> PageOut[Command]:
        get_device(device_id)
        page = listed(lambda: store.commands.list(device_id, limit=limit, cursor=cursor), cursor)
        return PageOut[Command](items=page.items, next_cursor=page.next_cursor)

    @app.get(
        f"{API_PREFIX}/devices/<device_id>/commands/<request_id>",
        tags=["devices"],
        summary="One command and its outcome",
    )
    def read_command(
        *, device_id: DeviceId, request_id: Annotated[str, Path(max_length=128)]
    ) -> Command:
        command = store.commands.get(request_id)
        if command is None or command.device_id != device_id:
            raise NotFoundApi(f"command '{request_id}' of device '{device_id}' does not exist")
        return command

    @app.get(
        f"{API_PREFIX}/devices/<device_id>/events",
        tags=["devices"],
        summary="The device's history (newest first)",
    )
    def list_device_events(
        *,
        device_id: DeviceId,
        since: Since = None,
        until: Until = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> PageOut[DeviceEvent]:
        get_device(device_id)
        start, end = as_utc(since, "query.since"), as_utc(until, "query.until")
        page = listed(
            lambda: store.device_events.list(
                device_id, since=start, until=end, limit=limit, cursor=cursor
            ),
            cursor,
        )
        return PageOut[DeviceEvent](items=page.items, next_cursor=page.next_cursor)

    @app.get(
        f"{API_PREFIX}/devices/<device_id>/telemetry",
        tags=["devices"],
        summary="The device's telemetry samples (oldest first)",
    )
    def device_telemetry(
        *,
        device_id: DeviceId,
        metric: Annotated[str | None, Query(max_length=128)] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> PageOut[TelemetryPoint]:
        get_device(device_id)
        start, end = as_utc(since, "query.since"), as_utc(until, "query.until")
        page = listed(
            lambda: store.telemetry.query(
                device_id, metric=metric, since=start, until=end, limit=limit, cursor=cursor
            ),
            cursor,
        )
        return PageOut[TelemetryPoint](items=page.items, next_cursor=page.next_cursor)

    @app.put(
        f"{API_PREFIX}/devices/<device_id>/config",
        tags=["devices"],
        summary="Set the desired configuration (published retained to the device)",
    )
    def set_config(device_id: DeviceId, body: DesiredConfigIn) -> DeviceView:
        get_device(device_id)
        view = fleet.set_desired_config(
            device_id,
            body.config,
            expected_version=body.expected_version,
            actor=app.principal().username,
        )
        app.audit_target(device_id, desired_version=view.desired_version)
        return view

    @app.get(
        f"{API_PREFIX}/devices/<device_id>/alert-rules",
        tags=["alerts"],
        summary="The device's alert rules (by id)",
    )
    def list_rules(
        *, device_id: DeviceId, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> PageOut[AlertRule]:
        get_device(device_id)
        rules = fleet.list_rules(device_id)
        if cursor is not None:
            after = after_rule(cursor)
            rules = [r for r in rules if r.id > after]
        items = rules[:limit]
        next_cursor = rule_cursor(items[-1].id) if len(rules) > limit else None
        return PageOut[AlertRule](items=items, next_cursor=next_cursor)

    @app.post(
        f"{API_PREFIX}/devices/<device_id>/alert-rules",
        tags=["alerts"],
        summary="Add an alert rule to the device",
        status_code=201,
    )
    def create_rule(device_id: DeviceId, body: AlertRuleIn) -> AlertRule:
        get_device(device_id)
        rule = fleet.put_rule(
            AlertRule(device_id=device_id, **body.model_dump()), actor=app.principal().username
        )
        app.audit_target(device_id, rule_id=rule.id, kind=rule.kind.value)
        return rule

    @app.delete(
        f"{API_PREFIX}/alert-rules/<rule_id>",
        tags=["alerts"],
        summary="Delete an alert rule (its active alert is cleared)",
        status_code=204,
    )
    def delete_rule(rule_id: Annotated[str, Path(max_length=128)]) -> Response[None]:
        if not fleet.delete_rule(rule_id, actor=app.principal().username):
            raise NotFoundApi(f"alert rule '{rule_id}' does not exist")
        return Response(status_code=204, body=None)

    @app.get(
        f"{API_PREFIX}/analytics/devices",
        tags=["analytics"],
        summary="Fleet summary: counts by derived status, kind, site; availability",
    )
    def device_analytics() -> DeviceAnalytics:
        summary = fleet.summary()
        active = 0
        alert_cursor: str | None = None
        while True:
            page = store.alerts.list(state=AlertState.ACTIVE, limit=1000, cursor=alert_cursor)
            active += len(page.items)
            if page.next_cursor is None:
                break
            alert_cursor = page.next_cursor
        total = summary.total
        return DeviceAnalytics(
            **summary.model_dump(),
            availability_percent=round(100 * (summary.online + summary.warning) / total, 2)
            if total
            else 0.0,
            online_percent=round(100 * summary.online / total, 2) if total else 0.0,
            active_alerts=active,
        )
