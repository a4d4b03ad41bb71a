"""Read-mostly routes: pipeline events, alerts, the audit log, the node catalog, settings."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from aios.api.models import PageOut, SiteSettings, SiteSettingsUpdate
from aios.api.permissions import API_PREFIX
from aios.api.routes._common import DEFAULT_LIMIT, Cursor, Limit, as_utc, listed, require
from aios.domain import Alert, AlertState, AuditEntry, EventRecord
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
        )
        page = listed(lambda: store.events.list(query, limit=limit, cursor=cursor), cursor)
        return PageOut[EventRecord](items=page.items, next_cursor=page.next_cursor)

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
