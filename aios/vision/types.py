"""Value types that flow along the stream tier: frames and detections.

A *frame* is what a source produced (the ``frames`` port kind); *detections* are a frame
plus the boxes found in it (the ``detections`` port kind). Both are immutable: a node that
changes something returns a new value (``dataclasses.replace``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

BGRImage = NDArray[np.uint8]
"""An image as OpenCV holds it: shape ``(height, width, 3)``, ``uint8``, BGR channel order."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded video frame.

    Attributes:
        image: pixels, shape ``(height, width, 3)``, ``uint8``, BGR.
        index: 0-based number of the frame in its source since the source was opened
            (frames dropped as stale still consume an index).
        pts_seconds: presentation time in seconds since the source started: the container
            timestamp for files, a monotonic clock for live sources. Analytics measure
            durations (dwell, cooldowns) on this clock so batch runs are reproducible.
        wall_time: UTC time at which the frame was captured (files: the run's start time
            plus ``pts_seconds``).
        source_id: id of the pipeline node that produced the frame.
        live: ``True`` for cameras and real-time paced files, ``False`` for batch file reads.
        motion: ``None`` when no motion gate ran; otherwise whether the gate saw motion.
        nominal_fps: the source's declared frame rate in frames per second (container or
            device setting), ``None`` when unknown; actual spacing is in ``pts_seconds``.
    """

    image: BGRImage
    index: int
    pts_seconds: float
    wall_time: datetime
    source_id: str
    live: bool = False
    motion: bool | None = None
    nominal_fps: float | None = None

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.image.shape[0])


def _empty_f32(*shape: int) -> NDArray[np.float32]:
    return np.zeros(shape, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes found in one frame, as parallel arrays of length ``N``.

    Attributes:
        xyxy: ``(N, 4)`` float32 corner coordinates ``x1, y1, x2, y2`` in pixels of the frame
            the boxes were found in, *not* clipped to the frame (clipping is the consumer's
            decision: zone anchors are computed before any clipping).
        confidence: ``(N,)`` float32 scores in ``[0, 1]``.
        class_id: ``(N,)`` int32 indexes into ``class_names``.
        class_names: the model's label list (e.g. the 80 COCO names).
        tracker_id: ``(N,)`` int64 stable track ids, or ``None`` when no tracker ran.
    """

    xyxy: NDArray[np.float32] = field(default_factory=lambda: _empty_f32(0, 4))
    confidence: NDArray[np.float32] = field(default_factory=lambda: _empty_f32(0))
    class_id: NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    class_names: tuple[str, ...] = ()
    tracker_id: NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        if len(self.confidence) != n or len(self.class_id) != n:
            raise ValueError("xyxy, confidence and class_id must have the same length")
        if self.tracker_id is not None and len(self.tracker_id) != n:
            raise ValueError("tracker_id must have the same length as xyxy")

    def __len__(self) -> int:
        return len(self.xyxy)

    def class_name(self, i: int) -> str:
        """Label of detection ``i`` (``"class_<id>"`` when the model has no name for it)."""
        cid = int(self.class_id[i])
        return self.class_names[cid] if 0 <= cid < len(self.class_names) else f"class_{cid}"

    def track_indices(self) -> dict[int, int]:
        """Return ``{track id: row}`` (empty when untracked)."""
        if self.tracker_id is None:
            return {}
        return {int(t): i for i, t in enumerate(self.tracker_id)}

    def select(self, mask: NDArray[np.bool_]) -> Detections:
        """Return the detections where ``mask`` (shape ``(N,)``) is true."""
        return Detections(
            xyxy=self.xyxy[mask],
            confidence=self.confidence[mask],
            class_id=self.class_id[mask],
            class_names=self.class_names,
            tracker_id=None if self.tracker_id is None else self.tracker_id[mask],
        )


@dataclass(frozen=True, slots=True)
class DetectionsFrame:
    """The value of a ``detections`` port: the frame and what was found in it.

    Attributes:
        frame: the frame the detections were found in.
        detections: the boxes (possibly a subset, e.g. those inside a zone).
        regions: names of the zones these detections were filtered by, outermost first
            (empty when unfiltered); events downstream name the innermost one.
    """

    frame: Frame
    detections: Detections
    regions: tuple[str, ...] = ()


@runtime_checkable
class FrameSource(Protocol):
    """What every frame source provides."""

    @property
    def live(self) -> bool:
        """``True`` when frames arrive at the pace of the world (cameras, paced files)."""
        ...

    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends, fails (``SourceError``) or is stopped."""
        ...

    def stop(self) -> None:
        """Ask the source to end; safe from any thread, at any time, more than once."""
        ...
