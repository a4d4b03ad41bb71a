"""``aios/counter@1`` — occupancy per class (zone) and totals per class (line crossings)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any

from pydantic import Field

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, PortKind, PortSpec, Tier
from aios.nodes._common import EVENTS_OUT, ClassList
from aios.runtime.context import NodeContext
from aios.runtime.events import StreamEvent
from aios.vision.types import DetectionsFrame, Frame


class CounterConfig(NodeConfig):
    """Count objects per class."""

    name: str = Field(
        default="counter",
        min_length=1,
        max_length=80,
        title="Counter name",
        description="Shown in events and on the dashboard.",
    )
    classes: ClassList
    emit_on_change: bool = Field(
        default=True,
        title="Event on change",
        description="Emit a count.changed event when a count changes.",
    )
    min_interval_seconds: float = Field(
        default=1.0,
        ge=0.0,
        le=3600.0,
        title="At most every",
        description="Seconds between two count.changed events; changes in between are "
        "reported together, with the latest counts, once the interval has passed.",
    )


MANIFEST = NodeManifest(
    type="aios/counter@1",
    category=Category.LOGIC,
    tier=Tier.STREAM,
    title="Counter",
    description="Counts objects per class: how many are in view now (connect a zone's "
    "'inside' output) and how many crossed a line in each direction (connect a line "
    "crossing's events). Occupancy returns to 0 as soon as the scene is empty.",
    icon="hash",
    inputs=(
        PortSpec(
            name="detections",
            kind=PortKind.DETECTIONS,
            title="Detections",
            description="Occupancy: objects currently in view (e.g. inside a zone).",
            required=False,
        ),
        PortSpec(
            name="crossings",
            kind=PortKind.EVENT,
            title="Crossings",
            description="Totals: line.cross events, tallied per class and direction.",
            required=False,
            multiple=True,
        ),
    ),
    requires_any_input=True,
    outputs=(
        EVENTS_OUT,
        PortSpec(
            name="counts",
            kind=PortKind.DATA,
            title="Counts",
            description="Occupancy and totals per class, whenever they change.",
        ),
    ),
)


class CounterNode:
    """Keeps occupancy (per frame) and crossing totals (cumulative) per class."""

    def __init__(self, config: CounterConfig, ctx: NodeContext) -> None:
        from aios.analytics.counting import OccupancyCounter

        self.config = config
        self.ctx = ctx
        self.classes = set(config.classes) or None
        self.occupancy = OccupancyCounter(self.classes)
        self.totals: dict[str, Tally[str]] = {"in": Tally(), "out": Tally()}
        self._pending = False
        self._last_emit: float | None = None

    def process(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return a count.changed event and the counts when anything changed."""
        changed = False
        frame: Frame | None = None
        last_crossing: StreamEvent | None = None
        value: DetectionsFrame | None = inputs.get("detections")
        zone = None
        if value is not None:
            frame = value.frame
            zone = value.regions[-1] if value.regions else None
            changed = self.occupancy.update(value.detections).changed
        for event in inputs.get("crossings", []):
            if not isinstance(event, StreamEvent) or event.event_type != "line.cross":
                continue
            name = (event.class_name or "").lower()
            if event.direction and (self.classes is None or name in self.classes):
                self.totals[event.direction][name] += 1
                changed = True
                last_crossing = event
        if frame is None and last_crossing is None:
            return {}  # nothing this call to date an event with
        now = frame.pts_seconds if frame is not None else None
        if now is None and last_crossing is not None:
            now = last_crossing.media_time_seconds
        if changed:
            self._pending = True
        due = self._pending and (
            self._last_emit is None
            or now is None
            or now - self._last_emit >= self.config.min_interval_seconds
        )
        if not due:
            return {}
        self._pending = False
        self._last_emit = now
        counts: dict[str, Any] = {
            "counter": self.config.name,
            "occupancy": self.occupancy.counts if value is not None else None,
            "peak": self.occupancy.peak if value is not None else None,
            "in": dict(self.totals["in"]),
            "out": dict(self.totals["out"]),
        }
        if not self.config.emit_on_change:
            return {"counts": counts}
        key = (tuple(sorted((counts["occupancy"] or {}).items())),)
        if frame is not None:
            event = self.ctx.event(
                "count.changed", frame, zone=zone, data={"counts": counts}, key=key
            )
        else:
            assert last_crossing is not None
            event = self.ctx.follow_up(
                last_crossing, "count.changed", line=last_crossing.line, data={"counts": counts}
            )
        return {"events": [event], "counts": counts}


NODE = NodeType(manifest=MANIFEST, config_model=CounterConfig, implementation=CounterNode)
