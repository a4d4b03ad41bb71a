"""``aios/dashboard@1`` — records events for the console's dashboard and event feed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, PortKind, PortSpec, Tier
from aios.runtime.context import NodeContext
from aios.runtime.events import StreamEvent


class DashboardConfig(NodeConfig):
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


class DashboardNode:
    """Tags each event with its panel and severity; the runtime records it."""

    def __init__(self, config: DashboardConfig, ctx: NodeContext) -> None:
        self.config = config

    def handle(self, events: list[StreamEvent]) -> list[StreamEvent]:
        """Return the events annotated with the panel and severity."""
        return [
            e.model_copy(
                update={
                    "data": {
                        **e.data,
                        "dashboard": {"panel": self.config.panel, "severity": self.config.severity},
                    }
                }
            )
            for e in events
        ]


NODE = NodeType(manifest=MANIFEST, config_model=DashboardConfig, implementation=DashboardNode)
