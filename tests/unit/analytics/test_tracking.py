"""Tests for aios.analytics.tracking.ObjectTracker (ByteTrack wrapper)."""

from __future__ import annotations

import numpy as np
import pytest

from aios.analytics.tracking import ObjectTracker
from aios.vision.types import Detections

NAMES = ("person", "car")


def dets(boxes: list[tuple[float, float, float, float]], conf: float = 0.9) -> Detections:
    """Untracked detections of the given pixel boxes, alternating person / car."""
    n = len(boxes)
    return Detections(
        xyxy=np.array(boxes, np.float32).reshape(n, 4),
        confidence=np.full(n, conf, np.float32),
        class_id=(np.arange(n) % 2).astype(np.int32),
        class_names=NAMES,
    )


def box_at(x: float, y: float) -> tuple[float, float, float, float]:
    """A 40x80 px box with its top-left corner at (x, y)."""
    return (x, y, x + 40, y + 80)


@pytest.mark.parametrize("fps", [15.0, 30.0, 60.0])
def test_stable_distinct_ids_for_two_smoothly_moving_objects(fps: float) -> None:
    """Two separated objects moving smoothly for 30 frames keep two distinct stable ids."""
    # GIVEN a tracker and two objects moving in opposite directions, far apart
    tracker = ObjectTracker()
    ids: list[list[int]] = []
    # WHEN tracking 30 frames
    for k in range(30):
        frame = dets([box_at(50 + 4 * k, 100), box_at(600 - 4 * k, 300)])
        out = tracker.update(frame, k / fps, fps)
        assert out.tracker_id is not None
        ids.append(out.tracker_id.tolist())
    # THEN the first frame is unconfirmed, then both objects keep one id each, distinct
    assert ids[0] == []
    assert all(frame_ids == ids[1] for frame_ids in ids[1:])
    assert len(set(ids[1])) == 2


def test_output_keeps_input_order_and_values() -> None:
    """Returned detections are the confirmed input rows, in input order, with int64 ids."""
    # GIVEN three objects, the middle one with a score too low to start a track
    tracker = ObjectTracker(min_confidence=0.6)
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    frame = Detections(
        xyxy=np.array([box_at(500, 0), box_at(300, 200), box_at(10, 400)], np.float32),
        confidence=scores,
        class_id=np.array([1, 0, 0], np.int32),
        class_names=NAMES,
    )
    # WHEN the same frame is tracked twice
    tracker.update(frame, 0.0, 30.0)
    out = tracker.update(frame, 1 / 30, 30.0)
    # THEN rows 0 and 2 come back unchanged, in that order, with int64 ids
    np.testing.assert_array_equal(out.xyxy, frame.xyxy[[0, 2]])
    np.testing.assert_array_equal(out.confidence, scores[[0, 2]])
    np.testing.assert_array_equal(out.class_id, [1, 0])
    assert out.class_names == NAMES
    assert out.tracker_id is not None
    assert out.tracker_id.dtype == np.int64
    assert len(set(out.tracker_id.tolist())) == 2


@pytest.mark.parametrize(("min_frames", "first_output_frame"), [(1, 1), (2, 1), (3, 2)])
def test_confirmation_delay(min_frames: int, first_output_frame: int) -> None:
    """An object is output from its max(2, min_consecutive_frames)-th frame."""
    # GIVEN a tracker requiring min_frames consecutive frames
    tracker = ObjectTracker(min_consecutive_frames=min_frames)
    # WHEN a still object is seen on consecutive frames
    counts = [len(tracker.update(dets([box_at(100, 100)]), k / 30, 30.0)) for k in range(5)]
    # THEN it is dropped until confirmed, then output on every frame
    assert counts == [0] * first_output_frame + [1] * (5 - first_output_frame)


@pytest.mark.parametrize(
    ("fps", "gap_seconds", "same_id"),
    [
        (30.0, 0.8, True),
        (30.0, 1.2, False),
        (60.0, 0.8, True),
        (60.0, 1.2, False),
        (10.0, 0.8, True),
        (10.0, 1.2, False),
    ],
)
def test_lost_track_seconds_independent_of_fps(
    fps: float, gap_seconds: float, same_id: bool
) -> None:
    """A track survives a detector gap shorter than lost_track_seconds, at any frame rate."""
    # GIVEN a tracker with lost_track_seconds=1 and a still object seen for 0.5 s
    tracker = ObjectTracker(lost_track_seconds=1.0)
    n = int(0.5 * fps)
    out = None
    for k in range(n):
        out = tracker.update(dets([box_at(200, 200)]), k / fps, fps)
    assert out is not None and out.tracker_id is not None
    first_id = int(out.tracker_id[0])
    # WHEN the object is missing for gap_seconds worth of frames, then seen again twice
    t = (n - 1) / fps
    for _ in range(round(gap_seconds * fps)):
        t += 1 / fps
        tracker.update(dets([]), t, fps)
    ids: list[int] = []
    for _ in range(2):
        t += 1 / fps
        back = tracker.update(dets([box_at(200, 200)]), t, fps)
        assert back.tracker_id is not None
        ids += back.tracker_id.tolist()
    # THEN it keeps its id only when the gap is shorter than lost_track_seconds
    assert (ids[-1] == first_id) is same_id


def test_skipped_frames_use_timestamps() -> None:
    """With frames skipped (motion gating), the track keeps its id across the time gaps."""
    # GIVEN an object moving 3 px per 1/30 s, observed only every third frame
    tracker = ObjectTracker()
    ids = []
    # WHEN tracking with the true timestamps
    for k in range(0, 60, 3):
        out = tracker.update(dets([box_at(100 + 3 * k, 100)]), k / 30, 30.0)
        assert out.tracker_id is not None
        ids += out.tracker_id.tolist()
    # THEN a single id is used throughout
    assert len(set(ids)) == 1
    assert len(ids) == 19


def test_low_confidence_detection_does_not_start_a_track() -> None:
    """A detection below min_confidence never starts a track."""
    # GIVEN a tracker with min_confidence 0.6
    tracker = ObjectTracker(min_confidence=0.6, high_confidence=0.5)
    # WHEN an object is seen at 0.55 for 10 frames
    outs = [tracker.update(dets([box_at(50, 50)], 0.55), k / 30, 30.0) for k in range(10)]
    # THEN nothing is output
    assert all(len(o) == 0 for o in outs)


def test_empty_frames() -> None:
    """Empty input gives empty tracked output."""
    # GIVEN a tracker / WHEN fed empty frames / THEN outputs are empty with an id array
    tracker = ObjectTracker()
    out = tracker.update(dets([]), 0.0, 30.0)
    assert len(out) == 0
    assert out.tracker_id is not None and out.tracker_id.dtype == np.int64


def test_backwards_time_and_reset_never_reuses_ids() -> None:
    """Going back in time raises; after reset(), new ids continue past the old ones."""
    # GIVEN a tracker that confirmed one object
    tracker = ObjectTracker()
    for k in range(3):
        before = tracker.update(dets([box_at(10, 10)]), k / 30, 30.0)
    assert before.tracker_id is not None
    old_ids = set(before.tracker_id.tolist())
    # WHEN time goes backwards / THEN ValueError
    with pytest.raises(ValueError, match="backwards"):
        tracker.update(dets([box_at(10, 10)]), 0.0, 30.0)
    # WHEN reset and the object is tracked again from t=0
    tracker.reset()
    for k in range(3):
        after = tracker.update(dets([box_at(10, 10)]), k / 30, 30.0)
    # THEN its new id was never used before
    assert after.tracker_id is not None
    assert not old_ids & set(after.tracker_id.tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lost_track_seconds": -1.0}, "lost_track_seconds"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"iou_threshold": -0.1}, "iou_threshold"),
        ({"min_confidence": 0.3, "high_confidence": 0.5}, "high_confidence"),
        ({"min_consecutive_frames": 0}, "min_consecutive_frames"),
    ],
)
def test_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    """Out-of-range parameters raise ValueError."""
    # GIVEN a bad parameter / WHEN constructing / THEN ValueError
    with pytest.raises(ValueError, match=message):
        ObjectTracker(**kwargs)  # type: ignore[arg-type]


def test_bad_fps_and_pts() -> None:
    """Non-positive fps and non-finite pts raise ValueError."""
    # GIVEN a tracker / WHEN updating with bad values / THEN ValueError
    tracker = ObjectTracker()
    with pytest.raises(ValueError, match="fps"):
        tracker.update(dets([]), 0.0, 0.0)
    with pytest.raises(ValueError, match="pts_seconds"):
        tracker.update(dets([]), float("nan"), 30.0)
