"""The event tier compiled to ASL: shape, statelint, and behaviour on the local engine."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pipeline_builders import edge

from aios.events.compiler import ROUTE_STATE, CompileError, _check_static, compile_pipeline, lint
from aios.events.runtime import EventTier, action_results
from aios.events.task import MemoryRecorder, TaskServices
from aios.nodes import CATALOG
from aios.pipeline.validation import validate_pipeline


def doc(nodes: list[dict[str, Any]], edges: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 1,
        "name": "Compiler test",
        "metadata": meta,
        "nodes": nodes,
        "edges": edges,
    }


def n(node_id: str, type_id: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": node_id, "type": type_id, "config": config or {}}


STREAM = [
    n("camera", "aios/file.input@1", {"path": "asset:vtest.avi"}),
    n("detect", "aios/object_detection@1"),
    n("zone", "aios/zone@1", {"polygon": [[0, 0], [1, 0], [1, 1]]}),
    n("loitering", "aios/loitering@1", {"threshold_seconds": 5}),
]
STREAM_EDGES = [
    edge("camera", "frames", "detect", "frames"),
    edge("detect", "detections", "zone", "detections"),
    edge("zone", "inside", "loitering", "detections"),
]


def intrusion_like(**meta: Any) -> Any:
    """loitering → condition(person, dwell ≥ 10 s, at night) → dashboards; zone → dashboard."""
    nodes = [
        *STREAM,
        n(
            "night",
            "aios/conditional@1",
            {
                "conditions": [
                    {"field": "class_name", "operator": "eq", "value": "person"},
                    {"field": "dwell_seconds", "operator": "gte", "value": 10},
                ],
                "time_window": {"start": "22:00", "end": "06:00"},
            },
        ),
        n("alarm", "aios/dashboard@1", {"panel": "Alarms", "severity": "critical"}),
        n("log", "aios/dashboard@1", {"panel": "Log", "severity": "info"}),
        n("quiet", "aios/dashboard@1", {"panel": "Daytime", "severity": "info"}),
    ]
    edges = [
        *STREAM_EDGES,
        edge("loitering", "events", "night", "events"),
        edge("night", "true", "alarm", "events"),
        edge("night", "true", "log", "events"),
        edge("night", "false", "quiet", "events"),
        edge("zone", "events", "log", "events"),
    ]
    return validate_pipeline(doc(nodes, edges, **meta), CATALOG)


def stream_event(node_id: str, time: str, **fields: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": f"{node_id}-{time}",
        "time": time,
        "media_time_seconds": 1.0,
        "frame_index": 10,
        "pipeline": "Compiler test",
        "node_id": node_id,
        "node_type": "aios/loitering@1",
        "source_id": "camera",
        "event_type": "loitering",
        "data": {},
        **fields,
    }


def test_compiled_definition_passes_statelint_and_uses_only_jsonpath_asl() -> None:
    compiled = compile_pipeline(intrusion_like())
    assert compiled is not None
    assert lint(compiled.definition) == []
    text = compiled.text()
    for forbidden in ('"QueryLanguage"', '"Assign"', "{%", "arn:aws"):
        assert forbidden not in text
    assert compiled.placeholders == {"DashboardV1FunctionArn": "aios/dashboard@1"}
    assert compiled.entries == {"zone": ["log"], "loitering": ["night"]}


def test_fan_out_is_parallel_and_actions_have_retry_and_catch() -> None:
    compiled = compile_pipeline(intrusion_like())
    assert compiled is not None
    states = compiled.definition["States"]
    route = states[ROUTE_STATE]
    assert [c["StringEquals"] for c in route["Choices"]] == ["zone", "loitering"]
    choice = states["night"]
    assert choice["Type"] == "Choice"
    fan_out = states[choice["Choices"][0]["Next"]]
    assert fan_out["Type"] == "Parallel"
    branch_tasks = [b["States"][b["StartAt"]] for b in fan_out["Branches"]]
    for task in branch_tasks:
        assert task["Resource"] == "${DashboardV1FunctionArn}"
        assert task["Parameters"]["event.$"] == "$.event"
        assert task["Retry"][0]["ErrorEquals"][0] == "Aios.Transient"
        assert task["Catch"][0]["ErrorEquals"] == ["States.ALL"]
    # 'log' is reached along two paths: laid out twice, with unique names
    assert "log" in states and any(name.startswith("log #") for name in _all_states(states))


def _all_states(states: dict[str, Any]) -> list[str]:
    names = list(states)
    for state in states.values():
        for branch in state.get("Branches", []):
            names += _all_states(branch["States"])
        if "Iterator" in state:
            names += _all_states(state["Iterator"]["States"])
    return names


def test_time_window_and_field_conditions_route_in_the_site_time_zone() -> None:
    # GIVEN the pipeline running locally for a site in Lisbon
    recorder = MemoryRecorder()
    tier = EventTier(intrusion_like(timezone="Europe/Lisbon"), TaskServices(recorder=recorder))
    try:
        # WHEN a person loiters 12 s at 23:30 local time (summer: UTC+1) and 12 s at noon
        night = stream_event(
            "loitering", "2026-07-01T22:30:00Z", class_name="person", dwell_seconds=12.0
        )
        noon = stream_event(
            "loitering", "2026-07-01T11:00:00Z", class_name="person", dwell_seconds=12.0
        )
        short = stream_event(
            "loitering", "2026-07-01T23:00:00Z", class_name="person", dwell_seconds=3.0
        )
        records = [tier.submit(e, "loitering").result(timeout=30) for e in (night, noon, short)]
    finally:
        tier.close()
    # THEN the night event reaches both alarm dashboards; the others the daytime one
    assert [r.status for r in records] == ["SUCCEEDED"] * 3
    panels = {(r["event"]["event_id"], r["panel"]) for r in recorder.records}
    assert panels == {
        (night["event_id"], "Alarms"),
        (night["event_id"], "Log"),
        (noon["event_id"], "Daytime"),
        (short["event_id"], "Daytime"),
    }
    statuses = [res["status"] for _key, res in action_results(records[0].output)]
    assert statuses == ["recorded", "recorded"]


def test_missing_field_takes_the_false_path_instead_of_failing() -> None:
    recorder = MemoryRecorder()
    tier = EventTier(intrusion_like(), TaskServices(recorder=recorder))
    try:
        event = stream_event("loitering", "2026-07-01T23:30:00Z")  # no class, no dwell
        record = tier.submit(event, "loitering").result(timeout=30)
    finally:
        tier.close()
    assert record.status == "SUCCEEDED"
    assert [r["panel"] for r in recorder.records] == ["Daytime"]


def test_history_is_kept_per_execution() -> None:
    tier = EventTier(intrusion_like(), TaskServices())
    try:
        record = tier.submit(stream_event("zone", "2026-07-01T10:00:00Z"), "zone").result(30)
    finally:
        tier.close()
    types = [h["type"] for h in record.history]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"
    assert "ChoiceStateEntered" in types and "TaskStateExited" in types
    json.dumps(record.to_json())  # JSON-ready


def test_loop_and_delay_compile_to_map_and_wait() -> None:
    nodes = [
        *STREAM,
        n("each", "aios/loop@1", {"field": "data.people", "max_concurrency": 2}),
        n("later", "aios/delay@1", {"seconds": 1}),
        n("dash", "aios/dashboard@1"),
    ]
    edges = [
        *STREAM_EDGES,
        edge("loitering", "events", "each", "events"),
        edge("each", "item", "later", "events"),
        edge("later", "events", "dash", "events"),
    ]
    pipeline = validate_pipeline(doc(nodes, edges), CATALOG)
    compiled = compile_pipeline(pipeline)
    assert compiled is not None
    assert lint(compiled.definition) == []
    each = compiled.definition["States"]["each"]
    assert each["Type"] == "Map" and each["ItemsPath"] == "$.event.data.people"
    assert "Parameters" in each and each["MaxConcurrency"] == 2
    assert each["Iterator"]["States"]["later"] == {"Type": "Wait", "Seconds": 1, "Next": "dash"}
    recorder = MemoryRecorder()
    tier = EventTier(pipeline, TaskServices(recorder=recorder))
    try:
        event = stream_event("loitering", "2026-07-01T10:00:00Z", data={"people": ["a", "b"]})
        record = tier.submit(event, "loitering").result(timeout=30)
    finally:
        tier.close()
    assert record.status == "SUCCEEDED"
    items = sorted(
        (r["event"]["index"], r["event"]["item"], r["event"]["event_id"]) for r in recorder.records
    )
    assert items == [(0, "a", f"{event['event_id']}-0"), (1, "b", f"{event['event_id']}-1")]


def test_stream_only_pipeline_has_no_event_tier() -> None:
    nodes = [*STREAM[:3], n("count", "aios/counter@1")]
    edges = [*STREAM_EDGES[:2], edge("zone", "inside", "count", "detections")]
    raw = doc(nodes, edges)
    try:
        pipeline = validate_pipeline(raw, CATALOG)
    except Exception:
        pytest.skip("a stream-only pipeline needs an output node in this catalog")
    assert compile_pipeline(pipeline) is None


def test_config_keys_that_would_read_as_paths_are_refused() -> None:
    with pytest.raises(CompileError, match=r"config\.fields: key 'x\.\$' must not end"):
        _check_static({"fields": {"x.$": "$.event"}}, "node 't' config")
