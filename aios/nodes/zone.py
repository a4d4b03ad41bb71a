"""``aios/zone@1`` — a polygonal zone: which objects are inside, who entered, who left."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, PortKind, PortSpec, Tier
from aios.nodes._common import (
    ANCHOR_FIELD_DESCRIPTION,
    DETECTIONS_IN,
    EVENTS_OUT,
    AnchorName,
    ClassList,
    EvidenceConfig,
    NormalizedPoint,
)
from aios.runtime.context import NodeContext
from aios.runtime.events import StreamEvent
from aios.vision.types import BGRImage, DetectionsFrame


class ZoneConfig(NodeConfig):
    """A zone drawn on the camera image."""

    name: str = Field(
        default="zone",
        min_length=1,
        max_length=80,
        title="Zone name",
        description="Shown in events and on the dashboard, e.g. 'loading dock'.",
    )
    polygon: list[NormalizedPoint] = Field(
        min_length=3,
        max_length=100,
        title="Polygon",
        description="Vertices [x, y] as fractions of the frame width and height (0–1), so "
        "the zone does not move when the resolution changes.",
    )
    anchor: AnchorName = Field(
        default="bottom_center", title="Anchor point", description=ANCHOR_FIELD_DESCRIPTION
    )
    classes: ClassList
    exit_grace_seconds: float = Field(
        default=0.5,
        ge=0.0,
        le=60.0,
        title="Exit after",
        description="Seconds an object must be seen outside before it has left (stops "
        "jitter on the edge from repeating enter/exit).",
    )
    lost_track_seconds: float = Field(
        default=3.0,
        ge=0.0,
        le=600.0,
        title="Forget after",
        description="Seconds an object may go unseen (occluded, missed) before it has left.",
    )
    emit_enter: bool = Field(default=True, title="Enter events", description="Emit zone.enter.")
    emit_exit: bool = Field(default=False, title="Exit events", description="Emit zone.exit.")
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, title="Evidence")

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        from aios.analytics.geometry import validate_polygon

        validate_polygon(value)
        return value


MANIFEST = NodeManifest(
    type="aios/zone@1",
    category=Category.LOGIC,
    tier=Tier.STREAM,
    title="Zone",
    description="Watches a polygonal area: passes on the objects inside it and emits an "
    "event when a tracked object enters or leaves.",
    icon="square-dashed",
    inputs=(DETECTIONS_IN,),
    outputs=(
        PortSpec(
            name="inside",
            kind=PortKind.DETECTIONS,
            title="Inside",
            description="The detections inside the zone (feed loitering or a counter).",
        ),
        EVENTS_OUT,
    ),
)


class ZoneNode:
    """Runs a :class:`aios.analytics.zones.ZoneTracker` on each frame's detections."""

    def __init__(self, config: ZoneConfig, ctx: NodeContext) -> None:
        from aios.analytics.zones import ZoneTracker

        self.config = config
        self.ctx = ctx
        self.zone = ZoneTracker(
            config.polygon,
            anchor=config.anchor,
            classes=set(config.classes) or None,
            exit_grace_seconds=config.exit_grace_seconds,
            lost_track_seconds=config.lost_track_seconds,
        )

    def process(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return the in-zone detections and this frame's enter/exit events."""
        value: DetectionsFrame = inputs["detections"]
        frame, dets = value.frame, value.detections
        update = self.zone.update(dets, frame.width, frame.height, frame.pts_seconds)
        events: list[StreamEvent] = []
        track_index = dets.track_indices()
        transitions = [("zone.enter", t) for t in update.entered] if self.config.emit_enter else []
        if self.config.emit_exit:
            transitions += [("zone.exit", t) for t in update.exited]
        for event_type, t in transitions:
            event = self.ctx.event(
                event_type,  # type: ignore[arg-type]
                frame,
                track_id=t.track_id,
                class_name=t.class_name,
                confidence=round(t.confidence, 4),
                bbox=tuple(round(v, 1) for v in t.box),
                zone=self.config.name,
                dwell_seconds=None if t.dwell_seconds is None else round(t.dwell_seconds, 2),
                data={"reason": t.reason},
            )
            events.append(
                self.ctx.evidence.attach(
                    event,
                    frame,
                    dets,
                    track_index.get(t.track_id),
                    self.config.evidence,
                    overlay=self.draw,
                )
            )
        inside = DetectionsFrame(
            frame=frame,
            detections=dets.select(update.mask),
            regions=(*value.regions, self.config.name),
        )
        return {"inside": inside, "events": events}

    def draw(self, image: BGRImage) -> None:
        """Draw the zone outline and its name."""
        from aios.vision.annotate import draw_polygon

        draw_polygon(image, self.config.polygon, label=self.config.name, copy=False)


NODE = NodeType(manifest=MANIFEST, config_model=ZoneConfig, implementation=ZoneNode)
