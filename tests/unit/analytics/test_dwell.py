"""Tests for aios.analytics.dwell.DwellTracker: visits, gaps, alerts, id switches."""

from __future__ import annotations

import numpy as np
import pytest

from aios.analytics.dwell import DwellTracker, DwellUpdate
from aios.vision.types import Detections

NAMES = ("person", "car")


def dets(*track_ids: int, cls: str = "person") -> Detections:
    """Detections with the given track ids, all at the same place."""
    n = len(track_ids)
    return Detections(
        xyxy=np.tile(np.array([[10, 10, 50, 90]], np.float32), (n, 1)),
        confidence=np.full(n, 0.9, np.float32),
        class_id=np.full(n, NAMES.index(cls), np.int32),
        class_names=NAMES,
        tracker_id=np.array(track_ids, np.int64),
    )


def test_dwell_grows_and_alert_raised_once() -> None:
    """Dwell is last_seen - first_seen; the loitering alert is raised once per visit."""
    # GIVEN a 2 s threshold and a track seen at 10 fps from t=1.0 to t=4.0
    tracker = DwellTracker(threshold_seconds=2.0, max_gap_seconds=1.0)
    updates = [tracker.update(dets(7), 1.0 + k / 10) for k in range(31)]
    # WHEN collecting the alerts
    alerts = [a for u in updates for a in u.alerts]
    # THEN one alert at t=3.0 with dwell 2.0 and first_seen 1.0; final dwell is 3.0
    assert len(alerts) == 1
    assert (alerts[0].track_id, alerts[0].class_name) == (7, "person")
    assert alerts[0].pts_seconds == pytest.approx(3.0)
    assert alerts[0].dwell_seconds == pytest.approx(2.0)
    assert alerts[0].first_seen == pytest.approx(1.0)
    assert updates[0].dwell_seconds == {7: 0.0}
    assert tracker.dwell_of(7) == pytest.approx(3.0)


def test_dwell_kept_through_short_detector_misses() -> None:
    """A stationary object missed for a few frames keeps its dwell (no new visit)."""
    # GIVEN a track seen for 1 s, then missed for 0.5 s (max gap 1 s)
    tracker = DwellTracker(threshold_seconds=10.0, max_gap_seconds=1.0)
    for k in range(11):
        tracker.update(dets(3), k / 10)
    ups: list[DwellUpdate] = [tracker.update(dets(), 1.0 + k / 10) for k in range(1, 6)]
    # WHEN it is missing / THEN its visit is open and its dwell frozen at 1.0
    assert all(u.ended == () for u in ups)
    assert ups[-1].dwell_seconds == {3: pytest.approx(1.0)}
    # WHEN it is seen again at t=1.6
    up = tracker.update(dets(3), 1.6)
    # THEN the dwell continues from the same first_seen, gap included
    assert up.dwell_seconds == {3: pytest.approx(1.6)}


def test_long_gap_ends_visit_and_restarts_dwell() -> None:
    """A track missing longer than max_gap_seconds ends its visit; a return starts at 0."""
    # GIVEN a track seen from t=0 to t=0.5, alerted (threshold 0.5)
    tracker = DwellTracker(threshold_seconds=0.5, max_gap_seconds=1.0)
    alerts = [a for k in range(6) for a in tracker.update(dets(3), k / 10).alerts]
    assert len(alerts) == 1
    # WHEN it is missing until t=1.6 (gap 1.1 s > 1 s)
    ended = [v for k in range(6, 17) for v in tracker.update(dets(), k / 10).ended]
    # THEN its visit ends once, with dwell 0.5, reported at t=1.6
    assert len(ended) == 1
    assert ended[0].dwell_seconds == pytest.approx(0.5)
    assert ended[0].alerted
    assert ended[0].pts_seconds == pytest.approx(1.6)
    assert tracker.dwell_of(3) is None
    # WHEN it comes back / THEN a new visit starts at 0 and can alert again
    assert tracker.update(dets(3), 2.0).dwell_seconds == {3: 0.0}
    assert len(tracker.update(dets(3), 2.5).alerts) == 1


def test_return_after_long_gap_without_intermediate_frames() -> None:
    """Seen again after a long gap with no frame in between: old visit ends, new one starts."""
    # GIVEN a track seen at t=0 and t=0.5
    tracker = DwellTracker(threshold_seconds=10.0, max_gap_seconds=1.0)
    tracker.update(dets(3), 0.0)
    tracker.update(dets(3), 0.5)
    # WHEN the next frame, at t=2.0, shows it again
    up = tracker.update(dets(3), 2.0)
    # THEN the old visit (0.5 s) ends and the new dwell is 0
    assert [(v.track_id, v.dwell_seconds) for v in up.ended] == [(3, 0.5)]
    assert up.dwell_seconds == {3: 0.0}


def test_dwell_never_merged_across_tracks() -> None:
    """An identity switch starts a new dwell at 0; the old id's dwell is not transferred."""
    # GIVEN track 1 loitering for 3 s at one place (threshold 5 s)
    tracker = DwellTracker(threshold_seconds=5.0, max_gap_seconds=1.0)
    for k in range(31):
        tracker.update(dets(1), k / 10)
    # WHEN the tracker switches the same object's id to 2 for another 3 s
    ups = [tracker.update(dets(2), 3.1 + k / 10) for k in range(30)]
    # THEN track 2's dwell started at 0, no alert fired (neither reached 5 s), track 1 ended
    assert ups[0].dwell_seconds == {1: pytest.approx(3.0), 2: 0.0}
    assert all(u.alerts == () for u in ups)
    ended = [v for u in ups for v in u.ended]
    assert [(v.track_id, round(v.dwell_seconds, 6)) for v in ended] == [(1, 3.0)]
    assert tracker.dwell_of(2) == pytest.approx(2.9)


def test_zero_threshold_alerts_on_first_frame() -> None:
    """threshold_seconds=0 alerts on the first frame of each visit."""
    # GIVEN a zero threshold / WHEN two tracks appear / THEN both alert at once, by id
    up = DwellTracker(threshold_seconds=0.0).update(dets(5, 2), 0.0)
    assert [a.track_id for a in up.alerts] == [2, 5]


def test_untracked_and_negative_ids() -> None:
    """Untracked detections raise; negative ids are ignored."""
    # GIVEN detections without ids / WHEN updating / THEN ValueError
    tracker = DwellTracker(threshold_seconds=1.0)
    untracked = Detections(
        xyxy=np.zeros((1, 4), np.float32),
        confidence=np.ones(1, np.float32),
        class_id=np.zeros(1, np.int32),
    )
    with pytest.raises(ValueError, match="tracker_id"):
        tracker.update(untracked, 0.0)
    # GIVEN an unconfirmed (-1) id / WHEN updating / THEN it is ignored
    assert tracker.update(dets(-1), 0.0).dwell_seconds == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold_seconds": -1.0}, "threshold_seconds"),
        ({"threshold_seconds": 1.0, "max_gap_seconds": float("inf")}, "max_gap_seconds"),
    ],
)
def test_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    """Negative or non-finite durations raise ValueError."""
    # GIVEN a bad duration / WHEN constructing / THEN ValueError
    with pytest.raises(ValueError, match=message):
        DwellTracker(**kwargs)


def test_backwards_time_rejected_until_reset() -> None:
    """A timestamp earlier than the previous one raises until reset()."""
    # GIVEN a tracker at t=5 / WHEN updating at t=1 / THEN ValueError; after reset it works
    tracker = DwellTracker(threshold_seconds=1.0)
    tracker.update(dets(1), 5.0)
    with pytest.raises(ValueError, match="backwards"):
        tracker.update(dets(1), 1.0)
    tracker.reset()
    assert tracker.update(dets(1), 1.0).dwell_seconds == {1: 0.0}
