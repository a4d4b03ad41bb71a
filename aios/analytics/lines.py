"""Line crossing counting: tracks crossing a line segment, by direction and class."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from aios.analytics.clock import check_pts
from aios.analytics.geometry import (
    Anchor,
    PointLike,
    anchor_points,
    segment_line_intersection,
    segments_intersect,
    signed_distances,
)
from aios.vision.types import Detections

Direction = Literal["in", "out"]
"""``in``: from the left to the right side of the directed line ``a -> b``; ``out``: back."""

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class LineCrossing:
    """One track crossing the line.

    Attributes:
        track_id: the tracker's id.
        class_name: the track's class on the frame the crossing was counted.
        direction: ``"in"`` (left side to right side of ``a -> b``) or ``"out"``.
        pts_seconds: time of the frame on which the crossing was counted, seconds (the first
            frame with the anchor firmly on the new side).
        position: the anchor on that frame, normalized ``(x, y)``.
        crossing_point: where the straight path from the last firm position on the old side to
            ``position`` meets the line, normalized ``(x, y)``.
        confidence: detection score on that frame.
        box: ``x1, y1, x2, y2`` in pixels (unclipped) on that frame.
    """

    track_id: int
    class_name: str
    direction: Direction
    pts_seconds: float
    position: Point
    crossing_point: Point
    confidence: float
    box: tuple[float, float, float, float]


@dataclass(slots=True)
class _TrackSide:
    side: int  # +1 right of a->b, -1 left, 0 not yet firmly on a side
    last_firm: Point | None
    last_seen: float


class LineCrossingCounter:
    """Count tracks whose anchor crosses the segment ``a -> b``, per direction and class.

    Direction, for the directed line ``a -> b`` in normalized image coordinates (``y`` down)::

                    left side of a -> b: above on screen, signed distance < 0
                      |                    ^
                      | in                 | out
        a = (0, y) ---|--------------------|---> b = (1, y)
                      |                    |
                      v                    |
                    right side of a -> b: below on screen, signed distance > 0

    ``in`` means crossing from the left side to the right side of ``a -> b`` as seen on screen
    (the side where :func:`aios.analytics.geometry.side_of_line` is positive); swap ``a`` and
    ``b`` to swap the directions. For a vertical line ``a = (x, 0)``, ``b = (x, 1)`` drawn
    downwards, ``in`` is moving leftwards.

    Rule (per track, on its anchor point):

    * The anchor is *firmly* on a side when its distance to the infinite line is greater than
      ``hysteresis``; within the band ``|d| <= hysteresis`` it is on no side, and such frames
      change nothing (jitter inside the band is never counted).
    * The track's committed side is the side of its last firm position. A crossing is counted
      when the anchor is firmly on the side opposite the committed one *and* the straight path
      from the last firm position to the current one intersects the line **segment** ``[a, b]``
      (end points included). Either way the committed side becomes the new side, so an object
      that goes around the end of the segment is not counted, and its later crossing back
      through the segment is counted normally.
    * Hence an object that jumps across the line between two consecutive frames is counted
      exactly once, and a real crossing back is counted in the opposite direction.
    * The first firm position of a track only commits its side: a track first seen on the far
      side is not counted.

    Only tracked detections count (``tracker_id >= 0``); detections of classes not in
    ``classes`` are ignored. A track not seen for ``forget_after_seconds`` is forgotten (memory
    bound), so choose it larger than the tracker's ``lost_track_seconds``.

    Args:
        a: line start ``(x, y)``, normalized, in ``[0, 1]``.
        b: line end ``(x, y)``, normalized, in ``[0, 1]``, distinct from ``a``.
        anchor: which point of a box is followed (default ``"bottom_center"``).
        hysteresis: half-width of the dead band around the line, normalized distance (fraction
            of the frame: ``x`` and ``y`` are normalized separately, so on a 16:9 frame 0.02 is
            ~38 px horizontally and ~22 px vertically at 1080p), in ``[0, 0.5)``.
        classes: class names to count; ``None`` counts every class.
        forget_after_seconds: seconds, ``> 0``.

    Raises:
        ValueError: invalid end points or parameters.
    """

    def __init__(
        self,
        a: PointLike,
        b: PointLike,
        *,
        anchor: Anchor = "bottom_center",
        hysteresis: float = 0.02,
        classes: Iterable[str] | None = None,
        forget_after_seconds: float = 10.0,
    ) -> None:
        pa = np.asarray(a, dtype=np.float64)
        pb = np.asarray(b, dtype=np.float64)
        for name, p in (("a", pa), ("b", pb)):
            if p.shape != (2,) or not np.all(np.isfinite(p)):
                raise ValueError(f"line end point {name} must be a finite (x, y), got {p}")
            if np.any((p < 0.0) | (p > 1.0)):
                raise ValueError(
                    f"line end point {name} {tuple(p.tolist())} is outside [0, 1]: "
                    "coordinates are normalized to the frame width and height"
                )
        if math.hypot(*(pb - pa)) <= 1e-9:
            raise ValueError("line end points a and b coincide")
        if not (math.isfinite(hysteresis) and 0.0 <= hysteresis < 0.5):
            raise ValueError(f"hysteresis must be in [0, 0.5), got {hysteresis}")
        if not (math.isfinite(forget_after_seconds) and forget_after_seconds > 0):
            raise ValueError(f"forget_after_seconds must be > 0, got {forget_after_seconds}")
        self.a: Point = (float(pa[0]), float(pa[1]))
        self.b: Point = (float(pb[0]), float(pb[1]))
        self.anchor: Anchor = anchor
        self.hysteresis = hysteresis
        self.classes: frozenset[str] | None = None if classes is None else frozenset(classes)
        self.forget_after_seconds = forget_after_seconds
        self._tracks: dict[int, _TrackSide] = {}
        self._in: dict[str, int] = {}
        self._out: dict[str, int] = {}
        self._last_pts: float | None = None

    @property
    def in_count(self) -> dict[str, int]:
        """Crossings in the ``in`` direction per class since construction or reset (a copy)."""
        return dict(self._in)

    @property
    def out_count(self) -> dict[str, int]:
        """Crossings in the ``out`` direction per class since construction or reset (a copy)."""
        return dict(self._out)

    def reset(self) -> None:
        """Forget all tracks, the totals and the last timestamp."""
        self._tracks.clear()
        self._in.clear()
        self._out.clear()
        self._last_pts = None

    def update(
        self, dets: Detections, frame_w: int, frame_h: int, pts_seconds: float
    ) -> list[LineCrossing]:
        """Process one frame and return the crossings counted on it, in detection order.

        Args:
            dets: the frame's tracked detections (pixel boxes).
            frame_w: frame width in pixels.
            frame_h: frame height in pixels.
            pts_seconds: the frame's time in seconds, finite and non-decreasing.

        Raises:
            ValueError: ``dets.tracker_id`` is ``None`` (put a tracker before the counter),
                ``pts_seconds`` is not finite or went backwards (call :meth:`reset` when the
                source restarts), or invalid frame size.
        """
        check_pts(pts_seconds, self._last_pts)
        if dets.tracker_id is None:
            raise ValueError("line crossing needs tracked detections (tracker_id is None)")
        now = float(pts_seconds)
        self._last_pts = now
        crossings: list[LineCrossing] = []
        if len(dets):
            points = anchor_points(dets.xyxy, frame_w, frame_h, self.anchor)
            distances = signed_distances(points, self.a, self.b)
            for i in range(len(dets)):
                tid = int(dets.tracker_id[i])
                name = dets.class_name(i)
                if tid < 0 or (self.classes is not None and name not in self.classes):
                    continue
                crossing = self._step(tid, points[i], float(distances[i]), now)
                if crossing is None:
                    continue
                direction, crossing_point = crossing
                counts = self._in if direction == "in" else self._out
                counts[name] = counts.get(name, 0) + 1
                crossings.append(
                    LineCrossing(
                        track_id=tid,
                        class_name=name,
                        direction=direction,
                        pts_seconds=now,
                        position=(float(points[i][0]), float(points[i][1])),
                        crossing_point=crossing_point,
                        confidence=float(dets.confidence[i]),
                        box=(
                            float(dets.xyxy[i][0]),
                            float(dets.xyxy[i][1]),
                            float(dets.xyxy[i][2]),
                            float(dets.xyxy[i][3]),
                        ),
                    )
                )
        stale = [
            t for t, s in self._tracks.items() if now - s.last_seen > self.forget_after_seconds
        ]
        for tid in stale:
            del self._tracks[tid]
        return crossings

    def _step(
        self, tid: int, point: NDArray[np.float64], distance: float, now: float
    ) -> tuple[Direction, Point] | None:
        state = self._tracks.setdefault(tid, _TrackSide(0, None, now))
        state.last_seen = now
        if abs(distance) <= self.hysteresis:
            return None  # in the band: the committed side does not change
        side = 1 if distance > 0 else -1
        here: Point = (float(point[0]), float(point[1]))
        previous_side, previous = state.side, state.last_firm
        state.side, state.last_firm = side, here
        if previous is None or side == previous_side:
            return None
        if not segments_intersect(previous, here, self.a, self.b):
            return None  # went around the end of the segment
        direction: Direction = "in" if side > 0 else "out"
        return direction, segment_line_intersection(previous, here, self.a, self.b)
