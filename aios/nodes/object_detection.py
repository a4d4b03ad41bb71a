"""``aios/object_detection@1`` — YOLO object detection with multi-object tracking."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aios.catalog.base import Category, NodeConfig, NodeManifest, NodeType, PortKind, PortSpec, Tier
from aios.nodes._common import ClassList
from aios.runtime.context import NodeContext
from aios.vision.types import Detections, DetectionsFrame, Frame

DEFAULT_FPS = 10.0
"""Frame rate assumed for the tracker when the source does not declare one."""


class TrackingConfig(BaseModel):
    """Multi-object tracking (ByteTrack) that gives each object a stable id."""

    model_config = ConfigDict(extra="forbid", title="Tracking")

    enabled: bool = Field(
        default=True,
        title="Track objects",
        description="Assign stable track ids across frames; zones, lines, loitering and "
        "counting need them.",
    )
    lost_track_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        title="Keep lost tracks for",
        description="Seconds a track survives without a matching detection.",
    )
    min_consecutive_frames: int = Field(
        default=2,
        ge=1,
        le=30,
        title="Confirm after",
        description="Frames an object must be seen in a row before it gets a track id.",
    )
    min_iou: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        title="Minimum overlap",
        description="Intersection over union (0–1) needed to match a detection to a track.",
    )
    start_confidence: float = Field(
        default=0.5,
        ge=0.01,
        le=1.0,
        title="Confidence to start a track",
        description="A new track starts only from a detection scoring at least this (0–1); "
        "weaker detections can still continue an existing track (ByteTrack).",
    )


class ObjectDetectionConfig(NodeConfig):
    """Find objects in frames with a YOLO-family ONNX model."""

    model_path: str | None = Field(
        default=None,
        title="Model file",
        description="ONNX model (YOLOv8/YOLO11 export or the default YOLOv3-tiny COCO). "
        "Default: $YOLO_MODEL_PATH, else the bundled default model.",
    )
    classes: ClassList
    min_confidence: float = Field(
        default=0.35,
        ge=0.01,
        le=1.0,
        title="Minimum confidence",
        description="Detections scoring below this (0–1) are discarded.",
    )
    iou_threshold: float = Field(
        default=0.45,
        ge=0.05,
        le=0.95,
        title="NMS overlap",
        description="Boxes of one class overlapping more than this intersection over union "
        "(0–1) are merged by non-maximum suppression.",
    )
    input_size: int | None = Field(
        default=None,
        ge=128,
        le=1536,
        multiple_of=32,
        title="Input size",
        description="Model input side in pixels (multiple of 32). Larger finds smaller or "
        "farther objects, at a higher cost. The default model is built at any size; an ONNX "
        "export with a fixed size must be given its own. Default: the model's own (416).",
    )
    idle_refresh_seconds: float = Field(
        default=2.0,
        ge=0.0,
        le=60.0,
        title="Refresh without motion",
        description="On frames a motion gate marked still, the last detections are reused; "
        "the model still runs at least this often, in seconds.",
    )
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, title="Tracking")


MANIFEST = NodeManifest(
    type="aios/object_detection@1",
    category=Category.PROCESSING,
    tier=Tier.STREAM,
    title="Object Detection",
    description="Detects people, vehicles and other objects with a YOLO model (ONNX) and "
    "tracks them across frames.",
    icon="scan-search",
    inputs=(PortSpec(name="frames", kind=PortKind.FRAMES, title="Frames"),),
    outputs=(
        PortSpec(
            name="detections",
            kind=PortKind.DETECTIONS,
            title="Detections",
            description="Boxes, classes, scores and track ids per frame.",
        ),
    ),
)


class ObjectDetectionNode:
    """Runs the detector (skipping still frames) and the tracker on each frame."""

    def __init__(self, config: ObjectDetectionConfig, ctx: NodeContext) -> None:
        from aios.analytics.tracking import ObjectTracker
        from aios.vision.detector import Detector
        from aios.vision.model_store import resolve_model_path

        self.config = config
        self.detector = Detector(
            resolve_model_path(config.model_path, config.input_size),
            input_size=config.input_size,
            min_confidence=config.min_confidence,
            iou_threshold=config.iou_threshold,
            classes=set(config.classes) or None,
            num_threads=max(1, min(4, os.cpu_count() or 1)),
        )
        t = config.tracking
        self.tracker = (
            ObjectTracker(
                lost_track_seconds=t.lost_track_seconds,
                min_confidence=t.start_confidence,
                high_confidence=t.start_confidence,
                min_consecutive_frames=t.min_consecutive_frames,
                iou_threshold=t.min_iou,
            )
            if t.enabled
            else None
        )
        self._last: Detections | None = None
        self._last_inference_pts: float | None = None
        self._fps: float | None = None
        self.inferences = 0

    def _should_infer(self, frame: Frame) -> bool:
        if frame.motion is not False or self._last is None or self._last_inference_pts is None:
            return True
        return frame.pts_seconds - self._last_inference_pts >= self.config.idle_refresh_seconds

    def process(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return this frame's (tracked) detections."""
        frame: Frame = inputs["frames"]
        if self._fps is None:
            # The tracker's motion model takes its time unit from the first frame rate it
            # is given: the source's declared rate, else a typical camera's.
            self._fps = frame.nominal_fps or DEFAULT_FPS
        if self._should_infer(frame):
            raw = self.detector.detect(frame.image)
            self.inferences += 1
            self._last_inference_pts = frame.pts_seconds
            self._last = raw
        else:
            assert self._last is not None
            raw = self._last
        dets = (
            raw if self.tracker is None else self.tracker.update(raw, frame.pts_seconds, self._fps)
        )
        return {"detections": DetectionsFrame(frame=frame, detections=dets)}


NODE = NodeType(
    manifest=MANIFEST, config_model=ObjectDetectionConfig, implementation=ObjectDetectionNode
)
