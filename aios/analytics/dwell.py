"""Dwell time per track and loitering alerts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from aios.analytics.clock import check_pts
from aios.vision.types import Detections

TIME_EPS = 1e-9
"""Tolerance, in seconds, of duration comparisons (absorbs rounding in sums of frame times)."""


@dataclass(frozen=True, slots=True)
class LoiteringAlert:
    """A track whose current visit has lasted at least the loitering threshold.

    Attributes:
        track_id: the tracker's id.
        class_name: the track's class on the alert frame.
        dwell_seconds: ``pts_seconds - first_seen``, seconds (``>=`` the threshold).
        first_seen: time the visit started, seconds.
        pts_seconds: time of the frame on which the alert was raised, seconds.
    """

    track_id: int
    class_name: str
    dwell_seconds: float
    first_seen: float
    pts_seconds: float


@dataclass(frozen=True, slots=True)
class DwellVisit:
    """A visit that ended (the track was missing for more than ``max_gap_seconds``).

    Attributes:
        track_id: the tracker's id.
        class_name: the track's class when last seen.
        first_seen: time the visit started, seconds.
        last_seen: time the track was last seen in it, seconds.
        dwell_seconds: ``last_seen - first_seen``, seconds.
        alerted: whether a loitering alert was raised during the visit.
        pts_seconds: time of the frame on which the end was decided, seconds.
    """

    track_id: int
    class_name: str
    first_seen: float
    last_seen: float
    dwell_seconds: float
    alerted: bool
    pts_seconds: float


@dataclass(frozen=True, slots=True)
class DwellUpdate:
    """Result of one frame.

    Attributes:
        alerts: loitering alerts raised on this frame, by track id.
        ended: visits that ended on this frame, by track id.
        dwell_seconds: current dwell per track id for every open visit (tracks seen on this
            frame and tracks missing for at most ``max_gap_seconds``).
    """

    alerts: tuple[LoiteringAlert, ...]
    ended: tuple[DwellVisit, ...]
    dwell_seconds: Mapping[int, float]


@dataclass(slots=True)
class _Visit:
    first_seen: float
    last_seen: float
    class_name: str
    alerted: bool = False


class DwellTracker:
    """Measure how long each track stays among the detections it is given; alert on loitering.

    The caller passes only the detections that matter (e.g. those inside a zone:
    ``ZoneUpdate.mask``), so "dwell" is time in that area. Definitions, all on the frames'
    ``pts_seconds``:

    * A track's *visit* starts on the first frame it is given; ``dwell = last_seen -
      first_seen`` for the current visit (``0`` on its first frame).
    * A track missing for at most ``max_gap_seconds`` (a stationary object the detector misses
      for a few frames, motion-gated frames) keeps its visit: its dwell stays at its last value
      while missing and resumes, gap included, when it is seen again.
    * A track missing for longer (``now - last_seen > max_gap_seconds``) ends its visit; it is
      reported in ``DwellUpdate.ended`` on the first frame where that holds (or, if it is seen
      again first, on that frame, and a new visit starts at 0).
    * A :class:`LoiteringAlert` is raised once per track per visit, on the first frame it is
      seen with ``dwell >= threshold_seconds``.
    * Dwell is never merged across tracks: a new track id starts at 0 even at the same place.
      An identity switch by the tracker therefore starts a new dwell for the new id, and the
      old id's visit ends after ``max_gap_seconds``; its dwell is not transferred.

    Only tracked detections count (``tracker_id >= 0``). Durations are compared with a
    tolerance of ``TIME_EPS`` (1e-9 s).

    Args:
        threshold_seconds: loitering threshold, seconds, ``>= 0``.
        max_gap_seconds: longest absence that keeps a visit open, seconds, ``>= 0``.

    Raises:
        ValueError: a duration is negative or not finite.
    """

    def __init__(self, *, threshold_seconds: float, max_gap_seconds: float = 1.0) -> None:
        for name, value in (
            ("threshold_seconds", threshold_seconds),
            ("max_gap_seconds", max_gap_seconds),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0 seconds, got {value}")
        self.threshold_seconds = threshold_seconds
        self.max_gap_seconds = max_gap_seconds
        self._visits: dict[int, _Visit] = {}
        self._last_pts: float | None = None

    def dwell_of(self, track_id: int) -> float | None:
        """Current dwell of ``track_id`` in seconds, or ``None`` when it has no open visit."""
        visit = self._visits.get(track_id)
        return None if visit is None else visit.last_seen - visit.first_seen

    @property
    def dwell_seconds(self) -> dict[int, float]:
        """Current dwell per track id with an open visit, seconds (a copy)."""
        return {t: v.last_seen - v.first_seen for t, v in sorted(self._visits.items())}

    def reset(self) -> None:
        """Forget all visits and the last timestamp, without reporting them as ended."""
        self._visits.clear()
        self._last_pts = None

    def update(self, dets: Detections, pts_seconds: float) -> DwellUpdate:
        """Process one frame.

        Args:
            dets: the tracked detections to measure (e.g. those inside a zone).
            pts_seconds: the frame's time in seconds, finite and non-decreasing.

        Returns:
            This frame's alerts, ended visits and the current dwell of every open visit.

        Raises:
            ValueError: ``dets.tracker_id`` is ``None`` (put a tracker before), or
                ``pts_seconds`` is not finite or went backwards (call :meth:`reset` when the
                source restarts).
        """
        check_pts(pts_seconds, self._last_pts)
        if dets.tracker_id is None:
            raise ValueError("dwell needs tracked detections (tracker_id is None)")
        now = float(pts_seconds)
        self._last_pts = now
        ended: list[DwellVisit] = []
        alerts: list[LoiteringAlert] = []
        seen: dict[int, str] = {}
        for i in range(len(dets)):
            tid = int(dets.tracker_id[i])
            if tid >= 0:
                seen.setdefault(tid, dets.class_name(i))
        for tid, name in seen.items():
            visit = self._visits.get(tid)
            if visit is not None and now - visit.last_seen > self.max_gap_seconds + TIME_EPS:
                ended.append(self._end(tid, visit, now))
                visit = None
            if visit is None:
                visit = self._visits[tid] = _Visit(now, now, name)
            visit.last_seen, visit.class_name = now, name
            dwell = now - visit.first_seen
            if not visit.alerted and dwell >= self.threshold_seconds - TIME_EPS:
                visit.alerted = True
                alerts.append(LoiteringAlert(tid, name, dwell, visit.first_seen, now))
        for tid in [t for t in self._visits if t not in seen]:
            visit = self._visits[tid]
            if now - visit.last_seen > self.max_gap_seconds + TIME_EPS:
                del self._visits[tid]
                ended.append(self._end(tid, visit, now))
        return DwellUpdate(
            alerts=tuple(sorted(alerts, key=lambda a: a.track_id)),
            ended=tuple(sorted(ended, key=lambda v: v.track_id)),
            dwell_seconds=self.dwell_seconds,
        )

    @staticmethod
    def _end(tid: int, visit: _Visit, now: float) -> DwellVisit:
        return DwellVisit(
            track_id=tid,
            class_name=visit.class_name,
            first_seen=visit.first_seen,
            last_seen=visit.last_seen,
            dwell_seconds=visit.last_seen - visit.first_seen,
            alerted=visit.alerted,
            pts_seconds=now,
        )
