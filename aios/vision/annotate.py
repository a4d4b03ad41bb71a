"""Drawing helpers and an H.264 MP4 writer.

The helpers draw on BGR images (shape ``(height, width, 3)``, ``uint8``) as produced by the
sources: detection boxes with class labels and track ids, zone polygons given in normalized
coordinates, and counting lines with direction arrows. They are used for event snapshots
(:func:`aios.vision.clips.save_snapshot`) and for annotated output videos.

:class:`VideoWriter` encodes frames to H.264 (``libx264``, ``yuv420p``) in an MP4 container
with PyAV; :mod:`aios.vision.clips` writes event clips with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import av
import cv2
import numpy as np

from aios.vision.types import BGRImage, Detections

logger = logging.getLogger(__name__)

Color = tuple[int, int, int]
"""A BGR colour, each channel in ``0..255``."""

NormalizedPoint = tuple[float, float]
"""A point as fractions of the image size: ``(x / width, y / height)``, each in ``[0, 1]``."""

HIGHLIGHT_COLOR: Color = (0, 0, 255)
"""Colour of highlighted detections (red)."""

# Distinct, saturated BGR colours; a class keeps its colour across frames.
_PALETTE: tuple[Color, ...] = (
    (255, 56, 56),
    (56, 255, 56),
    (255, 157, 151),
    (0, 194, 255),
    (255, 112, 31),
    (29, 178, 255),
    (207, 210, 49),
    (72, 249, 10),
    (146, 204, 23),
    (61, 219, 134),
    (26, 147, 52),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
    (147, 69, 52),
    (255, 115, 100),
    (236, 24, 0),
    (132, 56, 255),
    (203, 56, 255),
    (199, 55, 255),
)


def class_color(class_id: int) -> Color:
    """Return the palette colour of a class id (stable across frames and runs)."""
    return _PALETTE[class_id % len(_PALETTE)]


def to_pixels(points: Sequence[NormalizedPoint], width: int, height: int) -> np.ndarray[Any, Any]:
    """Convert normalized points to integer pixel coordinates.

    Args:
        points: ``K`` points ``(x, y)`` as fractions of the image size.
        width: image width in pixels.
        height: image height in pixels.

    Returns:
        ``(K, 2)`` int32 array of pixel coordinates, clipped to the image.
    """
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    px = np.empty_like(arr)
    px[:, 0] = np.clip(np.round(arr[:, 0] * (width - 1)), 0, width - 1)
    px[:, 1] = np.clip(np.round(arr[:, 1] * (height - 1)), 0, height - 1)
    return px.astype(np.int32)


def _label(image: BGRImage, text: str, x: int, y: int, color: Color) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = max(0.4, min(image.shape[0], image.shape[1]) / 1000.0)
    thickness = 1
    (tw, th), baseline = cv2.getTextSize(text, font, scale, thickness)
    top = y - th - baseline - 2
    if top < 0:  # no room above the box: put the label inside it
        top = y
    cv2.rectangle(image, (x, top), (x + tw + 2, top + th + baseline + 2), color, cv2.FILLED)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    text_color = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, top + th + 1), font, scale, text_color, thickness, cv2.LINE_AA)


def draw_detections(
    image: BGRImage,
    detections: Detections,
    *,
    highlight: Collection[int] | None = None,
    show_confidence: bool = True,
    thickness: int = 2,
    copy: bool = True,
) -> BGRImage:
    """Draw boxes with ``"#<track id> <class> <confidence>"`` labels.

    Args:
        image: BGR image the detections were found in, shape ``(H, W, 3)``.
        detections: ``N`` boxes in pixel coordinates of ``image`` (clipped for drawing).
        highlight: detection indexes (rows ``0..N-1`` of ``detections``, not track ids)
            drawn in :data:`HIGHLIGHT_COLOR` with a thicker border; the others are drawn in
            their class colour.
        show_confidence: append the score to the label.
        thickness: border thickness in pixels of non-highlighted boxes.
        copy: draw on a copy (default) instead of ``image`` itself.

    Returns:
        The annotated image, shape ``(H, W, 3)`` ``uint8``.
    """
    out = image.copy() if copy else image
    height, width = out.shape[:2]
    marked = set(highlight or ())
    for i in range(len(detections)):
        x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
        p1 = (int(np.clip(round(x1), 0, width - 1)), int(np.clip(round(y1), 0, height - 1)))
        p2 = (int(np.clip(round(x2), 0, width - 1)), int(np.clip(round(y2), 0, height - 1)))
        track = None if detections.tracker_id is None else int(detections.tracker_id[i])
        is_marked = i in marked
        color = HIGHLIGHT_COLOR if is_marked else class_color(int(detections.class_id[i]))
        cv2.rectangle(out, p1, p2, color, thickness * 2 if is_marked else thickness)
        parts = [] if track is None else [f"#{track}"]
        parts.append(detections.class_name(i))
        if show_confidence:
            parts.append(f"{float(detections.confidence[i]):.2f}")
        _label(out, " ".join(parts), p1[0], p1[1], color)
    return out


def draw_polygon(
    image: BGRImage,
    points: Sequence[NormalizedPoint],
    *,
    color: Color = (0, 255, 255),
    thickness: int = 2,
    fill_alpha: float = 0.0,
    label: str | None = None,
    copy: bool = True,
) -> BGRImage:
    """Draw a closed polygon given in normalized coordinates.

    Args:
        image: BGR image, shape ``(H, W, 3)``.
        points: ``K >= 3`` vertices ``(x, y)`` as fractions of the image size.
        color: outline (and fill) colour.
        thickness: outline thickness in pixels.
        fill_alpha: opacity in ``[0, 1]`` of a translucent fill; ``0`` draws no fill.
        label: text drawn at the first vertex.
        copy: draw on a copy (default) instead of ``image`` itself.

    Returns:
        The annotated image.

    Raises:
        ValueError: fewer than three points.
    """
    if len(points) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
    out = image.copy() if copy else image
    px = to_pixels(points, out.shape[1], out.shape[0])
    if fill_alpha > 0:
        overlay = out.copy()
        cv2.fillPoly(overlay, [px], color)
        alpha = float(min(fill_alpha, 1.0))
        cv2.addWeighted(overlay, alpha, out, 1.0 - alpha, 0.0, dst=out)
    cv2.polylines(out, [px], True, color, thickness, cv2.LINE_AA)
    if label:
        _label(out, label, int(px[0, 0]), int(px[0, 1]), color)
    return out


def draw_line(
    image: BGRImage,
    start: NormalizedPoint,
    end: NormalizedPoint,
    *,
    direction: Literal["left", "right", "both"] | None = "right",
    color: Color = (255, 0, 255),
    thickness: int = 2,
    label: str | None = None,
    copy: bool = True,
) -> BGRImage:
    """Draw a counting line with arrows showing the crossing direction.

    The arrows start at the line's midpoint and are perpendicular to it. ``"left"`` points
    to the left-hand side of an observer walking from ``start`` to ``end`` as seen on the
    screen (image y axis pointing down), ``"right"`` to the other side, ``"both"`` draws both
    and ``None`` none. The default, ``"right"``, shows the ``in`` direction of
    :mod:`aios.analytics.lines` (from the left to the right side of ``start -> end``).

    Args:
        image: BGR image, shape ``(H, W, 3)``.
        start: first end of the line, normalized ``(x, y)``.
        end: second end of the line, normalized ``(x, y)``.
        direction: which side the arrow points to (see above).
        color: line and arrow colour.
        thickness: line thickness in pixels.
        label: text drawn at ``start``.
        copy: draw on a copy (default) instead of ``image`` itself.

    Returns:
        The annotated image.
    """
    out = image.copy() if copy else image
    height, width = out.shape[:2]
    px = to_pixels([start, end], width, height)
    a = (int(px[0, 0]), int(px[0, 1]))
    b = (int(px[1, 0]), int(px[1, 1]))
    cv2.line(out, a, b, color, thickness, cv2.LINE_AA)
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy)
    if direction is not None and length > 0:
        mx, my = (a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0
        # With y pointing down, the screen-left normal of (dx, dy) is (dy, -dx).
        nx, ny = dy / length, -dx / length
        arrow = max(15.0, 0.06 * min(width, height))
        sides = {"left": (1.0,), "right": (-1.0,), "both": (1.0, -1.0)}[direction]
        for sign in sides:
            tip = (round(mx + sign * nx * arrow), round(my + sign * ny * arrow))
            cv2.arrowedLine(
                out, (round(mx), round(my)), tip, color, thickness, cv2.LINE_AA, 0, 0.35
            )
    if label:
        _label(out, label, a[0], a[1], color)
    return out


def even_size(width: int, height: int) -> tuple[int, int]:
    """Round a size down to even numbers (``yuv420p`` needs even width and height)."""
    return width - width % 2, height - height % 2


def _rate(fps: float) -> Fraction:
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    return Fraction(fps).limit_denominator(1001)


class VideoWriter:
    """Write BGR frames to an H.264 MP4 file (PyAV, ``libx264``, ``yuv420p``).

    The output size is ``(width, height)`` rounded down to even numbers. Frames of another
    size are resized to it. Timestamps are in units of one frame (time base ``1 / fps``):
    without ``pts_seconds`` frames are spaced exactly ``1 / fps`` apart; with it each frame
    is placed at the nearest frame slot (kept strictly increasing), so gaps in a live
    stream stay gaps in the video.

    Use as a context manager or call :meth:`close`; the file is complete only after closing.

    Raises:
        ValueError: a non-positive fps or size.
        OSError: the file cannot be created (from :meth:`__init__`).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        *,
        crf: int = 23,
        preset: str = "veryfast",
    ) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self._rate = _rate(fps)
        self.width, self.height = even_size(int(width), int(height))
        if self.width < 2 or self.height < 2:
            raise ValueError(f"video size must be at least 2×2, got {width}×{height}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container: Any = av.open(str(self.path), mode="w", format="mp4")
        try:
            stream: Any = self._container.add_stream("libx264", rate=self._rate)
            stream.width = self.width
            stream.height = self.height
            stream.pix_fmt = "yuv420p"
            stream.time_base = 1 / self._rate
            stream.codec_context.time_base = 1 / self._rate
            stream.options = {"crf": str(crf), "preset": preset}
        except Exception:
            self._container.close()
            raise
        self._stream = stream
        self._last_slot = -1
        self._first_pts: float | None = None
        self.frames_written = 0
        self._closed = False

    def write(self, image: BGRImage, pts_seconds: float | None = None) -> None:
        """Encode one BGR frame, shape ``(h, w, 3)`` ``uint8``.

        Args:
            image: the frame; resized when its size differs from the writer's.
            pts_seconds: the frame's presentation time in seconds on any clock; the first
                written frame defines time zero. ``None`` places it one frame after the
                previous one.

        Raises:
            RuntimeError: the writer is closed.
        """
        if self._closed:
            raise RuntimeError(f"VideoWriter for {self.path} is closed")
        if image.shape[1] != self.width or image.shape[0] != self.height:
            image = np.asarray(
                cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA),
                dtype=np.uint8,
            )
        if pts_seconds is None:
            slot = self._last_slot + 1
        else:
            if self._first_pts is None:
                self._first_pts = pts_seconds
            slot = round((pts_seconds - self._first_pts) * self._rate)
            slot = max(int(slot), self._last_slot + 1)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = slot
        frame.time_base = 1 / self._rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_slot = slot
        self.frames_written += 1

    @property
    def duration_seconds(self) -> float:
        """Duration of what was written so far: (last frame slot + 1) / fps."""
        return float((self._last_slot + 1) / self._rate)

    def close(self) -> None:
        """Flush the encoder and finish the file; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
        logger.debug(
            "wrote %s: %d frames, %.2f s", self.path, self.frames_written, self.duration_seconds
        )

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
