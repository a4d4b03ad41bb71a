"""The transform node: JMESPath and JSONPath fields, drops, filters and config errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from aios.events.task import PermanentError, TaskRequest, TaskServices
from aios.nodes.transform import FILTERED_OUT, NODE, TransformNode

EVENT: dict[str, Any] = {
    "event_id": "e1",
    "event_type": "zone.enter",
    "time": "2026-01-05T09:00:00Z",
    "source_id": "cam-1",
    "zone": "dock",
    "confidence": 0.91,
    "class_name": "person",
    "data": {
        "boxes": [
            {"class_name": "person", "score": 0.9, "bbox": [0, 0, 10, 10]},
            {"class_name": "car", "score": 0.4, "bbox": [5, 5, 50, 50]},
            {"class_name": "person", "score": 0.7, "bbox": [20, 20, 30, 30]},
        ],
        "raw": {"blob": "x" * 10},
    },
}


def build(raw: dict[str, Any]) -> TransformNode:
    """Build a transform node from a raw config."""
    return NODE.implementation(NODE.parse_config(raw), TaskServices())  # type: ignore[no-any-return]


def run(node: TransformNode, event: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the node on an event (default: :data:`EVENT`)."""
    request = TaskRequest(
        node_id="tf", event=event if event is not None else EVENT, context={"pipeline": "p"}
    )
    return node.run(request)


def test_jmespath_fields_are_written_by_dotted_target_and_read_the_incoming_event() -> None:
    """Targets under data and at the top level; expressions see the event as it arrived."""
    # GIVEN fields into data and one top-level, one reading a field another one writes
    node = build(
        {
            "fields": {
                "data.people": "length(data.boxes[?class_name=='person'])",
                "data.best": "max_by(data.boxes, &score).class_name",
                "label": "join(' / ', [zone, class_name])",
                "data.copy_of_label": "label",
            }
        }
    )
    before = copy.deepcopy(EVENT)
    # WHEN it runs
    out = run(node)
    # THEN the values are where the targets say, and the input event is untouched
    assert out["data"]["people"] == 2
    assert out["data"]["best"] == "person"
    assert out["label"] == "dock / person"
    assert out["data"]["copy_of_label"] is None  # 'label' did not exist on the incoming event
    assert out["event_id"] == "e1" and out["data"]["boxes"] == EVENT["data"]["boxes"]
    assert before == EVENT
    assert FILTERED_OUT not in out


def test_missing_intermediate_objects_are_created() -> None:
    """A nested target creates the objects on its way."""
    node = build({"fields": {"data.summary.zone": "zone"}})
    out = run(node, {"event_id": "e", "zone": "gate"})
    assert out["data"] == {"summary": {"zone": "gate"}}


def test_drop_removes_nested_and_top_level_fields_and_ignores_absent_ones() -> None:
    """Dropped paths disappear after the fields are computed from them."""
    # GIVEN a field computed from data.raw, which is then dropped
    node = build(
        {
            "fields": {"data.raw_size": "length(data.raw.blob)"},
            "drop": ["data.raw", "confidence", "data.not_there", "nothing.here"],
        }
    )
    # WHEN it runs
    out = run(node)
    # THEN the computed field stays and the dropped ones are gone
    assert out["data"]["raw_size"] == 10
    assert "raw" not in out["data"] and "confidence" not in out
    assert out["class_name"] == "person"


@pytest.mark.parametrize(
    ("expression", "passes"),
    [
        ("confidence > `0.8`", True),
        ("confidence > `0.95`", False),
        ("data.boxes[?score > `0.85`]", True),  # non-empty list
        ("data.boxes[?score > `0.95`]", False),  # empty list
        ("`0`", True),  # JMESPath: numbers are truthy
        ("''", False),
        ("missing_field", False),  # null
        ("data.raw", True),  # non-empty object
    ],
)
def test_filter_sets_filtered_out_with_jmespath_truthiness(expression: str, passes: bool) -> None:
    """filtered_out is the negation of the filter's truthiness."""
    node = build({"filter": expression})
    out = run(node)
    assert out[FILTERED_OUT] is (not passes)


def test_jsonpath_singular_queries_give_a_value_others_a_list() -> None:
    """The result type depends on the query, not on how many values matched."""
    # GIVEN JSONPath fields: singular paths, a wildcard, a filter and a length
    node = build(
        {
            "language": "jsonpath",
            "fields": {
                "data.first": "$.data.boxes[0].class_name",
                "data.zone": "$.zone",
                "data.missing": "$.data.nope",
                "data.classes": "$.data.boxes[*].class_name",
                "data.strong": "$.data.boxes[?(@.score > 0.8)].class_name",
                "data.count": "$.data.boxes.`len`",
            },
        }
    )
    # WHEN it runs
    out = run(node)["data"]
    # THEN singular queries give values (or null) and the others lists, even of one
    assert out["first"] == "person" and out["zone"] == "dock" and out["missing"] is None
    assert out["classes"] == ["person", "car", "person"]
    assert out["strong"] == ["person"]
    assert out["count"] == 3


def test_jsonpath_filter_passes_when_anything_matches() -> None:
    """A JSONPath filter query passes when it selects something."""
    keep = build({"language": "jsonpath", "filter": "$.data.boxes[?(@.class_name == 'car')]"})
    stop = build({"language": "jsonpath", "filter": "$.data.boxes[?(@.class_name == 'dog')]"})
    assert run(keep)[FILTERED_OUT] is False
    assert run(stop)[FILTERED_OUT] is True


def test_expression_failing_on_an_event_is_a_permanent_error_naming_the_field() -> None:
    """A function given the wrong type fails the task with the field and expression."""
    node = build({"fields": {"data.n": "abs(class_name)"}})
    with pytest.raises(PermanentError, match=r"field 'data\.n'.*abs\(class_name\)"):
        run(node)


def test_writing_through_a_non_object_is_a_permanent_error() -> None:
    """A target crossing a number says which part is in the way."""
    node = build({"fields": {"confidence.value": "zone"}})
    with pytest.raises(PermanentError, match="'confidence' is a float, not an object"):
        run(node)


def test_identity_fields_can_be_changed_only_when_allowed() -> None:
    """event_type may be rewritten with allow_identity_overwrite."""
    with pytest.raises(ValidationError, match="would change the event's identity"):
        NODE.parse_config({"fields": {"event_type": "'custom'"}})
    with pytest.raises(ValidationError, match=r"drop: \['time'\]"):
        NODE.parse_config({"drop": ["time"]})
    node = build({"fields": {"event_type": "'dock.person'"}, "allow_identity_overwrite": True})
    assert run(node)["event_type"] == "dock.person"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"fields": {"data.n": "length(data.boxes"}},
            r"fields\n.*field 'data\.n': invalid JMESPath expression 'length\(data\.boxes' "
            r"at position 17: the expression ends too early",
        ),
        (
            {"filter": "confidence > "},
            r"filter\n.*invalid JMESPath expression 'confidence > ' at position",
        ),
        (
            {"fields": {"data.n": "a.b c"}},
            r"field 'data\.n'.*at position 4: Unexpected token: c",
        ),
        (
            {"fields": {"data.n": "size(data.boxes)"}},
            r"unknown function size\(\) \(known: abs,",
        ),
        ({"fields": {"data.n": "length(a, b)"}}, r"length\(\) takes 1 argument\(s\), got 2"),
        (
            {"language": "jsonpath", "fields": {"data.n": "$.data.boxes[?(@.score >)]"}},
            r"field 'data\.n': invalid JSONPath expression .* Parse error at 1:",
        ),
        ({"language": "xpath"}, r"language\n.*'jmespath' or 'jsonpath'"),
        ({"fields": {"data n": "zone"}}, r"fields\.data n\.\[key\]\n.*pattern"),
        ({"fields": {"filtered_out": "`true`"}}, "'filtered_out' is written by the filter"),
        ({"drop": ["data..x"]}, r"drop\.0\n.*pattern"),
        ({"filters": "zone"}, r"filters\n.*Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_rejected_naming_the_field(raw: dict[str, Any], message: str) -> None:
    """Syntax errors, unknown functions, bad paths and typos fail validation."""
    with pytest.raises(ValidationError, match=message):
        NODE.parse_config(raw)


def test_manifest_is_an_event_tier_processor() -> None:
    """The node compiles as a processor Task with one event input and output."""
    assert NODE.event_role is not None and NODE.event_role.value == "processor"
    assert NODE.manifest.tier.value == "event"
    assert [p.kind.value for p in NODE.manifest.inputs + NODE.manifest.outputs] == [
        "event",
        "event",
    ]
