"""Read-mostly routes: pipeline events (and their acknowledgement), alerts and alert rules,
the audit log, the node catalog, settings."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from aios.api.models import PageOut, SiteSettings, SiteSettingsUpdate
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
from aios.domain import Alert, AlertRule, AlertState, AuditEntry, EventRecord
from aios.fleet.service import FLEET_SETTINGS_KEY
from aios.store.port import EventQuery

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

log = logging.getLogger(__name__)

Since = Annotated[datetime | None, Query(description="From this time (ISO 8601; naive = UTC).")]
Until = Annotated[datetime | None, Query(description="Before this time (ISO 8601; naive = UTC).")]
Text = Annotated[str | None, Query(max_length=200)]


def register(app: ApiResolver) -> None:
    """Add the event, alert, audit, catalog and settings routes."""
    store = app.services.store

    @app.get(f"{API_PREFIX}/events", tags=["events"], summary="List pipeline events (newest first)")
    def list_events(
        *,
        pipeline_id: Text = None,
        run_id: Text = None,
        type: Text = None,
        source_id: Text = None,
        severity: Annotated[
            str | None,
            Query(
                max_length=50,
                description="info, warning or critical (events recorded by a dashboard "
                "node carry the dashboard's severity; others are info).",
            ),
        ] = None,
        acknowledged: Annotated[
            bool | None,
            Query(description="true: acknowledged events only; false: unacknowledged only."),
        ] = None,
        since: Since = None,
        until: Until = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> PageOut[EventRecord]:
        query = EventQuery(
            pipeline_id=pipeline_id,
            run_id=run_id,
            type=type,
            source_id=source_id,
            since=as_utc(since, "query.since"),
            until=as_utc(until, "query.until"),
            severity=severity,
            acknowledged=acknowledged,
        )
        page = listed(lambda: store.events.list(query, limit=limit, cursor=cursor), cursor)
        return PageOut[EventRecord](items=page.items, next_cursor=page.next_cursor)

    @app.post(
        f"{API_PREFIX}/events/<event_id>/acknowledge",
        tags=["events"],
        summary="Acknowledge a pipeline event (the first acknowledgement is kept)",
        description="Records who acknowledged the event and when (`acknowledged_by`, "
        "`acknowledged_at`); acknowledging it again changes nothing and answers the event "
        "as first acknowledged. Published on the `notifications` feed as "
        '`{"type": "event.acknowledged", "event": {...}}`.',
    )
    def acknowledge_event(event_id: Annotated[str, Path(max_length=128)]) -> EventRecord:
        require(store.events.get(event_id), f"event '{event_id}'")
        event = store.events.acknowledge(
            event_id, by=app.principal().username, at=app.services.clock()
        )
        try:
            app.services.feed.publish(
                "notifications",
                {"type": "event.acknowledged", "event": event.model_dump(mode="json")},
            )
        except Exception:  # the acknowledgement is stored; a live view misses one message
            log.exception("publishing the acknowledgement of %s failed", event_id)
        return event

    @app.get(
        f"{API_PREFIX}/alert-rules",
        tags=["alerts"],
        summary="Every alert rule of the fleet (by id)",
    )
    def list_all_rules(
        *,
        device_id: Text = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> PageOut[AlertRule]:
        rules = store.alerts.list_rules(device_id)
        if cursor is not None:
            after = after_rule(cursor)
            rules = [r for r in rules if r.id > after]
        items = rules[:limit]
        next_cursor = rule_cursor(items[-1].id) if len(rules) > limit else None
        return PageOut[AlertRule](items=items, next_cursor=next_cursor)

    @app.get(f"{API_PREFIX}/alerts", tags=["alerts"], summary="List alerts (newest first)")
    def list_alerts(
        *,
        state: Annotated[AlertState | None, Query(description="active or cleared")] = None,
        device_id: Text = None,
        since: Since = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> PageOut[Alert]:
        page = listed(
            lambda: store.alerts.list(
                state=state,
                device_id=device_id,
                since=as_utc(since, "query.since"),
                limit=limit,
                cursor=cursor,
            ),
            cursor,
        )
        return PageOut[Alert](items=page.items, next_cursor=page.next_cursor)

    @app.post(
        f"{API_PREFIX}/alerts/<alert_id>/acknowledge",
        tags=["alerts"],
        summary="Acknowledge an alert (the first acknowledgement is kept)",
    )
    def acknowledge_alert(alert_id: Annotated[str, Path(max_length=128)]) -> Alert:
        require(store.alerts.get(alert_id), f"alert '{alert_id}'")
        alert = store.alerts.acknowledge(
            alert_id, by=app.principal().username, at=app.services.clock()
        )
        try:
            app.services.feed.publish(
                "notifications",
                {"type": "alert.acknowledged", "alert": alert.model_dump(mode="json")},
            )
        except Exception:  # the acknowledgement is stored; a live view misses one message
            log.exception("publishing the acknowledgement of %s failed", alert_id)
        return alert

    @app.get(f"{API_PREFIX}/audit", tags=["audit"], summary="List the audit log (newest first)")
    def list_audit(
        *,
        actor_id: Text = None,
        target_type: Text = None,
        target_id: Text = None,
        since: Since = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> PageOut[AuditEntry]:
        page = listed(
            lambda: store.audit.list(
                actor_id=actor_id,
                target_type=target_type,
                target_id=target_id,
                since=as_utc(since, "query.since"),
                limit=limit,
                cursor=cursor,
            ),
            cursor,
        )
        return PageOut[AuditEntry](items=page.items, next_cursor=page.next_cursor)

    @app.get(
        f"{API_PREFIX}/nodes",
        tags=["pipelines"],
        summary="The node catalog: manifests and config JSON Schemas",
    )
    def node_catalog() -> dict[str, Any]:
        from aios.nodes import CATALOG

        return CATALOG.export()

    def site_settings() -> SiteSettings:
        stored = store.settings.get(FLEET_SETTINGS_KEY)
        chosen = isinstance(stored, dict) and stored.get("allow_pending") is True
        forced = app.services.settings.allow_pending_devices
        return SiteSettings(allow_pending_devices=chosen or forced, forced_by_configuration=forced)

    @app.get(f"{API_PREFIX}/settings", tags=["settings"], summary="Site settings")
    def read_settings() -> SiteSettings:
        return site_settings()

    @app.put(f"{API_PREFIX}/settings", tags=["settings"], summary="Change site settings")
    def update_settings(body: SiteSettingsUpdate) -> SiteSettings:
        if body.allow_pending_devices is not None:
            stored = store.settings.get(FLEET_SETTINGS_KEY)
            value: dict[str, Any] = dict(stored) if isinstance(stored, dict) else {}
            value["allow_pending"] = body.allow_pending_devices
            store.settings.put(FLEET_SETTINGS_KEY, value)
        app.audit_target(FLEET_SETTINGS_KEY, **body.model_dump(exclude_none=True))
        return site_settings()
