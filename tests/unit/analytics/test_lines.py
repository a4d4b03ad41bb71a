"""Tests for aios.analytics.lines.LineCrossingCounter: hysteresis, segment, direction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from aios.analytics.lines import LineCrossing, LineCrossingCounter
from aios.vision.types import Detections

W, H = 1000, 1000
NAMES = ("person", "car")
# Horizontal line y = 0.5 from x = 0.2 to x = 0.8, drawn left to right.
A, B = (0.2, 0.5), (0.8, 0.5)


def dets(*objs: tuple[int, float, float], cls: str = "person") -> Detections:
    """Detections of (track_id, anchor_x, anchor_y) with normalized bottom-centre anchors."""
    xyxy = [[x * W - 10, y * H - 40, x * W + 10, y * H] for _, x, y in objs]
    return Detections(
        xyxy=np.array(xyxy, np.float32).reshape(-1, 4),
        confidence=np.full(len(objs), 0.9, np.float32),
        class_id=np.full(len(objs), NAMES.index(cls), np.int32),
        class_names=NAMES,
        tracker_id=np.array([t for t, _, _ in objs], np.int64),
    )


class Walker:
    """Feeds one counter anchor paths at 10 fps, keeping its clock running between paths."""

    def __init__(self, counter: LineCrossingCounter) -> None:
        self.counter = counter
        self.frame = 0

    def run(self, path: Sequence[tuple[float, float]], tid: int = 1) -> list[LineCrossing]:
        """Feed one track's anchor path, one frame per point, and collect the crossings."""
        out: list[LineCrossing] = []
        for x, y in path:
            out += self.counter.update(dets((tid, x, y)), W, H, self.frame / 10)
            self.frame += 1
        return out


def test_downward_crossing_is_in() -> None:
    """Moving down across a left-to-right horizontal line is "in" (y points down)."""
    # GIVEN a counter on a horizontal line drawn left to right
    counter = LineCrossingCounter(A, B)
    walker = Walker(counter)
    # WHEN a track walks down from y=0.3 to y=0.7
    crossings = walker.run([(0.5, y) for y in np.linspace(0.3, 0.7, 9)])
    # THEN exactly one "in" crossing is counted, at the line
    assert [c.direction for c in crossings] == ["in"]
    assert crossings[0].crossing_point == pytest.approx((0.5, 0.5))
    assert counter.in_count == {"person": 1}
    assert counter.out_count == {}


@pytest.mark.parametrize(
    ("a", "b", "path", "direction"),
    [
        (A, B, [(0.5, 0.7), (0.5, 0.3)], "out"),  # up across a left-to-right line
        (B, A, [(0.5, 0.3), (0.5, 0.7)], "out"),  # down across a right-to-left line
        ((0.5, 0.0), (0.5, 1.0), [(0.7, 0.5), (0.3, 0.5)], "in"),  # leftwards, line drawn down
        ((0.5, 0.0), (0.5, 1.0), [(0.3, 0.5), (0.7, 0.5)], "out"),
    ],
)
def test_direction_sign(
    a: tuple[float, float],
    b: tuple[float, float],
    path: list[tuple[float, float]],
    direction: str,
) -> None:
    """ "in" is from the left to the right side of a -> b as seen on screen."""
    # GIVEN a directed line / WHEN a track crosses it / THEN the direction matches
    assert [c.direction for c in Walker(LineCrossingCounter(a, b)).run(path)] == [direction]


def test_jump_across_between_two_frames_counted_once() -> None:
    """An object jumping across the line between consecutive frames is counted once."""
    # GIVEN a track far above the line, then far below on the next frame, then staying
    counter = LineCrossingCounter(A, B)
    walker = Walker(counter)
    # WHEN it is followed for several frames
    crossings = walker.run([(0.4, 0.2), (0.6, 0.8), (0.6, 0.85), (0.6, 0.9)])
    # THEN one crossing, at the second frame, where the straight path meets the line
    assert len(crossings) == 1
    assert crossings[0].pts_seconds == pytest.approx(0.1)
    assert crossings[0].crossing_point == pytest.approx((0.5, 0.5))
    assert crossings[0].position == pytest.approx((0.6, 0.8))


def test_jitter_within_band_never_counted() -> None:
    """Jitter back and forth across the line inside the hysteresis band is never counted."""
    # GIVEN a track firmly above the line, then jittering +-0.015 around it (band 0.02)
    counter = LineCrossingCounter(A, B, hysteresis=0.02)
    walker = Walker(counter)
    path = [(0.5, 0.4)] + [(0.5, 0.5 + (0.015 if k % 2 else -0.015)) for k in range(40)]
    # WHEN followed / THEN nothing is counted
    assert walker.run(path) == []
    # AND returning firmly to the same side is not a crossing either
    assert walker.run([(0.5, 0.45)]) == []


def test_band_frames_then_real_crossing_counted_once() -> None:
    """Lingering in the band then leaving on the other side counts exactly one crossing."""
    # GIVEN a track that approaches, lingers in the band on both sides, and leaves below
    counter = LineCrossingCounter(A, B)
    walker = Walker(counter)
    path = [(0.5, 0.4), (0.5, 0.49), (0.5, 0.51), (0.5, 0.49), (0.5, 0.515), (0.5, 0.6)]
    # WHEN followed / THEN one "in" crossing, on the first firm frame below
    crossings = walker.run(path)
    assert [(c.direction, round(c.pts_seconds, 3)) for c in crossings] == [("in", 0.5)]


def test_crossing_back_is_opposite_direction() -> None:
    """A real crossing back is counted as the opposite direction."""
    # GIVEN a track that crosses down then back up
    counter = LineCrossingCounter(A, B)
    walker = Walker(counter)
    # WHEN followed
    crossings = walker.run([(0.5, 0.3), (0.5, 0.7), (0.5, 0.3)])
    # THEN "in" then "out"
    assert [c.direction for c in crossings] == ["in", "out"]
    assert counter.in_count == {"person": 1}
    assert counter.out_count == {"person": 1}


def test_passing_beside_segment_end_not_counted() -> None:
    """An object passing beside the end of the segment is not counted."""
    # GIVEN a segment from x=0.2 to x=0.8 and a track moving down at x=0.9
    counter = LineCrossingCounter(A, B)
    walker = Walker(counter)
    # WHEN it crosses the infinite line beyond the segment's end
    crossings = walker.run([(0.9, 0.3), (0.9, 0.5), (0.9, 0.7)])
    # THEN nothing is counted; and crossing back up through the segment is an "out"
    assert crossings == []
    assert [c.direction for c in walker.run([(0.5, 0.3)])] == ["out"]


def test_diagonal_jump_missing_the_segment_not_counted() -> None:
    """A jump whose straight path misses the segment is not counted."""
    # GIVEN a track jumping from right of the segment's end above to further right below
    counter = LineCrossingCounter(A, B)
    walker = Walker(counter)
    # WHEN followed / THEN not counted
    assert walker.run([(0.85, 0.4), (0.95, 0.6)]) == []


def test_path_through_segment_end_point_counted() -> None:
    """A path through the segment's end point counts (end points are inclusive)."""
    # GIVEN a track moving straight down through b = (0.8, 0.5)
    counter = LineCrossingCounter(A, B)
    walker = Walker(counter)
    # WHEN followed / THEN counted once
    assert len(walker.run([(0.8, 0.3), (0.8, 0.7)])) == 1


def test_first_sighting_on_far_side_not_counted() -> None:
    """A track first seen below the line only commits its side."""
    # GIVEN a new track appearing below the line and staying there
    counter = LineCrossingCounter(A, B)
    walker = Walker(counter)
    # WHEN followed / THEN nothing is counted
    assert walker.run([(0.5, 0.7), (0.5, 0.8)]) == []


@pytest.mark.parametrize(
    ("classes", "expected"),
    [(None, {"car": 1, "person": 1}), ({"car"}, {"car": 1})],
)
def test_totals_per_class_and_class_filter(
    classes: set[str] | None, expected: dict[str, int]
) -> None:
    """Totals are kept per class; classes outside the filter are ignored."""
    # GIVEN a counter with the given class filter
    counter = LineCrossingCounter(A, B, classes=classes)
    # WHEN a person and a car cross in the same frames
    for k, y in enumerate((0.3, 0.7)):
        frame = Detections(
            xyxy=np.array(
                [[490, y * H - 10, 510, y * H], [590, y * H - 10, 610, y * H]], np.float32
            ),
            confidence=np.full(2, 0.9, np.float32),
            class_id=np.array([0, 1], np.int32),
            class_names=NAMES,
            tracker_id=np.array([1, 2], np.int64),
        )
        counter.update(frame, W, H, k / 10)
    # THEN the totals per class match
    assert counter.in_count == expected


def test_untracked_detections_rejected() -> None:
    """Line crossing requires tracker ids."""
    # GIVEN untracked detections / WHEN updating / THEN ValueError
    counter = LineCrossingCounter(A, B)
    untracked = Detections(
        xyxy=np.zeros((1, 4), np.float32),
        confidence=np.ones(1, np.float32),
        class_id=np.zeros(1, np.int32),
    )
    with pytest.raises(ValueError, match="tracker_id"):
        counter.update(untracked, W, H, 0.0)


def test_forgotten_track_starts_fresh() -> None:
    """A track unseen for forget_after_seconds is forgotten; its reappearance only commits."""
    # GIVEN a track above the line, unseen for longer than forget_after_seconds
    counter = LineCrossingCounter(A, B, forget_after_seconds=1.0)
    counter.update(dets((1, 0.5, 0.3)), W, H, 0.0)
    counter.update(dets(), W, H, 2.0)
    # WHEN it reappears below / THEN no crossing is counted
    assert counter.update(dets((1, 0.5, 0.7)), W, H, 2.1) == []


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        ((0.5, 0.5), (0.5, 0.5), {}, "coincide"),
        ((0.5, 1.5), (0.5, 0.5), {}, r"outside \[0, 1\]"),
        (A, B, {"hysteresis": -0.1}, "hysteresis"),
        (A, B, {"hysteresis": 0.5}, "hysteresis"),
        (A, B, {"forget_after_seconds": 0.0}, "forget_after_seconds"),
    ],
)
def test_bad_parameters(
    a: tuple[float, float], b: tuple[float, float], kwargs: dict[str, float], message: str
) -> None:
    """Invalid lines and parameters raise ValueError."""
    # GIVEN bad parameters / WHEN constructing / THEN ValueError
    with pytest.raises(ValueError, match=message):
        LineCrossingCounter(a, b, **kwargs)  # type: ignore[arg-type]
