"""Multi-object tracking: give each detected object a stable id across frames.

:class:`ObjectTracker` wraps Roboflow's ``trackers.ByteTrackTracker`` (ByteTrack: Zhang et al.,
"ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV 2022) and converts
between :class:`aios.vision.types.Detections` and ``supervision.Detections``. Everything
downstream (zones, lines, dwell) keys on the track ids it assigns.
"""

from __future__ import annotations

import math

import numpy as np
import supervision as sv
from numpy.typing import NDArray
from trackers import ByteTrackTracker

from aios.analytics.clock import check_pts
from aios.vision.types import Detections

_LIBRARY_FPS = 30.0
"""``ByteTrackTracker`` counts ``lost_track_buffer`` in frames *of a 30 fps video*."""

_INDEX_KEY = "aios_input_index"


class ObjectTracker:
    """Assign stable track ids to detections, frame after frame (ByteTrack).

    Time is measured on the frames' presentation timestamps (``pts_seconds``), so skipped or
    motion-gated frames are handled: the Kalman filter predicts over the real elapsed time and a
    track is dropped after ``lost_track_seconds`` of *time* without a matching detection, not
    after a number of frames.

    Output semantics:

    * Only detections that belong to a *confirmed* track are returned; each carries its
      ``tracker_id`` (int64, ``>= 0``). Detections the tracker has not confirmed are dropped,
      because every analytic downstream keys on track ids. That drops: a new object's first
      ``max(2, min_consecutive_frames) - 1`` frames (the library never confirms a track on the
      frame that creates it), detections below ``min_confidence`` that match no existing track,
      and every detection of an update the library skips (see below).
    * The returned detections keep the input order (a subsequence of the input) and their
      exact boxes, scores, classes and ``class_names``.
    * Association is class-agnostic (as in ByteTrack): a track's class is whatever the
      detector says on each frame, so a flickering label can change ``class_name`` between
      frames of one track.
    * Ids are unique for the lifetime of the object, also across :meth:`reset`: a reset
      starts a fresh library tracker but ids continue from the highest id handed out.

    Args:
        lost_track_seconds: how long a confirmed track survives without a matching detection
            (occlusion, detector misses), in seconds, ``>= 0``. Passed to the library as
            ``lost_track_buffer = round(lost_track_seconds * 30)`` (the library counts this
            buffer in 30 fps frames and, in timestamp mode, prunes a track once its time without
            update exceeds ``lost_track_buffer / 30`` seconds), so the effective value is
            quantised to 1/30 s.
        min_confidence: minimum detection score, in ``[0, 1]``, to *start* a new track
            (library ``track_activation_threshold``).
        high_confidence: score, in ``[0, 1]``, separating ByteTrack's first association stage
            (high-score boxes) from its second (low-score boxes may only continue existing
            tracks) (library ``high_conf_det_threshold``). Must be ``<= min_confidence``: only
            high-score boxes can start tracks, so a lower ``min_confidence`` would silently not
            apply.
        min_consecutive_frames: consecutive matched frames before a track is confirmed and
            output, ``>= 1`` (library ``minimum_consecutive_frames``; values 1 and 2 both
            confirm on an object's 2nd frame).
        iou_threshold: minimum IoU, in ``[0, 1]``, between a track's predicted box and a
            detection to associate them (library ``minimum_iou_threshold``).

    Raises:
        ValueError: a parameter is out of range.
    """

    def __init__(
        self,
        *,
        lost_track_seconds: float = 1.0,
        min_confidence: float = 0.6,
        high_confidence: float = 0.5,
        min_consecutive_frames: int = 2,
        iou_threshold: float = 0.1,
    ) -> None:
        if not (math.isfinite(lost_track_seconds) and lost_track_seconds >= 0):
            raise ValueError(f"lost_track_seconds must be >= 0, got {lost_track_seconds}")
        for name, value in (
            ("min_confidence", min_confidence),
            ("high_confidence", high_confidence),
            ("iou_threshold", iou_threshold),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if high_confidence > min_confidence:
            raise ValueError(
                f"high_confidence ({high_confidence}) must be <= min_confidence "
                f"({min_confidence}): only high-confidence detections can start a track"
            )
        if min_consecutive_frames < 1:
            raise ValueError(f"min_consecutive_frames must be >= 1, got {min_consecutive_frames}")
        self.lost_track_seconds = lost_track_seconds
        self.min_confidence = min_confidence
        self.high_confidence = high_confidence
        self.min_consecutive_frames = min_consecutive_frames
        self.iou_threshold = iou_threshold
        self._tracker: ByteTrackTracker | None = None
        self._fps: float | None = None
        self._last_pts: float | None = None
        self._id_offset = 0  # added to library ids, so ids stay unique across resets
        self._next_id = 0  # one more than the highest id returned so far

    @property
    def fps(self) -> float | None:
        """Frame rate the library tracker was built with (``None`` before the first update)."""
        return self._fps

    def reset(self) -> None:
        """Forget all tracks (e.g. when the source restarts); ids are never reused."""
        self._tracker = None
        self._fps = None
        self._last_pts = None
        self._id_offset = self._next_id

    def _make_tracker(self, fps: float) -> ByteTrackTracker:
        return ByteTrackTracker(
            lost_track_buffer=round(self.lost_track_seconds * _LIBRARY_FPS),
            frame_rate=fps,
            track_activation_threshold=self.min_confidence,
            minimum_consecutive_frames=self.min_consecutive_frames,
            minimum_iou_threshold=self.iou_threshold,
            high_conf_det_threshold=self.high_confidence,
        )

    def update(self, detections: Detections, pts_seconds: float, fps: float) -> Detections:
        """Track one frame's detections and return those on confirmed tracks, with ids.

        Args:
            detections: the frame's detections (boxes in pixels, unclipped); any
                ``tracker_id`` they carry is ignored.
            pts_seconds: the frame's presentation time in seconds; must be finite and
                non-decreasing from one call to the next (an equal value is accepted: the
                library then matches without predicting motion, and emits a ``UserWarning``).
            fps: nominal frame rate of the source, ``> 0``. The value given on the first
                update (after construction or :meth:`reset`) fixes the library's time unit for
                its Kalman filter; later values are ignored, since elapsed time comes from
                ``pts_seconds``.

        Returns:
            The detections on confirmed tracks, in input order, with ``tracker_id`` (int64).

        Raises:
            ValueError: ``pts_seconds`` is not finite or is earlier than the previous call's
                (call :meth:`reset` when a source restarts), or ``fps`` is not positive.
        """
        check_pts(pts_seconds, self._last_pts)
        if self._tracker is None:
            if not (math.isfinite(fps) and fps > 0):
                raise ValueError(f"fps must be a positive number, got {fps}")
            self._tracker = self._make_tracker(fps)
            self._fps = fps
        self._last_pts = pts_seconds

        n = len(detections)
        sv_in = sv.Detections(
            xyxy=detections.xyxy.astype(np.float32, copy=True).reshape(n, 4),
            confidence=detections.confidence.astype(np.float32, copy=True),
            class_id=detections.class_id.astype(int, copy=True),
            data={_INDEX_KEY: np.arange(n)},
        )
        sv_out = self._tracker.update(sv_in, timestamp=pts_seconds)
        library_ids = np.asarray(sv_out.tracker_id, dtype=np.int64).reshape(-1)
        if len(library_ids) == 0:
            return _with_ids(detections, np.zeros(0, dtype=np.int64), np.zeros(0, np.int64))
        indices = np.asarray(sv_out.data[_INDEX_KEY], dtype=np.int64).reshape(-1)
        confirmed = library_ids >= 0
        indices, ids = indices[confirmed], library_ids[confirmed] + self._id_offset
        order = np.argsort(indices, kind="stable")
        indices, ids = indices[order], ids[order]
        if len(ids):
            self._next_id = max(self._next_id, int(ids.max()) + 1)
        return _with_ids(detections, indices, ids)


def _with_ids(
    detections: Detections, indices: NDArray[np.int64], ids: NDArray[np.int64]
) -> Detections:
    return Detections(
        xyxy=detections.xyxy[indices],
        confidence=detections.confidence[indices],
        class_id=detections.class_id[indices],
        class_names=detections.class_names,
        tracker_id=ids.astype(np.int64, copy=False),
    )
