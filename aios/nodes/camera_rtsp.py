"""``aios/camera.rtsp@1`` — an IP camera over RTSP (TCP), resilient to outages."""

from __future__ import annotations

import urllib.parse
from typing import Self

from pydantic import Field, SecretStr, model_validator

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, Tier
from aios.nodes._common import FRAMES_OUT
from aios.runtime.context import NodeContext
from aios.vision.types import FrameSource


class RtspCameraConfig(NodeConfig):
    """Connect to an RTSP camera, by URL or by host and path.

    Give either ``url`` (credentials, if inside it, already percent-encoded) or ``host``
    with ``username``/``password`` in plain text (they are encoded for you, once).
    """

    url: str | None = Field(
        default=None,
        title="RTSP URL",
        description="rtsp://[user:password@]host[:port]/path — reserved characters in the "
        "credentials percent-encoded.",
        pattern=r"^rtsps?://",
    )
    host: str | None = Field(
        default=None, title="Host", description="Camera host name or IP address.", max_length=253
    )
    port: int = Field(default=554, ge=1, le=65535, title="Port", description="RTSP TCP port.")
    path: str = Field(
        default="/",
        title="Stream path",
        description="Path of the stream on the camera, e.g. /Streaming/Channels/101.",
        max_length=512,
    )
    username: str | None = Field(default=None, title="Username", max_length=128)
    password: SecretStr | None = Field(
        default=None,
        title="Password",
        description="Plain text; never logged, never shown back.",
    )
    open_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, title="Connect timeout", description="Seconds to connect."
    )
    read_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, title="Read timeout", description="Seconds one read may block."
    )
    stall_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        title="Watchdog",
        description="Seconds without a frame before the connection is dropped and reopened.",
    )
    reconnect_initial_seconds: float = Field(
        default=1.0, gt=0, le=60, title="First retry after", description="Seconds."
    )
    reconnect_max_seconds: float = Field(
        default=30.0, gt=0, le=600, title="Longest retry interval", description="Seconds."
    )
    max_reconnect_attempts: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        title="Give up after",
        description="Consecutive failed connection attempts before the source fails; "
        "empty: keep retrying until stopped (a camera that comes back is picked up).",
    )

    @model_validator(mode="after")
    def _url_or_host(self) -> Self:
        if (self.url is None) == (self.host is None):
            raise ValueError("give either 'url' or 'host', not both and not neither")
        if self.url is not None and not urllib.parse.urlsplit(self.url).hostname:
            raise ValueError("'url' has no host: write rtsp://host[:port]/path")
        if self.url is not None and (self.username or self.password):
            raise ValueError(
                "credentials go either inside 'url' or in 'username'/'password' with 'host'"
            )
        if self.reconnect_max_seconds < self.reconnect_initial_seconds:
            raise ValueError("'reconnect_max_seconds' must be >= 'reconnect_initial_seconds'")
        return self


MANIFEST = NodeManifest(
    type="aios/camera.rtsp@1",
    category=Category.INPUT,
    tier=Tier.STREAM,
    title="Camera RTSP",
    description="Streams an IP camera over RTSP/TCP with timeouts, a watchdog and automatic "
    "reconnection.",
    icon="cctv",
    outputs=(FRAMES_OUT,),
)


class RtspCameraNode:
    """Opens the camera as a live frame source (newest frame first)."""

    def __init__(self, config: RtspCameraConfig, ctx: NodeContext) -> None:
        self.config = config
        self.ctx = ctx

    def open(self) -> FrameSource:
        """Start connecting; frames flow once the camera answers (reconnects forever)."""
        from aios.vision.sources import LatestFrameReader, RtspSource

        c = self.config
        return LatestFrameReader(
            RtspSource(
                url=c.url,
                host=c.host,
                port=c.port,
                path=c.path,
                username=c.username,
                password=c.password.get_secret_value() if c.password else None,
                open_timeout_seconds=c.open_timeout_seconds,
                read_timeout_seconds=c.read_timeout_seconds,
                stall_timeout_seconds=c.stall_timeout_seconds,
                reconnect_initial_seconds=c.reconnect_initial_seconds,
                reconnect_max_seconds=c.reconnect_max_seconds,
                max_reconnect_attempts=c.max_reconnect_attempts,
                source_id=self.ctx.node_id,
            )
        )


NODE = NodeType(manifest=MANIFEST, config_model=RtspCameraConfig, implementation=RtspCameraNode)
