"""``aios/dashboard@1`` — records events for the console's dashboard and event feed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from aios.catalog.base import (
    Category,
    EventRole,
    NodeManifest,
    NodeType,
    PortKind,
    PortSpec,
    Tier,
)
from aios.events.actions import Action, ActionConfig
from aios.events.task import TaskRequest


class DashboardConfig(ActionConfig):
    """Show events on the dashboard."""

    panel: str = Field(
        default="Events",
        min_length=1,
        max_length=80,
        title="Panel",
        description="Name of the dashboard feed the events appear under.",
    )
    severity: Literal["info", "warning", "critical"] = Field(
        default="warning",
        title="Severity",
        description="How the events are highlighted in the feed and alert bell.",
    )
    cooldown_seconds: float = Field(
        default=0.0,
        ge=0,
        le=86_400,
        title="Cooldown (s)",
        description="After recording, ignore further events for this long (0: record every event).",
    )


MANIFEST = NodeManifest(
    type="aios/dashboard@1",
    category=Category.OUTPUT,
    tier=Tier.EVENT,
    title="Dashboard",
    description="Records events so they appear in the dashboard's live feed and statistics.",
    icon="layout-dashboard",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="Events to record; several nodes may feed one dashboard.",
            multiple=True,
        ),
    ),
)


class DashboardAction(Action[DashboardConfig]):
    """Records each event, tagged with the panel and severity, in the events store."""

    channel = "dashboard"
    sent_status = "recorded"

    def send(self, request: TaskRequest) -> dict[str, Any]:
        """Record the event; return the panel and severity it was filed under."""
        self.services.recorder.record(
            request.event,
            node_id=request.node_id,
            panel=self.config.panel,
            severity=self.config.severity,
        )
        return {"panel": self.config.panel, "severity": self.config.severity}


NODE = NodeType(
    manifest=MANIFEST,
    config_model=DashboardConfig,
    implementation=DashboardAction,
    event_role=EventRole.ACTION,
)
