"""Zone analytics: which detections are inside a polygon, and when tracks enter and exit it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from aios.analytics.clock import check_pts
from aios.analytics.counting import OccupancyCounter
from aios.analytics.dwell import TIME_EPS
from aios.analytics.geometry import Anchor, anchor_points, points_in_polygon, validate_polygon
from aios.vision.types import Detections

TransitionReason = Literal["entered", "left", "lost"]
"""``entered``: the anchor was seen inside; ``left``: seen outside for the exit grace period;
``lost``: the track was not seen at all for ``lost_track_seconds``."""

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class ZoneTransition:
    """A track entering or exiting a zone.

    Attributes:
        track_id: the tracker's id.
        class_name: the track's class on the frame it was last seen.
        confidence: detection score on the frame it was last seen.
        box: ``x1, y1, x2, y2`` in pixels, unclipped, as last seen (for ``lost`` exits and exits
            decided while the track is missing: its last observation).
        pts_seconds: time of the frame on which the transition is reported (the ``update``
            call's ``pts_seconds``): for ``left``, the first frame at which the anchor had been
            outside for ``exit_grace_seconds``; for ``lost``, the first frame at which the track
            had been missing for more than ``lost_track_seconds``.
        dwell_seconds: for exits, time from entering to the last frame the anchor was seen
            inside (``last_inside - entered``, seconds); ``None`` for entries.
        reason: ``"entered"``, ``"left"`` or ``"lost"``.
    """

    track_id: int
    class_name: str
    confidence: float
    box: Box
    pts_seconds: float
    dwell_seconds: float | None
    reason: TransitionReason


@dataclass(frozen=True, slots=True)
class ZoneUpdate:
    """What a zone saw in one frame.

    Attributes:
        mask: ``(N,)`` bool over the update's detections: true where the detection's anchor is
            inside the zone (edges included) and its class is counted. ``detections.select(mask)``
            gives the in-zone detections to pass downstream.
        entered: tracks that entered on this frame, in detection order.
        exited: tracks whose exit was decided on this frame, by track id.
        occupancy: number of this frame's in-zone detections per class (see
            :class:`aios.analytics.counting.OccupancyUpdate` for the keys); tracked or not.
        occupancy_changed: whether ``occupancy`` differs from the previous frame's.
    """

    mask: NDArray[np.bool_]
    entered: tuple[ZoneTransition, ...]
    exited: tuple[ZoneTransition, ...]
    occupancy: Mapping[str, int]
    occupancy_changed: bool


@dataclass(slots=True)
class _Visit:
    entered: float
    last_inside: float
    last_seen: float
    outside_since: float | None
    class_name: str
    confidence: float
    box: Box


class ZoneTracker:
    """Follow one polygonal zone: per-frame membership, occupancy, and track entries and exits.

    A detection is *in* the zone when its anchor point (see
    :func:`aios.analytics.geometry.anchor_points`, computed from the unclipped box and clamped to
    the frame) is inside the polygon, edges and vertices included
    (:func:`aios.analytics.geometry.points_in_polygon`). Two zones sharing an edge therefore both
    contain an anchor lying exactly on that edge; zones that do not touch (more than 2e-9
    apart) never share a detection.

    Entries and exits follow tracks (``Detections.tracker_id``; detections without a track id,
    or with a negative one, count in ``mask`` and ``occupancy`` only):

    * **enter**: on the first frame a track's anchor is inside (no delay).
    * **exit, "left"**: once the anchor has been *observed outside* -- with no inside
      observation since -- for at least ``exit_grace_seconds``, measured from the first outside
      observation to the current frame's time (frames where the track is missing do not reset
      the timer). Hysteresis against anchors jittering on the edge: an excursion outside
      shorter than the grace period does not exit. ``exit_grace_seconds = 0`` exits on the first
      outside frame.
    * **exit, "lost"**: when the track has not been seen at all (in or out) for more than
      ``lost_track_seconds``. A track inside that is briefly missing (detector miss,
      occlusion) does *not* exit and re-enter. Choose a value ``>=`` the tracker's
      ``lost_track_seconds``.
    * Re-entering after an exit is a new entry.
    * Durations are compared with a tolerance of ``aios.analytics.dwell.TIME_EPS`` (1e-9 s).

    Class filter: detections of classes not in ``classes`` are ignored entirely (as if absent),
    so a track whose label flickers to an ignored class is "missing" on those frames.

    ``occupancy`` counts only the current frame's in-zone detections: when the scene empties the
    counts drop to 0 on that frame, while tracks still in their grace or lost period have not
    exited yet.

    Args:
        polygon: ``(M, 2)`` vertices in normalized coordinates (see
            :func:`aios.analytics.geometry.validate_polygon`).
        anchor: which point of a box is tested (default ``"bottom_center"``).
        classes: class names to consider; ``None`` considers every class.
        exit_grace_seconds: seconds, ``>= 0``.
        lost_track_seconds: seconds, ``>= 0``.

    Raises:
        ValueError: invalid polygon (message from ``validate_polygon``) or negative durations.
    """

    def __init__(
        self,
        polygon: ArrayLike,
        *,
        anchor: Anchor = "bottom_center",
        classes: Iterable[str] | None = None,
        exit_grace_seconds: float = 0.5,
        lost_track_seconds: float = 1.0,
    ) -> None:
        self._polygon = validate_polygon(polygon)
        for name, value in (
            ("exit_grace_seconds", exit_grace_seconds),
            ("lost_track_seconds", lost_track_seconds),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0 seconds, got {value}")
        self.anchor: Anchor = anchor
        self.classes: frozenset[str] | None = None if classes is None else frozenset(classes)
        self.exit_grace_seconds = exit_grace_seconds
        self.lost_track_seconds = lost_track_seconds
        self._occupancy = OccupancyCounter(self.classes)
        self._visits: dict[int, _Visit] = {}
        self._last_pts: float | None = None

    @property
    def polygon(self) -> NDArray[np.float64]:
        """The zone's ``(M, 2)`` vertices, normalized (a copy)."""
        return self._polygon.copy()

    @property
    def inside_track_ids(self) -> frozenset[int]:
        """Tracks that entered and have not exited yet (including missing ones in grace)."""
        return frozenset(self._visits)

    @property
    def occupancy(self) -> dict[str, int]:
        """Per-class counts of the last frame (a copy)."""
        return self._occupancy.counts

    @property
    def peak_occupancy(self) -> dict[str, int]:
        """Highest per-frame count per class since construction or :meth:`reset`."""
        return self._occupancy.peak

    def reset(self) -> None:
        """Forget all tracks, counts and the last timestamp, without reporting exits."""
        self._visits.clear()
        self._occupancy.reset()
        self._last_pts = None

    def contains(self, detections: Detections, frame_w: int, frame_h: int) -> NDArray[np.bool_]:
        """Return the ``(N,)`` mask of detections whose anchor is inside, class filter applied."""
        n = len(detections)
        if n == 0:
            return np.zeros(0, dtype=np.bool_)
        points = anchor_points(detections.xyxy, frame_w, frame_h, self.anchor)
        return points_in_polygon(points, self._polygon) & self._allowed(detections)

    def _allowed(self, detections: Detections) -> NDArray[np.bool_]:
        n = len(detections)
        if self.classes is None:
            return np.ones(n, dtype=np.bool_)
        return np.array([detections.class_name(i) in self.classes for i in range(n)], np.bool_)

    def update(
        self, dets: Detections, frame_w: int, frame_h: int, pts_seconds: float
    ) -> ZoneUpdate:
        """Process one frame.

        Args:
            dets: the frame's detections, pixel boxes, normally tracked.
            frame_w: frame width in pixels.
            frame_h: frame height in pixels.
            pts_seconds: the frame's time in seconds, finite and non-decreasing.

        Returns:
            The in-zone mask, this frame's entries and exits, and the occupancy.

        Raises:
            ValueError: ``pts_seconds`` is not finite or went backwards (call :meth:`reset`
                when the source restarts), or invalid frame size.
        """
        now = check_pts(pts_seconds, self._last_pts)
        self._last_pts = now
        mask = self.contains(dets, frame_w, frame_h)
        ids = dets.tracker_id
        entered: list[ZoneTransition] = []
        seen: set[int] = set()
        allowed = self._allowed(dets)
        if ids is not None:
            for i in range(len(dets)):
                tid = int(ids[i])
                if tid < 0 or not allowed[i]:
                    continue
                seen.add(tid)
                name = dets.class_name(i)
                conf = float(dets.confidence[i])
                x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
                box: Box = (x1, y1, x2, y2)
                visit = self._visits.get(tid)
                if mask[i]:
                    if visit is None:
                        self._visits[tid] = _Visit(now, now, now, None, name, conf, box)
                        entered.append(ZoneTransition(tid, name, conf, box, now, None, "entered"))
                        continue
                    visit.last_inside = now
                    visit.outside_since = None
                elif visit is None:
                    continue  # outside and not in the zone: nothing to follow
                elif visit.outside_since is None:
                    visit.outside_since = now
                visit.last_seen = now
                visit.class_name, visit.confidence, visit.box = name, conf, box

        exited: list[ZoneTransition] = []
        for tid in sorted(self._visits):
            visit = self._visits[tid]
            reason: TransitionReason
            if (
                visit.outside_since is not None
                and now - visit.outside_since >= self.exit_grace_seconds - TIME_EPS
            ):
                reason = "left"
            elif tid not in seen and now - visit.last_seen > self.lost_track_seconds + TIME_EPS:
                reason = "lost"
            else:
                continue
            del self._visits[tid]
            exited.append(
                ZoneTransition(
                    tid,
                    visit.class_name,
                    visit.confidence,
                    visit.box,
                    now,
                    visit.last_inside - visit.entered,
                    reason,
                )
            )
        occupancy = self._occupancy.update(dets.select(mask))
        return ZoneUpdate(
            mask=mask,
            entered=tuple(entered),
            exited=tuple(exited),
            occupancy=occupancy.counts,
            occupancy_changed=occupancy.changed,
        )
