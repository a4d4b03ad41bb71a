"""``aios/camera.webcam@1`` — a local USB/V4L2 camera by device index."""

from __future__ import annotations

from pydantic import Field

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, Tier
from aios.nodes._common import FRAMES_OUT
from aios.runtime.context import NodeContext
from aios.vision.types import FrameSource


class WebcamConfig(NodeConfig):
    """Capture from a camera attached to this machine."""

    device_index: int = Field(
        default=0, ge=0, le=63, title="Device index", description="0 for /dev/video0, and so on."
    )
    width: int | None = Field(
        default=None, ge=160, le=7680, title="Width", description="Requested width, pixels."
    )
    height: int | None = Field(
        default=None, ge=120, le=4320, title="Height", description="Requested height, pixels."
    )
    fps: float | None = Field(
        default=None, gt=0, le=240, title="Frame rate", description="Requested frames per second."
    )


MANIFEST = NodeManifest(
    type="aios/camera.webcam@1",
    category=Category.INPUT,
    tier=Tier.STREAM,
    title="Webcam",
    description="Captures frames from a local USB camera (V4L2).",
    icon="webcam",
    outputs=(FRAMES_OUT,),
)


class WebcamNode:
    """Opens the local camera as a live frame source (newest frame first)."""

    def __init__(self, config: WebcamConfig, ctx: NodeContext) -> None:
        self.config = config
        self.ctx = ctx

    def open(self) -> FrameSource:
        """Open the device; raises ``SourceError`` when it is missing or busy."""
        from aios.vision.sources import LatestFrameReader, WebcamSource

        return LatestFrameReader(
            WebcamSource(
                self.config.device_index,
                width=self.config.width,
                height=self.config.height,
                fps=self.config.fps,
                source_id=self.ctx.node_id,
            )
        )


NODE = NodeType(manifest=MANIFEST, config_model=WebcamConfig, implementation=WebcamNode)
