"""Stream-tier node implementations driven with synthetic frames and detections."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from aios.nodes import CATALOG
from aios.runtime.context import NodeContext, NoEvidence
from aios.runtime.events import StreamEvent
from aios.vision.types import Detections, DetectionsFrame, Frame

W, H = 640, 480
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def node(type_id: str, config: dict[str, Any], node_id: str = "n") -> Any:
    """Build a node implementation from its type id and raw config."""
    node_type = CATALOG.get(type_id)
    assert node_type is not None
    ctx = NodeContext("test", node_id, type_id, NoEvidence(), logging.getLogger("test"))
    return node_type.implementation(node_type.parse_config(config), ctx)


def frame(index: int, fps: float = 10.0) -> Frame:
    """Return a blank frame at ``index``."""
    pts = index / fps
    return Frame(
        image=np.zeros((H, W, 3), np.uint8),
        index=index,
        pts_seconds=pts,
        wall_time=START + timedelta(seconds=pts),
        source_id="cam",
    )


def people(boxes: list[tuple[float, float, float, float]], ids: list[int]) -> Detections:
    """Return tracked 'person' detections."""
    return Detections(
        xyxy=np.array(boxes, np.float32).reshape(-1, 4),
        confidence=np.full(len(boxes), 0.9, np.float32),
        class_id=np.zeros(len(boxes), np.int32),
        class_names=("person",),
        tracker_id=np.array(ids, np.int64),
    )


def test_zone_emits_enter_with_its_name_and_passes_inside_detections() -> None:
    """A person walking into the zone gives one zone.enter and flows out of 'inside'."""
    # GIVEN a zone over the right half of the frame
    zone = node("aios/zone@1", {"name": "dock", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]})
    events: list[StreamEvent] = []
    inside_counts = []
    # WHEN a person's feet move from x=200 to x=400 over 5 frames
    for i, x in enumerate(range(200, 401, 50)):
        out = zone.process(
            {"detections": DetectionsFrame(frame(i), people([(x - 20, 100, x + 20, 300)], [7]))}
        )
        events += out["events"]
        inside_counts.append(len(out["inside"].detections))
    # THEN one enter, named after the zone, on the first frame inside
    assert [(e.event_type, e.zone, e.track_id, e.frame_index) for e in events] == [
        ("zone.enter", "dock", 7, 3)
    ]
    assert inside_counts == [0, 0, 0, 1, 1]
    assert out["inside"].regions == ("dock",)


def test_loitering_names_the_upstream_zone_and_alerts_once() -> None:
    """Dwell over the threshold gives one loitering event per stay, named after the zone."""
    loiter = node("aios/loitering@1", {"threshold_seconds": 2.0})
    alerts = []
    for i in range(40):
        value = DetectionsFrame(frame(i), people([(300, 100, 340, 300)], [3]), regions=("dock",))
        alerts += loiter.process({"detections": value}).get("events", [])
    assert [(e.event_type, e.zone, e.track_id, e.dwell_seconds) for e in alerts] == [
        ("loitering", "dock", 3, 2.0)
    ]


def test_counter_occupancy_returns_to_zero_when_the_scene_empties() -> None:
    """Occupancy drops to 0 on an empty frame and is reported (rate-limited)."""
    counter = node("aios/counter@1", {"min_interval_seconds": 0.0})
    seen = []
    for i, ids in enumerate([[1], [1, 2], [1, 2], []]):
        boxes = [(10.0 * k, 10, 10.0 * k + 5, 20) for k in ids]
        out = counter.process({"detections": DetectionsFrame(frame(i), people(boxes, ids))})
        seen += [e.data["counts"]["occupancy"] for e in out.get("events", [])]
    assert seen == [{"person": 1}, {"person": 2}, {"person": 0}]


def test_counter_rate_limit_reports_latest_counts_after_the_interval() -> None:
    """Changes within min_interval_seconds are reported together, once it has passed."""
    counter = node("aios/counter@1", {"min_interval_seconds": 1.0})
    reported = []
    sequence = [[1], [1, 2], [1, 2, 3], [1, 2, 3]] + [[1, 2, 3]] * 10
    for i, ids in enumerate(sequence):
        boxes = [(10.0 * k, 10, 10.0 * k + 5, 20) for k in ids]
        out = counter.process({"detections": DetectionsFrame(frame(i), people(boxes, ids))})
        reported += [(i, e.data["counts"]["occupancy"]["person"]) for e in out.get("events", [])]
    assert reported == [(0, 1), (10, 3)]


def test_line_crossing_feeds_counter_totals() -> None:
    """Crossings in both directions reach the counter's in/out totals."""
    line = node("aios/line_crossing@1", {"name": "gate", "line": [[0.5, 0], [0.5, 1]]})
    counter = node("aios/counter@1", {"min_interval_seconds": 0.0})
    crossings: list[StreamEvent] = []
    totals = None
    # A person walks right across x=320, then back left.
    xs = [200, 250, 300, 350, 400, 450, 400, 350, 300, 250, 200]
    for i, x in enumerate(xs):
        out = line.process(
            {"detections": DetectionsFrame(frame(i), people([(x - 10, 100, x + 10, 300)], [5]))}
        )
        crossings += out.get("events", [])
        counted = counter.process({"crossings": out.get("events", [])})
        totals = counted.get("counts", totals)
    assert [e.direction for e in crossings] == ["out", "in"]
    assert totals is not None and totals["in"] == {"person": 1} and totals["out"] == {"person": 1}


def test_dashboard_records_events_with_panel_and_severity() -> None:
    """The dashboard (an event-tier action) records each event with its panel and severity."""
    from aios.events.task import MemoryRecorder, TaskRequest, TaskServices

    node_type = CATALOG.get("aios/dashboard@1")
    recorder = MemoryRecorder()
    dash = node_type.implementation(
        node_type.parse_config({"panel": "Intrusions", "severity": "critical"}),
        TaskServices(recorder=recorder),
    )
    zone = node("aios/zone@1", {"polygon": [[0, 0], [1, 0], [1, 1]]})
    [event] = zone.process(
        {"detections": DetectionsFrame(frame(0), people([(400, 10, 420, 50)], [1]))}
    )["events"]
    request = TaskRequest("dash", event.model_dump(mode="json"), {"pipeline": "test"})
    result = dash.run(request)
    assert result["status"] == "recorded"
    [record] = recorder.records
    assert (record["panel"], record["severity"]) == ("Intrusions", "critical")
    assert record["event"]["event_id"] == event.event_id
    # the same event again is a duplicate, not recorded twice
    assert dash.run(request)["status"] == "duplicate"
    assert len(recorder.records) == 1
