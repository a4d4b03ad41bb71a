"""Configuration pieces shared by several node types (not a node type itself)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from aios.analytics.geometry import Anchor
from aios.catalog.base import PortKind, PortSpec

NormalizedPoint = Annotated[
    tuple[
        Annotated[float, Field(ge=0.0, le=1.0)],
        Annotated[float, Field(ge=0.0, le=1.0)],
    ],
    Field(description="[x, y] as fractions of the frame width and height (0 = left/top)."),
]

AnchorName = Anchor
"""Which point of a box zones and lines test (the analytics' own anchor names)."""

ANCHOR_FIELD_DESCRIPTION = (
    "Point of each box tested against the zone or line. 'bottom_center' (the feet of a "
    "person, the wheels of a car) suits cameras looking down at a floor."
)


class EvidenceConfig(BaseModel):
    """What to save when a node emits an event: a snapshot and optionally a clip."""

    model_config = ConfigDict(extra="forbid", title="Evidence")

    snapshot: bool = Field(
        default=True,
        title="Save snapshot",
        description="Save a JPEG of the frame with the boxes drawn for each event.",
    )
    clip: bool = Field(
        default=False,
        title="Save clip",
        description="Save an MP4 clip around each event (uses memory for the pre-event buffer).",
    )
    clip_pre_seconds: float = Field(
        default=3.0,
        ge=0.0,
        le=30.0,
        title="Seconds before",
        description="Seconds of video kept before the event, in seconds.",
    )
    clip_post_seconds: float = Field(
        default=3.0,
        ge=0.0,
        le=60.0,
        title="Seconds after",
        description="Seconds of video recorded after the event, in seconds.",
    )


def class_filter_field_validator(classes: list[str]) -> list[str]:
    """Normalise a class-name filter: strip, lower-case, drop duplicates, keep order."""
    seen: list[str] = []
    for name in classes:
        key = name.strip().lower()
        if not key:
            raise ValueError("class names must not be empty")
        if key not in seen:
            seen.append(key)
    return seen


ClassList = Annotated[
    list[str],
    Field(
        default_factory=list,
        title="Classes",
        description="Only these class names count (e.g. 'person', 'car'); empty means every class.",
        max_length=100,
    ),
    AfterValidator(class_filter_field_validator),
]
"""A class-name filter: stripped, lower-cased, without duplicates; empty means all."""


FRAMES_OUT = PortSpec(name="frames", kind=PortKind.FRAMES, title="Frames")
DETECTIONS_IN = PortSpec(
    name="detections",
    kind=PortKind.DETECTIONS,
    title="Detections",
    description="Tracked detections (from object detection or another zone).",
)
EVENTS_OUT = PortSpec(name="events", kind=PortKind.EVENT, title="Events")
