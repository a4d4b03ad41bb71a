"""``aios/loop@1`` — run the following nodes once per element of a list field.

Compiles to an ASL Map state over ``$.event.<field>``. Each iteration gets an event of
type ``loop.item`` with ``item`` (the element), ``index`` (0-based), ``parent`` (the event
that held the list) and ``event_id`` = ``<parent id>-<index>``, so actions downstream
deduplicate per element.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from aios.catalog.base import (
    Category,
    EventRole,
    NodeConfig,
    NodeManifest,
    NodeType,
    PortKind,
    PortSpec,
    Tier,
)
from aios.nodes.conditional import FIELD_PATH


class LoopConfig(NodeConfig):
    """Iterate over a list in the event."""

    field: str = Field(
        pattern=FIELD_PATH,
        title="List field",
        description="Event field holding the list, dotted for nested values: 'data.readings'.",
    )
    max_concurrency: int = Field(
        default=1,
        ge=0,
        le=40,
        title="In parallel",
        description="Elements processed at once (1: one after another; 0: no limit).",
    )


MANIFEST = NodeManifest(
    type="aios/loop@1",
    category=Category.LOGIC,
    tier=Tier.EVENT,
    title="For each",
    description="Runs the next nodes once for every element of a list in the event.",
    icon="repeat",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            multiple=True,
            description="Events holding the list.",
        ),
    ),
    outputs=(
        PortSpec(
            name="item",
            kind=PortKind.EVENT,
            title="Each element",
            description="One event per element (type 'loop.item').",
        ),
    ),
)


def item_selector(config: LoopConfig) -> dict[str, Any]:
    """Return the Map state's ``Parameters``: the envelope of one iteration."""
    return {
        "event": {
            "event_id.$": "States.Format('{}-{}', $.event.event_id, $$.Map.Item.Index)",
            "event_type": "loop.item",
            "time.$": "$.event.time",
            "source_id.$": "$.event.source_id",
            "item.$": "$$.Map.Item.Value",
            "index.$": "$$.Map.Item.Index",
            "parent.$": "$.event",
        },
        "context.$": "$.context",
        "results": {},
    }


def _not_run(config: LoopConfig, services: Any) -> None:
    raise TypeError("a loop compiles to a Map state; it has no task to run")


NODE = NodeType(
    manifest=MANIFEST,
    config_model=LoopConfig,
    implementation=_not_run,
    event_role=EventRole.MAP,
)
