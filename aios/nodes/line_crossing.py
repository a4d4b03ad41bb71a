"""``aios/line_crossing@1`` — counts objects crossing a line, by direction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, model_validator

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


class LineCrossingConfig(NodeConfig):
    """A line drawn on the camera image; crossing it is an event."""

    name: str = Field(
        default="line",
        min_length=1,
        max_length=80,
        title="Line name",
        description="Shown in events and on the dashboard, e.g. 'gate 2'.",
    )
    line: tuple[NormalizedPoint, NormalizedPoint] = Field(
        title="Line",
        description="Start and end [x, y] as fractions of the frame (0–1). Walking from the "
        "start to the end, crossing from left to right is 'in'.",
    )
    anchor: AnchorName = Field(
        default="bottom_center", title="Anchor point", description=ANCHOR_FIELD_DESCRIPTION
    )
    hysteresis: float = Field(
        default=0.02,
        ge=0.0,
        le=0.25,
        title="Dead band",
        description="Distance from the line, as a fraction of the frame, an object must "
        "reach on the far side before the crossing counts (jitter on the line never counts).",
    )
    directions: Literal["both", "in", "out"] = Field(
        default="both", title="Directions", description="Which crossings emit events."
    )
    classes: ClassList
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, title="Evidence")

    @model_validator(mode="after")
    def _line_has_length(self) -> Self:
        (x0, y0), (x1, y1) = self.line
        if ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 < 0.01:
            raise ValueError("the line's two points must be at least 0.01 (1 % of the frame) apart")
        return self


MANIFEST = NodeManifest(
    type="aios/line_crossing@1",
    category=Category.LOGIC,
    tier=Tier.STREAM,
    title="Line Crossing",
    description="Emits an event each time a tracked object crosses a line, with the "
    "direction, and keeps in/out totals per class.",
    icon="split",
    inputs=(DETECTIONS_IN,),
    outputs=(
        EVENTS_OUT,
        PortSpec(
            name="counts",
            kind=PortKind.DATA,
            title="Totals",
            description="In/out totals per class, on every crossing.",
        ),
    ),
)


class LineCrossingNode:
    """Runs a :class:`aios.analytics.lines.LineCrossingCounter` on each frame."""

    def __init__(self, config: LineCrossingConfig, ctx: NodeContext) -> None:
        from aios.analytics.lines import LineCrossingCounter

        self.config = config
        self.ctx = ctx
        self.counter = LineCrossingCounter(
            config.line[0],
            config.line[1],
            anchor=config.anchor,
            hysteresis=config.hysteresis,
            classes=set(config.classes) or None,
        )

    def process(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return this frame's crossing events and, when any, the updated totals."""
        value: DetectionsFrame = inputs["detections"]
        frame, dets = value.frame, value.detections
        crossings = self.counter.update(dets, frame.width, frame.height, frame.pts_seconds)
        if not crossings:
            return {}
        totals = {"in": dict(self.counter.in_count), "out": dict(self.counter.out_count)}
        track_index = dets.track_indices()
        events: list[StreamEvent] = []
        for c in crossings:
            if self.config.directions not in ("both", c.direction):
                continue
            index = track_index.get(c.track_id)
            event = self.ctx.event(
                "line.cross",
                frame,
                detections=dets if index is not None else None,
                index=index,
                track_id=c.track_id,
                class_name=c.class_name,
                line=self.config.name,
                direction=c.direction,
                data={"totals": totals},
            )
            events.append(
                self.ctx.evidence.attach(
                    event, frame, dets, index, self.config.evidence, overlay=self.draw
                )
            )
        return {"events": events, "counts": {"line": self.config.name, **totals}}

    def draw(self, image: BGRImage) -> None:
        """Draw the line with its 'in' direction."""
        from aios.vision.annotate import draw_line

        draw_line(
            image, self.config.line[0], self.config.line[1], label=self.config.name, copy=False
        )


NODE = NodeType(manifest=MANIFEST, config_model=LineCrossingConfig, implementation=LineCrossingNode)
