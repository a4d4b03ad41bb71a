"""What a running node gets from the runtime: identity, clocks, evidence, event building."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aios.runtime.events import EventType, StreamEvent, event_key
from aios.vision.types import BGRImage, Detections, Frame


class EvidenceOptions(Protocol):
    """The evidence part of an event-emitting node's config."""

    snapshot: bool
    clip: bool
    clip_pre_seconds: float
    clip_post_seconds: float


class Evidence(Protocol):
    """Saves snapshots and clips for events of one source."""

    def attach(
        self,
        event: StreamEvent,
        frame: Frame,
        detections: Detections,
        highlight: int | None,
        options: EvidenceOptions,
        *,
        overlay: Callable[[BGRImage], None] | None = None,
    ) -> StreamEvent:
        """Return ``event`` with ``snapshot`` / ``clip`` paths set as the options ask.

        ``overlay`` draws what the node watches (its zone or line) on the snapshot.
        """
        ...


class NoEvidence:
    """Evidence that saves nothing (validation dry runs, benchmarks)."""

    def attach(
        self,
        event: StreamEvent,
        frame: Frame,
        detections: Detections,
        highlight: int | None,
        options: EvidenceOptions,
        *,
        overlay: Callable[[BGRImage], None] | None = None,
    ) -> StreamEvent:
        """Return the event unchanged."""
        return event


@dataclass
class NodeContext:
    """Per-node runtime services.

    Attributes:
        pipeline: the pipeline's name.
        node_id: this node's id in the pipeline.
        node_type: this node's type id.
        evidence: snapshot and clip saving for the node's source.
        logger: a logger named after the node.
    """

    pipeline: str
    node_id: str
    node_type: str
    evidence: Evidence
    logger: logging.Logger

    def event(
        self,
        event_type: EventType,
        frame: Frame,
        *,
        detections: Detections | None = None,
        index: int | None = None,
        key: tuple[Any, ...] = (),
        **fields: Any,
    ) -> StreamEvent:
        """Build an event observed on ``frame``.

        When ``detections`` and ``index`` are given, the track id, class, confidence and
        box of detection ``index`` fill the event. ``key`` adds parts to the idempotency
        key beyond pipeline, node, source, frame, type and track.
        """
        if detections is not None and index is not None:
            box = detections.xyxy[index]
            fields.setdefault("class_name", detections.class_name(index))
            fields.setdefault("confidence", round(float(detections.confidence[index]), 4))
            fields.setdefault("bbox", tuple(round(float(v), 1) for v in box))
            if detections.tracker_id is not None:
                fields.setdefault("track_id", int(detections.tracker_id[index]))
        return self._build(
            event_type,
            event_key(
                self.pipeline,
                self.node_id,
                frame.source_id,
                frame.index,
                event_type,
                fields.get("track_id"),
                *key,
            ),
            time=frame.wall_time,
            media_time_seconds=round(frame.pts_seconds, 3),
            frame_index=frame.index,
            source_id=frame.source_id,
            frame_width=frame.width,
            frame_height=frame.height,
            **fields,
        )

    def follow_up(
        self,
        parent: StreamEvent,
        event_type: EventType,
        *,
        key: tuple[Any, ...] = (),
        **fields: Any,
    ) -> StreamEvent:
        """Build an event caused by ``parent`` (same frame, time and source)."""
        return self._build(
            event_type,
            event_key(self.pipeline, self.node_id, parent.event_id, event_type, *key),
            time=parent.time,
            media_time_seconds=parent.media_time_seconds,
            frame_index=parent.frame_index,
            source_id=parent.source_id,
            frame_width=parent.frame_width,
            frame_height=parent.frame_height,
            **fields,
        )

    def _build(self, event_type: EventType, event_id: str, **fields: Any) -> StreamEvent:
        return StreamEvent(
            event_id=event_id,
            pipeline=self.pipeline,
            node_id=self.node_id,
            node_type=self.node_type,
            event_type=event_type,
            **fields,
        )
