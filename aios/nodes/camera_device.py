"""``aios/camera.device@1`` — a camera of the fleet, captured by its connector at the site.

The node names the camera by its device id; the camera's address and credentials stay in
the connector's configuration file at the site and never reach the platform. Such a node
runs only at the edge: when ``aios up`` plays the pipeline, it pushes a stream plan to the
camera's connector (:mod:`aios.runs.edge`), which runs the stream tier on its own capture of
the camera and publishes the events. A process without the fleet (``aios run``) cannot open
it: :meth:`DeviceCameraNode.open` raises :class:`~aios.vision.sources.SourceError` saying so.
"""

from __future__ import annotations

from pydantic import Field

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, Tier
from aios.domain import DEVICE_ID_PATTERN
from aios.nodes._common import FRAMES_OUT
from aios.runtime.context import NodeContext
from aios.vision.types import FrameSource

TYPE_ID = "aios/camera.device@1"


class DeviceCameraConfig(NodeConfig):
    """The fleet camera to analyse (a device of kind ``camera`` with a connector parent)."""

    device_id: str = Field(
        title="Camera",
        description="Device id of the camera in the fleet; its connector captures it.",
        pattern=DEVICE_ID_PATTERN,
    )


MANIFEST = NodeManifest(
    type=TYPE_ID,
    category=Category.INPUT,
    tier=Tier.STREAM,
    title="Fleet camera",
    description="A camera of the fleet, analysed at the edge by the connector it is attached "
    "to; its address and credentials stay at the site.",
    icon="cctv",
    outputs=(FRAMES_OUT,),
)


class DeviceCameraNode:
    """Stands for a fleet camera: its frames come from the camera's connector, never from here."""

    def __init__(self, config: DeviceCameraConfig, ctx: NodeContext) -> None:
        self.config = config
        self.ctx = ctx

    def open(self) -> FrameSource:
        """Refuse: a fleet camera is captured by its connector, not by this process.

        Raises:
            SourceError: always, saying how to run the pipeline.
        """
        from aios.vision.sources import SourceError

        raise SourceError(
            f"node '{self.ctx.node_id}' is the fleet camera {self.config.device_id!r}, which "
            "only its connector can capture: start the pipeline from `aios up` (Play in the "
            "console, or POST /api/v1/pipelines/{id}/execute) with the camera's connector "
            "online; to analyse it here, use aios/camera.rtsp@1 with the camera's address"
        )


NODE = NodeType(manifest=MANIFEST, config_model=DeviceCameraConfig, implementation=DeviceCameraNode)
