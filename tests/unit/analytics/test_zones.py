"""Tests for aios.analytics.zones.ZoneTracker: membership, entries, exits, occupancy."""

from __future__ import annotations

import numpy as np
import pytest

from aios.analytics.zones import ZoneTracker, ZoneTransition
from aios.vision.types import Detections

W, H = 100, 100
NAMES = ("person", "car")
LEFT_HALF = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]


def dets(*objs: tuple[int, float, float, str], tracked: bool = True) -> Detections:
    """Detections of (track_id, anchor_x_px, bottom_y_px, class) with 10x20 px boxes."""
    xyxy = np.array([[x - 5, y - 20, x + 5, y] for _, x, y, _ in objs], np.float32).reshape(-1, 4)
    return Detections(
        xyxy=xyxy,
        confidence=np.full(len(objs), 0.9, np.float32),
        class_id=np.array([NAMES.index(c) for *_, c in objs], np.int32),
        class_names=NAMES,
        tracker_id=np.array([t for t, *_ in objs], np.int64) if tracked else None,
    )


def test_enter_on_first_inside_frame_and_mask() -> None:
    """A track enters on its first inside frame; the mask marks in-zone detections."""
    # GIVEN a left-half zone and two tracks, one in each half
    zone = ZoneTracker(LEFT_HALF)
    # WHEN updating with one frame
    up = zone.update(dets((1, 20, 50, "person"), (2, 80, 50, "person")), W, H, 0.0)
    # THEN track 1 entered, the mask selects it, occupancy counts it
    assert [(t.track_id, t.reason, t.dwell_seconds) for t in up.entered] == [(1, "entered", None)]
    assert up.mask.tolist() == [True, False]
    assert up.exited == ()
    assert up.occupancy == {"person": 1}
    assert up.occupancy_changed
    assert zone.inside_track_ids == {1}


def test_anchor_on_zone_edge_and_vertex_is_inside() -> None:
    """An anchor exactly on an edge or on a vertex of the zone is inside."""
    # GIVEN a zone whose right edge is x = 0.5 and vertex at (0.5, 1.0)
    zone = ZoneTracker(LEFT_HALF)
    # WHEN one anchor lies on the edge and one on the bottom-right vertex
    up = zone.update(dets((1, 50, 50, "person"), (2, 50, 100, "person")), W, H, 0.0)
    # THEN both are inside
    assert up.mask.tolist() == [True, True]
    assert {t.track_id for t in up.entered} == {1, 2}


def test_last_pixel_row_and_box_below_frame_inside_zone_reaching_bottom() -> None:
    """Boxes ending on the last pixel row or below the frame are inside a zone reaching y=1."""
    # GIVEN a zone covering the bottom band of a 640x480 frame
    zone = ZoneTracker([(0.0, 0.8), (1.0, 0.8), (1.0, 1.0), (0.0, 1.0)])
    boxes = Detections(
        xyxy=np.array([[10, 400, 50, 480], [100, 420, 160, 530], [300, 100, 340, 380]], np.float32),
        confidence=np.full(3, 0.9, np.float32),
        class_id=np.zeros(3, np.int32),
        class_names=NAMES,
        tracker_id=np.array([1, 2, 3], np.int64),
    )
    # WHEN updating
    up = zone.update(boxes, 640, 480, 0.0)
    # THEN the last-row box and the below-frame box are inside; the high box is not
    assert up.mask.tolist() == [True, True, False]


def test_exit_after_grace_only() -> None:
    """Exit needs the anchor outside for exit_grace_seconds; shorter excursions don't exit."""
    # GIVEN a zone with 0.5 s grace at 10 fps and a track that enters at t=0
    zone = ZoneTracker(LEFT_HALF, exit_grace_seconds=0.5)
    zone.update(dets((1, 40, 50, "person")), W, H, 0.0)
    # WHEN it jitters out for 0.3 s then back in
    for k in range(1, 4):
        assert zone.update(dets((1, 55, 50, "person")), W, H, k / 10).exited == ()
    assert zone.update(dets((1, 45, 50, "person")), W, H, 0.4).entered == ()
    # THEN no exit or re-entry; WHEN it then stays out from t=0.5
    exits: list[ZoneTransition] = []
    for k in range(5, 11):
        exits += zone.update(dets((1, 60, 50, "person")), W, H, k / 10).exited
    # THEN it exits once, at t=1.0 (0.5 s after first seen outside), dwell = 0.4 s
    assert len(exits) == 1
    assert exits[0].reason == "left"
    assert exits[0].pts_seconds == pytest.approx(1.0)
    assert exits[0].dwell_seconds == pytest.approx(0.4)
    assert zone.inside_track_ids == frozenset()


def test_zero_grace_exits_on_first_outside_frame() -> None:
    """With exit_grace_seconds=0 the exit is reported on the first outside frame."""
    # GIVEN a zero-grace zone with a track inside
    zone = ZoneTracker(LEFT_HALF, exit_grace_seconds=0.0)
    zone.update(dets((1, 40, 50, "person")), W, H, 0.0)
    # WHEN the anchor is seen outside
    up = zone.update(dets((1, 60, 50, "person")), W, H, 0.1)
    # THEN it exits at once and the mask no longer selects it
    assert [(t.track_id, t.reason) for t in up.exited] == [(1, "left")]
    assert up.mask.tolist() == [False]


def test_brief_detector_miss_does_not_exit_or_reenter() -> None:
    """A track inside that is missing briefly neither exits nor re-enters."""
    # GIVEN a track inside a zone with lost_track_seconds = 1.0
    zone = ZoneTracker(LEFT_HALF, lost_track_seconds=1.0)
    zone.update(dets((1, 30, 50, "person")), W, H, 0.0)
    # WHEN it is missing for 0.9 s and then seen inside again
    events = []
    for k in range(1, 10):
        up = zone.update(dets(), W, H, k / 10)
        events += [*up.entered, *up.exited]
    up = zone.update(dets((1, 30, 50, "person")), W, H, 1.0)
    events += [*up.entered, *up.exited]
    # THEN there is no transition at all
    assert events == []
    assert zone.inside_track_ids == {1}


def test_lost_track_exits_with_reason_lost() -> None:
    """A track unseen for more than lost_track_seconds exits with reason "lost"."""
    # GIVEN a track inside from t=0 to t=0.2
    zone = ZoneTracker(LEFT_HALF, lost_track_seconds=1.0)
    for k in range(3):
        zone.update(dets((1, 30, 50, "person")), W, H, k / 10)
    # WHEN nothing is seen afterwards
    exits = []
    for k in range(3, 15):
        exits += [(k, t) for t in zone.update(dets(), W, H, k / 10).exited]
    # THEN it exits once, at the first frame more than 1 s after last seen, dwell 0.2 s
    assert len(exits) == 1
    k, t = exits[0]
    assert k == 13
    assert (t.track_id, t.reason) == (1, "lost")
    assert t.dwell_seconds == pytest.approx(0.2)
    assert t.box == (25.0, 30.0, 35.0, 50.0)


def test_exit_decided_while_missing_after_seen_outside() -> None:
    """A track seen outside and then gone exits as "left" once the grace has run out."""
    # GIVEN a track inside, then seen outside once at t=0.1, then never again
    zone = ZoneTracker(LEFT_HALF, exit_grace_seconds=0.5, lost_track_seconds=2.0)
    zone.update(dets((1, 30, 50, "person")), W, H, 0.0)
    zone.update(dets((1, 70, 50, "person")), W, H, 0.1)
    # WHEN time passes with empty frames
    exits = []
    for k in range(2, 8):
        exits += [(k, t.reason) for t in zone.update(dets(), W, H, k / 10).exited]
    # THEN it exits as "left" at t=0.6
    assert exits == [(6, "left")]


def test_reentry_after_exit_is_a_new_entry() -> None:
    """After a confirmed exit, coming back in is a new entry."""
    # GIVEN a zero-grace zone and a track that enters and leaves
    zone = ZoneTracker(LEFT_HALF, exit_grace_seconds=0.0)
    zone.update(dets((1, 30, 50, "person")), W, H, 0.0)
    zone.update(dets((1, 70, 50, "person")), W, H, 0.1)
    # WHEN it comes back
    up = zone.update(dets((1, 30, 50, "person")), W, H, 0.2)
    # THEN it enters again
    assert [t.track_id for t in up.entered] == [1]


def test_occupancy_drops_to_zero_on_empty_frame() -> None:
    """Occupancy counts only the current frame: an empty frame gives 0 immediately."""
    # GIVEN a person-and-car zone with two people and a car inside
    zone = ZoneTracker(LEFT_HALF, classes={"person", "car"})
    up = zone.update(
        dets((1, 10, 50, "person"), (2, 20, 50, "person"), (3, 30, 50, "car")), W, H, 0.0
    )
    assert up.occupancy == {"car": 1, "person": 2}
    # WHEN the next frame is empty
    up = zone.update(dets(), W, H, 0.1)
    # THEN occupancy is zero right away, changed is set, and no exit has happened yet
    assert up.occupancy == {"car": 0, "person": 0}
    assert up.occupancy_changed
    assert up.exited == ()
    assert zone.peak_occupancy == {"car": 1, "person": 2}


def test_class_filter_ignores_other_classes() -> None:
    """Detections of classes not configured are neither masked, counted nor tracked."""
    # GIVEN a person-only zone
    zone = ZoneTracker(LEFT_HALF, classes={"person"})
    # WHEN a car and a person are inside
    up = zone.update(dets((1, 10, 50, "car"), (2, 20, 50, "person")), W, H, 0.0)
    # THEN only the person counts
    assert up.mask.tolist() == [False, True]
    assert [t.track_id for t in up.entered] == [2]
    assert up.occupancy == {"person": 1}


def test_untracked_detections_count_without_transitions() -> None:
    """Without tracker ids, mask and occupancy work and no transitions are reported."""
    # GIVEN untracked detections
    zone = ZoneTracker(LEFT_HALF)
    # WHEN updating
    up = zone.update(dets((0, 10, 50, "person"), tracked=False), W, H, 0.0)
    # THEN the detection is masked and counted, without entries
    assert up.mask.tolist() == [True]
    assert up.occupancy == {"person": 1}
    assert up.entered == ()


def test_one_box_never_in_two_disjoint_zones() -> None:
    """A detection is never inside two disjoint zones."""
    # GIVEN two disjoint zones side by side with a 1 px gap
    left = ZoneTracker([(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)])
    right = ZoneTracker([(0.51, 0.0), (1.0, 0.0), (1.0, 1.0), (0.51, 1.0)])
    objs = [(i, float(x), 50.0, "person") for i, x in enumerate(np.arange(0, 100.5, 0.5))]
    # WHEN many anchors across the frame are tested
    a = left.update(dets(*objs), W, H, 0.0).mask
    b = right.update(dets(*objs), W, H, 0.0).mask
    # THEN no detection is in both
    assert not np.any(a & b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exit_grace_seconds": -1.0}, "exit_grace_seconds"),
        ({"lost_track_seconds": float("nan")}, "lost_track_seconds"),
    ],
)
def test_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    """Negative or non-finite durations raise ValueError."""
    # GIVEN a bad duration / WHEN constructing / THEN ValueError
    with pytest.raises(ValueError, match=message):
        ZoneTracker(LEFT_HALF, **kwargs)  # type: ignore[arg-type]


def test_bad_polygon_and_backwards_time() -> None:
    """An invalid polygon and a timestamp going backwards raise ValueError."""
    # GIVEN a self-intersecting polygon / WHEN constructing / THEN ValueError
    with pytest.raises(ValueError, match="self-intersecting"):
        ZoneTracker([(0.1, 0.1), (0.9, 0.9), (0.9, 0.1), (0.1, 0.9)])
    # GIVEN a zone at t=1 / WHEN updating with t=0.5 / THEN ValueError; reset() allows it
    zone = ZoneTracker(LEFT_HALF)
    zone.update(dets(), W, H, 1.0)
    with pytest.raises(ValueError, match="backwards"):
        zone.update(dets(), W, H, 0.5)
    zone.reset()
    zone.update(dets(), W, H, 0.5)
