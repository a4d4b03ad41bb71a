"""Evidence for events: a snapshot JPEG with boxes drawn and an MP4 clip around the event.

One :class:`EvidenceRecorder` serves one source. Snapshots are written when the event is
emitted. Clips take the buffered seconds before the event from a ring buffer and keep
recording as frames arrive until the seconds after it have passed; the event carries the
clip's path at once (the file is complete a few seconds later, or at the end of the run).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from aios.runtime.context import EvidenceOptions
from aios.runtime.events import StreamEvent
from aios.vision.types import BGRImage, Detections, Frame

log = logging.getLogger(__name__)


class EvidenceRecorder:
    """Saves snapshots and clips of one source's events under ``media_dir``.

    Files: ``media_dir/snapshots/<event_id>.jpg`` and ``media_dir/clips/<event_id>.mp4``
    (named by the idempotency key, so a re-run overwrites rather than duplicates).

    Args:
        media_dir: root folder of the evidence files.
        source_id: the source node these events come from.
        buffer_seconds: seconds of video to keep for clips' pre-event part (0: clips start
            at the event).
    """

    def __init__(self, media_dir: Path, source_id: str, *, buffer_seconds: float = 0.0) -> None:
        from aios.vision.clips import ClipRecorder, FrameRingBuffer

        self.media_dir = media_dir
        self.source_id = source_id
        self._buffering = buffer_seconds > 0
        self._clips = ClipRecorder(
            FrameRingBuffer(max(buffer_seconds, 0.1) + 0.5, max_bytes=512 * 1024 * 1024)
        )
        self._lock = threading.Lock()

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
        """Save what ``options`` asks for and return the event with the file paths."""
        from aios.vision.clips import save_snapshot

        update: dict[str, str] = {}
        if options.snapshot:
            if overlay is not None:
                image = frame.image.copy()
                overlay(image)
                frame = dataclasses.replace(frame, image=image)
            path = self.media_dir / "snapshots" / f"{event.event_id}.jpg"
            save_snapshot(
                frame,
                detections,
                path,
                highlight=None if highlight is None else [highlight],
            )
            update["snapshot"] = str(path)
        if options.clip:
            path = self.media_dir / "clips" / f"{event.event_id}.mp4"
            with self._lock:
                self._clips.start_clip(
                    path, frame.pts_seconds, options.clip_pre_seconds, options.clip_post_seconds
                )
            update["clip"] = str(path)
        return event.model_copy(update=update) if update else event

    def on_frame(self, frame: Frame) -> None:
        """Feed a processed frame to the pre-event buffer and to clips being recorded."""
        with self._lock:
            if self._buffering or self._clips.pending:
                self._clips.push(frame)

    def close(self) -> None:
        """Finish clips still recording (with the frames that arrived)."""
        with self._lock:
            for info in self._clips.finish_all():
                if not info.complete:
                    log.info("clip %s ended early with the stream", info.path)
