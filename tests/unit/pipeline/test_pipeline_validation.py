"""Validation of pipeline documents: every error kind, located by node/edge and field path."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pipeline_builders import detect_zone_dashboard_edges

from aios.nodes import CATALOG
from aios.pipeline.validation import IssueCode, PipelineInvalid, validate_pipeline

ROOT = Path(__file__).resolve().parents[3]


def base_doc() -> dict[str, Any]:
    """Return a small valid pipeline: file → detection → zone → dashboard."""
    return {
        "schemaVersion": 1,
        "name": "test",
        "nodes": [
            {"id": "cam", "type": "aios/file.input@1", "config": {"path": "x.mp4"}},
            {"id": "det", "type": "aios/object_detection@1", "config": {}},
            {
                "id": "zone",
                "type": "aios/zone@1",
                "config": {"polygon": [[0, 0], [1, 0], [1, 1]]},
            },
            {"id": "dash", "type": "aios/dashboard@1", "config": {}},
        ],
        "edges": detect_zone_dashboard_edges("cam", "det", "zone", "dash"),
    }


def issues_of(doc: Any) -> list[Any]:
    """Validate and return the issues (fails the test if the document is valid)."""
    with pytest.raises(PipelineInvalid) as caught:
        validate_pipeline(doc, CATALOG)
    return caught.value.issues


def test_valid_document_gives_topological_order() -> None:
    """A valid pipeline validates, sources first."""
    # GIVEN a valid document / WHEN validated
    validated = validate_pipeline(base_doc(), CATALOG)
    # THEN nodes come in dependency order
    assert (
        validated.order.index("cam") < validated.order.index("det") < validated.order.index("zone")
    )


def test_shipped_examples_are_valid() -> None:
    """Every example pipeline validates as shipped."""
    examples = sorted((ROOT / "examples" / "pipelines").glob("*.json"))
    assert len(examples) >= 2
    for path in examples:
        validate_pipeline(path.read_text(), CATALOG)


def test_unknown_type_suggests_the_closest() -> None:
    """An unknown type names the node and suggests a known type."""
    doc = base_doc()
    doc["nodes"][2]["type"] = "aios/zone@2"
    [issue] = issues_of(doc)
    assert issue.code is IssueCode.UNKNOWN_TYPE
    assert issue.node_id == "zone"
    assert "did you mean 'aios/zone@1'" in issue.message


def test_invalid_config_reports_node_and_field_path() -> None:
    """Config errors name the node and the config field path, each one."""
    doc = base_doc()
    doc["nodes"][1]["config"] = {"min_confidence": 2, "clases": ["person"]}
    doc["nodes"][2]["config"]["polygon"][1] = [1.5, 0]
    issues = issues_of(doc)
    located = {(i.node_id, ".".join(map(str, i.path))) for i in issues}
    assert ("det", "config.min_confidence") in located
    assert ("det", "config.clases") in located
    assert ("zone", "config.polygon.1.0") in located
    assert all(i.code is IssueCode.INVALID_CONFIG for i in issues)
    assert any("unknown field" in i.message for i in issues)


def test_degenerate_polygon_is_rejected() -> None:
    """A zone whose polygon has no area is a config error on the polygon."""
    doc = base_doc()
    doc["nodes"][2]["config"]["polygon"] = [[0, 0], [0.5, 0.5], [1, 1]]
    [issue] = issues_of(doc)
    assert issue.path == ("config", "polygon")


def test_unknown_ports_and_dangling_edges() -> None:
    """Edges to missing nodes or ports are reported with the edge and the handle."""
    doc = base_doc()
    doc["edges"][0]["sourceHandle"] = "video"
    doc["edges"].append(
        {
            "id": "ghost",
            "source": "zone",
            "sourceHandle": "events",
            "target": "nowhere",
            "targetHandle": "events",
        }
    )
    issues = issues_of(doc)
    codes = {i.code for i in issues}
    assert IssueCode.UNKNOWN_PORT in codes and IssueCode.DANGLING_EDGE in codes
    port = next(i for i in issues if i.code is IssueCode.UNKNOWN_PORT)
    assert "has no output port 'video'" in port.message and "frames" in port.message
    assert port.path == ("sourceHandle",)
    dangling = next(i for i in issues if i.code is IssueCode.DANGLING_EDGE)
    assert "'nowhere'" in dangling.message and "ghost" in (dangling.edge or "")


def test_incompatible_port_kinds() -> None:
    """Connecting events to a detections input is refused with both kinds named."""
    doc = base_doc()
    doc["nodes"].append({"id": "loiter", "type": "aios/loitering@1", "config": {}})
    doc["edges"].append(
        {
            "source": "zone",
            "sourceHandle": "events",
            "target": "loiter",
            "targetHandle": "detections",
        }
    )
    issues = issues_of(doc)
    kinds = next(i for i in issues if i.code is IssueCode.INCOMPATIBLE_PORTS)
    assert "carries event" in kinds.message and "takes detections" in kinds.message
    # The loitering node's only input is then not connected.
    assert any(i.code is IssueCode.MISSING_INPUT and i.node_id == "loiter" for i in issues)


def test_cycle_names_its_nodes() -> None:
    """A cycle is reported with the nodes on it."""
    doc = base_doc()
    doc["nodes"].append(
        {"id": "zone2", "type": "aios/zone@1", "config": {"polygon": [[0, 0], [1, 0], [1, 1]]}}
    )
    doc["edges"][1]["target"] = "zone2"
    doc["edges"] += [
        {
            "source": "zone2",
            "sourceHandle": "inside",
            "target": "zone",
            "targetHandle": "detections",
        },
        {
            "source": "zone",
            "sourceHandle": "inside",
            "target": "zone2",
            "targetHandle": "detections",
        },
    ]
    doc["edges"] = [e for e in doc["edges"] if e["source"] != "det"]
    issues = issues_of(doc)
    cycle = next(i for i in issues if i.code is IssueCode.CYCLE)
    assert "'zone'" in cycle.message and "'zone2'" in cycle.message


def test_no_input_and_unreachable_output() -> None:
    """Without an input node, and with an output fed by nothing, both are reported."""
    doc = base_doc()
    doc["nodes"] = [n for n in doc["nodes"] if n["id"] != "cam"]
    doc["edges"] = doc["edges"][1:]
    issues = issues_of(doc)
    assert any(i.code is IssueCode.NO_INPUT for i in issues)
    assert any(i.code is IssueCode.MISSING_INPUT and i.node_id == "det" for i in issues)
    doc = base_doc()
    doc["nodes"] += [
        {"id": "zone2", "type": "aios/zone@1", "config": {"polygon": [[0, 0], [1, 0], [1, 1]]}},
        {"id": "dash2", "type": "aios/dashboard@1", "config": {}},
    ]
    doc["edges"].append(
        {"source": "zone2", "sourceHandle": "events", "target": "dash2", "targetHandle": "events"}
    )
    issues = issues_of(doc)
    assert [(i.code, i.node_id) for i in issues] == [
        (IssueCode.MISSING_INPUT, "zone2"),
        (IssueCode.UNREACHABLE_OUTPUT, "dash2"),
    ]


def test_duplicates_and_fan_in() -> None:
    """Duplicate node ids, duplicate edges and two edges into a single input are errors."""
    doc = base_doc()
    doc["nodes"].append(copy.deepcopy(doc["nodes"][1]))
    doc["edges"].append(copy.deepcopy(doc["edges"][2]))
    doc["nodes"].append({"id": "cam2", "type": "aios/file.input@1", "config": {"path": "y"}})
    doc["edges"].append(
        {"source": "cam2", "sourceHandle": "frames", "target": "det", "targetHandle": "frames"}
    )
    codes = [i.code for i in issues_of(doc)]
    assert IssueCode.DUPLICATE_NODE_ID in codes
    assert IssueCode.DUPLICATE_EDGE in codes
    assert IssueCode.TOO_MANY_EDGES in codes


def test_every_error_reported_at_once() -> None:
    """Independent problems in one document are all reported together."""
    doc = base_doc()
    doc["nodes"][0]["config"] = {}
    doc["nodes"][3]["type"] = "aios/dashbord@1"
    doc["edges"][1]["targetHandle"] = "frames"
    codes = {i.code for i in issues_of(doc)}
    assert {IssueCode.INVALID_CONFIG, IssueCode.UNKNOWN_TYPE, IssueCode.UNKNOWN_PORT} <= codes


def test_document_shape_errors_name_the_node() -> None:
    """A malformed node entry is located by its id and field."""
    doc = base_doc()
    doc["nodes"][1]["position"] = {"x": "left"}
    doc["schemaVersion"] = 7
    issues = issues_of(doc)
    assert any(i.node_id == "det" and i.path[-2:] == ("position", "x") for i in issues)
    assert any(i.path == ("schemaVersion",) for i in issues)
    assert all(i.code is IssueCode.INVALID_DOCUMENT for i in issues)


def test_malformed_json_text() -> None:
    """Text that is not JSON gives the line and column."""
    [issue] = issues_of('{"name": "x",\n "nodes": [}')
    assert issue.code is IssueCode.INVALID_DOCUMENT and "line 2" in issue.message


def test_published_schema_is_current() -> None:
    """schemas/pipeline.schema.json matches the document model."""
    from aios.pipeline.document import pipeline_json_schema

    published = json.loads((ROOT / "schemas" / "pipeline.schema.json").read_text())
    assert published == pipeline_json_schema(), (
        "run: aios pipeline schema > schemas/pipeline.schema.json"
    )


def test_a_document_must_be_an_object() -> None:
    """A JSON array or scalar is refused with what a pipeline looks like."""
    [issue] = issues_of("[1, 2]")
    assert issue.code is IssueCode.INVALID_DOCUMENT
    assert "JSON object with 'name', 'nodes' and 'edges'" in issue.message
