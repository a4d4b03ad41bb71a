"""``aios/file.input@1`` — a video file as a camera (batch, or paced in real time)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import Field

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, Tier
from aios.nodes._common import FRAMES_OUT
from aios.runtime.context import NodeContext
from aios.vision.types import FrameSource


class FileInputConfig(NodeConfig):
    """Read frames from a video file."""

    path: str = Field(
        min_length=1,
        title="File path",
        description="Video file (MP4, AVI, MKV…); relative paths are resolved from the "
        "working directory. 'asset:vtest.avi' names a bundled demo asset.",
    )
    realtime: bool = Field(
        default=False,
        title="Real-time pacing",
        description="Deliver frames at the file's frame rate, like a live camera (stale "
        "frames may then be dropped under load). Off: process every frame as fast as possible.",
    )
    loop: bool = Field(
        default=False, title="Loop", description="Start again at the end of the file."
    )
    start_time: datetime | None = Field(
        default=None,
        title="Recording start (UTC)",
        description="UTC time of the file's first frame, used for event times; default: "
        "the time the run started.",
    )


MANIFEST = NodeManifest(
    type="aios/file.input@1",
    category=Category.INPUT,
    tier=Tier.STREAM,
    title="File Input",
    description="Reads a local video file frame by frame, optionally at real-time pace and "
    "in a loop.",
    icon="file-video",
    outputs=(FRAMES_OUT,),
)


def resolve_path(raw: str) -> Path:
    """Return the file a config path names (``asset:NAME`` → the fetched demo asset)."""
    if raw.startswith("asset:"):
        from aios import assets

        return assets.path(raw.removeprefix("asset:"))
    return Path(raw).expanduser()


class FileInputNode:
    """Opens the file as a frame source."""

    def __init__(self, config: FileInputConfig, ctx: NodeContext) -> None:
        self.config = config
        self.ctx = ctx

    def open(self) -> FrameSource:
        """Open the file; raises ``SourceError`` naming the path when it cannot be read."""
        from aios.vision.sources import FileSource, LatestFrameReader

        source = FileSource(
            resolve_path(self.config.path),
            realtime=self.config.realtime,
            loop=self.config.loop,
            source_id=self.ctx.node_id,
            start_time=self.config.start_time,
        )
        return LatestFrameReader(source) if source.live else source


NODE = NodeType(manifest=MANIFEST, config_model=FileInputConfig, implementation=FileInputNode)
