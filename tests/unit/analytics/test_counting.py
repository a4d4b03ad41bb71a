"""Tests for aios.analytics.counting.OccupancyCounter: counts, changes, peaks."""

from __future__ import annotations

import numpy as np
import pytest

from aios.analytics.counting import OccupancyCounter
from aios.vision.types import Detections

NAMES = ("person", "car", "dog")


def dets(*classes: str) -> Detections:
    """Untracked detections of the given classes."""
    n = len(classes)
    return Detections(
        xyxy=np.zeros((n, 4), np.float32),
        confidence=np.full(n, 0.9, np.float32),
        class_id=np.array([NAMES.index(c) for c in classes], np.int32),
        class_names=NAMES,
    )


def test_counts_per_class_and_empty_frame_gives_zeros() -> None:
    """Counts are per class for the current frame; an empty frame gives zeros at once."""
    # GIVEN a counter of every class
    counter = OccupancyCounter()
    # WHEN a frame has two people and a car
    up = counter.update(dets("person", "car", "person"))
    # THEN the counts and total match and changed is set
    assert up.counts == {"car": 1, "person": 2}
    assert up.total == 3
    assert up.changed
    # WHEN the next frame is empty
    up = counter.update(dets())
    # THEN every seen class is 0 immediately and changed is set
    assert up.counts == {"car": 0, "person": 0}
    assert up.total == 0
    assert up.changed


@pytest.mark.parametrize(
    ("frames", "changed"),
    [
        ([()], [False]),  # first frame empty: no change from the all-zero start
        ([("person",)], [True]),
        ([("person",), ("person",)], [True, False]),
        ([("person",), ("car",)], [True, True]),  # same total, different classes
        ([("person", "car"), ("car", "person")], [True, False]),  # order does not matter
        ([("person",), (), ()], [True, True, False]),
    ],
)
def test_changed_flag(frames: list[tuple[str, ...]], changed: list[bool]) -> None:
    """changed is set only when some class count differs from the previous frame."""
    # GIVEN a counter
    counter = OccupancyCounter()
    # WHEN feeding the frames / THEN the changed flags match
    assert [counter.update(dets(*f)).changed for f in frames] == changed


def test_class_filter_lists_all_configured_classes() -> None:
    """With a class filter, every configured class is reported (zeros too), others ignored."""
    # GIVEN a counter of people and dogs
    counter = OccupancyCounter({"person", "dog"})
    # WHEN a frame has a car and a person
    up = counter.update(dets("car", "person"))
    # THEN only people and dogs are reported
    assert up.counts == {"dog": 0, "person": 1}
    assert counter.counts == {"dog": 0, "person": 1}


def test_peak_per_class_and_reset() -> None:
    """The peak per class is the highest per-frame count; reset() clears it."""
    # GIVEN a counter fed three frames
    counter = OccupancyCounter()
    for f in [("person",), ("person", "person", "car"), ("car", "car")]:
        counter.update(dets(*f))
    # WHEN reading the peaks / THEN they are per class maxima
    assert counter.peak == {"car": 2, "person": 2}
    # WHEN reset / THEN peaks and counts are gone
    counter.reset()
    assert counter.peak == {}
    assert counter.counts == {}
