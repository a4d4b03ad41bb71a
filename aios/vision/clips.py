"""Event clips and snapshots.

* :class:`FrameRingBuffer` keeps the last ``max_seconds`` of a stream as JPEG bytes (a few
  tens of kB per frame instead of ~1.3 MB raw at 768×576), optionally capped in bytes too.
* :class:`ClipRecorder` writes an MP4 for an event at time ``t``: the buffered frames from
  ``t - pre_seconds`` then the frames that keep arriving until ``t + post_seconds``.
  Several clips (overlapping or not) can be in progress; :meth:`ClipRecorder.finish_all`
  closes them at the end of a stream with whatever arrived.
* :func:`save_snapshot` writes a JPEG of a frame with its detections drawn.

All times are the frames' ``pts_seconds`` (seconds on the source's clock).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from aios.vision.annotate import VideoWriter, draw_detections
from aios.vision.types import BGRImage, Detections, Frame

logger = logging.getLogger(__name__)


def encode_jpeg(image: BGRImage, quality: int = 85) -> bytes:
    """Encode a BGR image (shape ``(H, W, 3)`` ``uint8``) as JPEG.

    Raises:
        ValueError: OpenCV could not encode the image.
    """
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return bytes(buf.tobytes())


def decode_jpeg(data: bytes) -> BGRImage:
    """Decode JPEG bytes to a BGR image, shape ``(H, W, 3)`` ``uint8``.

    Raises:
        ValueError: the bytes are not a decodable image.
    """
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable JPEG")
    return np.asarray(image, dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class BufferedFrame:
    """One frame kept by :class:`FrameRingBuffer`.

    Attributes:
        jpeg: the JPEG-encoded image.
        pts_seconds: the frame's presentation time.
        index: the frame's index in its source.
        wall_time: the frame's UTC capture time.
        width: image width in pixels.
        height: image height in pixels.
    """

    jpeg: bytes
    pts_seconds: float
    index: int
    wall_time: datetime
    width: int
    height: int

    def image(self) -> BGRImage:
        """Decode the JPEG (shape ``(height, width, 3)`` ``uint8``)."""
        return decode_jpeg(self.jpeg)


class FrameRingBuffer:
    """The last ``max_seconds`` of frames, JPEG-encoded, oldest first.

    A frame is evicted once it is more than ``max_seconds`` older (in ``pts_seconds``) than
    the newest frame, or when the total JPEG size would exceed ``max_bytes``. Thread-safe.

    Args:
        max_seconds: how much of the stream to keep, in seconds (> 0).
        jpeg_quality: JPEG quality ``1..100``.
        max_bytes: optional cap on the total JPEG size in bytes.

    Raises:
        ValueError: a non-positive ``max_seconds`` or ``max_bytes``.
    """

    def __init__(
        self, max_seconds: float, *, jpeg_quality: int = 85, max_bytes: int | None = None
    ) -> None:
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds}")
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_seconds = float(max_seconds)
        self.jpeg_quality = jpeg_quality
        self.max_bytes = max_bytes
        self._items: deque[BufferedFrame] = deque()
        self._nbytes = 0
        self._lock = threading.Lock()

    def add(self, frame: Frame) -> BufferedFrame:
        """Encode and append a frame, evicting what fell out of the window."""
        item = BufferedFrame(
            jpeg=encode_jpeg(frame.image, self.jpeg_quality),
            pts_seconds=frame.pts_seconds,
            index=frame.index,
            wall_time=frame.wall_time,
            width=frame.width,
            height=frame.height,
        )
        with self._lock:
            self._items.append(item)
            self._nbytes += len(item.jpeg)
            horizon = item.pts_seconds - self.max_seconds
            while len(self._items) > 1 and (
                self._items[0].pts_seconds < horizon - 1e-9
                or (self.max_bytes is not None and self._nbytes > self.max_bytes)
            ):
                self._nbytes -= len(self._items.popleft().jpeg)
        return item

    def between(self, start: float, end: float = math.inf) -> list[BufferedFrame]:
        """Return the buffered frames with ``start <= pts_seconds <= end``, oldest first."""
        with self._lock:
            return [f for f in self._items if start - 1e-9 <= f.pts_seconds <= end + 1e-9]

    def clear(self) -> None:
        """Drop every buffered frame."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    @property
    def nbytes(self) -> int:
        """Total size of the buffered JPEGs in bytes."""
        return self._nbytes

    @property
    def span_seconds(self) -> float:
        """``pts`` of the newest minus the oldest buffered frame (0 when < 2 frames)."""
        with self._lock:
            if len(self._items) < 2:
                return 0.0
            return self._items[-1].pts_seconds - self._items[0].pts_seconds

    @property
    def newest_pts(self) -> float | None:
        """``pts_seconds`` of the newest frame, ``None`` when empty."""
        with self._lock:
            return self._items[-1].pts_seconds if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[BufferedFrame]:
        with self._lock:
            return iter(list(self._items))


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """A finished clip.

    Attributes:
        path: the MP4 file.
        event_pts: the event time the clip was made for (seconds, frame clock).
        start_pts: ``pts_seconds`` of the first frame written (``None`` if none was).
        end_pts: ``pts_seconds`` of the last frame written (``None`` if none was).
        frame_count: frames written.
        duration_seconds: playing time of the MP4 (frame slots × 1/fps).
        complete: ``False`` when closed by :meth:`ClipRecorder.finish_all` before
            ``event_pts + post_seconds`` was reached.
    """

    path: Path
    event_pts: float
    start_pts: float | None
    end_pts: float | None
    frame_count: int
    duration_seconds: float
    complete: bool


@dataclass
class _Pending:
    path: Path
    event_pts: float
    start: float
    end: float
    writer: VideoWriter | None = None
    first_pts: float | None = None
    last_pts: float | None = None
    written: int = 0
    frame_size: tuple[int, int] = field(default=(0, 0))


class ClipRecorder:
    """Cut MP4 clips around events from a stream of frames.

    Feed every frame to :meth:`push` (it also fills the ring buffer); call :meth:`start_clip`
    when an event happens. A clip holds the frames with
    ``event_pts - pre_seconds <= pts_seconds <= event_pts + post_seconds``: those already
    buffered are written at once, later ones as they are pushed; the clip is closed by the
    first frame at or past its end. Its playing time is therefore
    ``pre_seconds + post_seconds`` plus one frame (both ends are included) when frames are
    regular. Videos are H.264 (``yuv420p``, even size) at ``fps``, with each frame placed by
    its ``pts_seconds``.

    Args:
        buffer: the ring buffer to read pre-event frames from (its ``max_seconds`` should be
            at least the largest ``pre_seconds``); a new 10 s buffer by default.
        fps: frame rate of the clips; default: estimated from the buffered frames (10 when
            fewer than two are buffered).

    Not thread-safe: call from the thread that pushes frames.
    """

    def __init__(self, buffer: FrameRingBuffer | None = None, *, fps: float | None = None) -> None:
        self.buffer = buffer if buffer is not None else FrameRingBuffer(10.0)
        self.fps = fps
        self._pending: list[_Pending] = []

    @property
    def pending(self) -> int:
        """Number of clips in progress."""
        return len(self._pending)

    def _clip_fps(self) -> float:
        if self.fps:
            return self.fps
        items = list(self.buffer)
        if len(items) >= 2:
            span = items[-1].pts_seconds - items[0].pts_seconds
            if span > 0:
                return (len(items) - 1) / span
        return 10.0

    def _write(self, clip: _Pending, image: BGRImage, pts: float) -> None:
        if clip.writer is None:
            clip.writer = VideoWriter(clip.path, self._clip_fps(), image.shape[1], image.shape[0])
        clip.writer.write(image, pts)
        clip.written += 1
        if clip.first_pts is None:
            clip.first_pts = pts
        clip.last_pts = pts

    def _close(self, clip: _Pending, *, complete: bool) -> ClipInfo:
        duration = 0.0
        if clip.writer is not None:
            clip.writer.close()
            duration = clip.writer.duration_seconds
        info = ClipInfo(
            path=clip.path,
            event_pts=clip.event_pts,
            start_pts=clip.first_pts,
            end_pts=clip.last_pts,
            frame_count=clip.written,
            duration_seconds=duration,
            complete=complete,
        )
        if clip.writer is None:
            logger.warning("clip %s has no frames; no file written", clip.path)
        else:
            logger.info(
                "clip %s: %d frames, %.2f s%s",
                clip.path,
                clip.written,
                duration,
                "" if complete else " (stream ended early)",
            )
        return info

    def start_clip(
        self,
        path: str | Path,
        event_pts: float,
        pre_seconds: float,
        post_seconds: float,
    ) -> ClipInfo | None:
        """Begin a clip for an event at ``event_pts`` (seconds, the frames' clock).

        Args:
            path: the MP4 file to write (parent folders are created).
            event_pts: the event time.
            pre_seconds: seconds before the event to include (from the buffer, >= 0).
            post_seconds: seconds after the event to include (>= 0).

        Returns:
            The :class:`ClipInfo` when the clip is already complete (every frame it needs
            was buffered), else ``None`` (it is finished by a later :meth:`push`).

        Raises:
            ValueError: a negative ``pre_seconds`` or ``post_seconds``.
        """
        if pre_seconds < 0 or post_seconds < 0:
            raise ValueError("pre_seconds and post_seconds must not be negative")
        clip = _Pending(
            path=Path(path),
            event_pts=event_pts,
            start=event_pts - pre_seconds,
            end=event_pts + post_seconds,
        )
        for item in self.buffer.between(clip.start, clip.end):
            self._write(clip, item.image(), item.pts_seconds)
        newest = self.buffer.newest_pts
        if newest is not None and newest >= clip.end - 1e-9:
            return self._close(clip, complete=True)
        self._pending.append(clip)
        return None

    def push(self, frame: Frame) -> list[ClipInfo]:
        """Buffer a frame and add it to the clips in progress.

        Returns:
            The clips this frame completed (often empty).
        """
        self.buffer.add(frame)
        done: list[ClipInfo] = []
        still: list[_Pending] = []
        for clip in self._pending:
            pts = frame.pts_seconds
            if clip.start - 1e-9 <= pts <= clip.end + 1e-9:
                self._write(clip, frame.image, pts)
            if pts >= clip.end - 1e-9:
                done.append(self._close(clip, complete=True))
            else:
                still.append(clip)
        self._pending = still
        return done

    def finish_all(self) -> list[ClipInfo]:
        """Close every clip in progress with the frames it has (end of stream)."""
        done = [self._close(clip, complete=False) for clip in self._pending]
        self._pending = []
        return done


def save_snapshot(
    frame: Frame,
    detections: Detections | None,
    path: str | Path,
    *,
    highlight: Collection[int] | None = None,
    jpeg_quality: int = 90,
) -> Path:
    """Write a JPEG of ``frame`` with boxes, class labels and track ids drawn.

    Args:
        frame: the frame.
        detections: boxes in the frame's pixel coordinates (``None``: the bare frame).
        path: the JPEG file (parent folders are created; written atomically).
        highlight: detection indexes (rows of ``detections``, not track ids) drawn in red,
            e.g. the objects that caused the event.
        jpeg_quality: JPEG quality ``1..100``.

    Returns:
        The path written.

    Raises:
        ValueError: the image could not be encoded.
        OSError: the file could not be written.
    """
    image = frame.image
    if detections is not None and len(detections):
        image = draw_detections(image, detections, highlight=highlight)
    data = encode_jpeg(image, jpeg_quality)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target
