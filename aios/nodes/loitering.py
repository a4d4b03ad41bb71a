"""``aios/loitering@1`` — objects that stay too long (dwell time over a threshold)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, Tier
from aios.nodes._common import DETECTIONS_IN, EVENTS_OUT, EvidenceConfig
from aios.runtime.context import NodeContext
from aios.runtime.events import StreamEvent
from aios.vision.types import DetectionsFrame


class LoiteringConfig(NodeConfig):
    """Alert when a tracked object stays longer than a threshold."""

    threshold_seconds: float = Field(
        default=10.0,
        gt=0.0,
        le=86_400.0,
        title="Dwell threshold",
        description="Seconds an object must stay (from first to last seen) before the alert.",
    )
    max_gap_seconds: float = Field(
        default=3.0,
        ge=0.0,
        le=600.0,
        title="Allowed gap",
        description="Seconds an object may go unseen (missed by the detector, occluded) "
        "without ending its stay.",
    )
    evidence: EvidenceConfig = Field(default_factory=EvidenceConfig, title="Evidence")


MANIFEST = NodeManifest(
    type="aios/loitering@1",
    category=Category.LOGIC,
    tier=Tier.STREAM,
    title="Loitering",
    description="Measures how long each tracked object stays (connect a zone's 'inside' "
    "output) and raises an alert once per stay when it exceeds the threshold.",
    icon="timer",
    inputs=(DETECTIONS_IN,),
    outputs=(EVENTS_OUT,),
)


class LoiteringNode:
    """Runs a :class:`aios.analytics.dwell.DwellTracker` on each frame's detections."""

    def __init__(self, config: LoiteringConfig, ctx: NodeContext) -> None:
        from aios.analytics.dwell import DwellTracker

        self.config = config
        self.ctx = ctx
        self.dwell = DwellTracker(
            threshold_seconds=config.threshold_seconds, max_gap_seconds=config.max_gap_seconds
        )

    def process(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return this frame's loitering alerts."""
        value: DetectionsFrame = inputs["detections"]
        frame, dets = value.frame, value.detections
        alerts = self.dwell.update(dets, frame.pts_seconds).alerts
        if not alerts:
            return {}
        zone = value.regions[-1] if value.regions else None
        track_index = dets.track_indices()
        events: list[StreamEvent] = []
        for alert in alerts:
            index = track_index.get(alert.track_id)
            event = self.ctx.event(
                "loitering",
                frame,
                detections=dets if index is not None else None,
                index=index,
                track_id=alert.track_id,
                class_name=alert.class_name,
                zone=zone,
                dwell_seconds=round(alert.dwell_seconds, 2),
                data={"threshold_seconds": self.config.threshold_seconds},
            )
            events.append(self.ctx.evidence.attach(event, frame, dets, index, self.config.evidence))
        return {"events": events}


NODE = NodeType(manifest=MANIFEST, config_model=LoiteringConfig, implementation=LoiteringNode)
