"""``aios/motion_gate@1`` — marks frames without motion so detection can skip them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, PortKind, PortSpec, Tier
from aios.nodes._common import FRAMES_OUT
from aios.runtime.context import NodeContext
from aios.vision.types import Frame


class MotionGateConfig(NodeConfig):
    """Detect motion by comparing each frame with a background model."""

    min_changed_fraction: float = Field(
        default=0.002,
        gt=0.0,
        le=1.0,
        title="Minimum changed area",
        description="Fraction of the (downscaled) frame that must change to count as motion, "
        "0–1 (0.002 = 0.2 %).",
    )
    pixel_threshold: int = Field(
        default=25,
        ge=1,
        le=255,
        title="Pixel threshold",
        description="Grey-level difference (0–255) above which a pixel counts as changed.",
    )
    downscale_width: int = Field(
        default=320,
        ge=64,
        le=1920,
        title="Analysis width",
        description="Frames are shrunk to this width, in pixels, before comparison.",
    )


MANIFEST = NodeManifest(
    type="aios/motion_gate@1",
    category=Category.PROCESSING,
    tier=Tier.STREAM,
    title="Motion Gate",
    description="Marks frames with no motion so that object detection reuses its last "
    "result instead of running the model; saves compute on quiet scenes.",
    icon="activity",
    inputs=(PortSpec(name="frames", kind=PortKind.FRAMES, title="Frames"),),
    outputs=(FRAMES_OUT,),
)


class MotionGateNode:
    """Passes every frame on, with ``Frame.motion`` set."""

    def __init__(self, config: MotionGateConfig, ctx: NodeContext) -> None:
        from aios.vision.motion import MotionGate

        self.gate = MotionGate(
            threshold_fraction=config.min_changed_fraction,
            pixel_threshold=config.pixel_threshold,
            downscale_width=config.downscale_width,
        )

    def process(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return the frame with ``motion`` decided."""
        frame: Frame = inputs["frames"]
        return {"frames": self.gate.apply(frame)}


NODE = NodeType(manifest=MANIFEST, config_model=MotionGateConfig, implementation=MotionGateNode)
