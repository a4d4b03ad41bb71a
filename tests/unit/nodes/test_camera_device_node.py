"""``aios/camera.device@1``: a fleet camera, in the catalog, that only its connector opens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aios.nodes import CATALOG
from aios.pipeline.validation import validate_pipeline
from aios.runtime.events import MemorySink
from aios.runtime.stream import RunError, StreamRunner

POS = {"x": 0, "y": 0}


def pipeline(device_id: str = "courtyard") -> dict[str, Any]:
    """fleet camera → motion gate."""
    return {
        "schemaVersion": 1,
        "name": "Fleet camera",
        "nodes": [
            {
                "id": "cam",
                "type": "aios/camera.device@1",
                "config": {"device_id": device_id},
                "position": POS,
            },
            {"id": "motion", "type": "aios/motion_gate@1", "config": {}, "position": POS},
        ],
        "edges": [
            {
                "source": "cam",
                "sourceHandle": "frames",
                "target": "motion",
                "targetHandle": "frames",
            }
        ],
    }


def test_the_node_is_a_stream_input_with_the_camera_device_id_only() -> None:
    """In the catalog as an input of the stream tier with frames out; its config is the
    device id alone (no address, no credentials)."""
    node_type = CATALOG.get("aios/camera.device@1")
    assert node_type is not None
    manifest = node_type.manifest
    assert (manifest.category.value, manifest.tier.value, manifest.title) == (
        "input",
        "stream",
        "Fleet camera",
    )
    assert [p.kind.value for p in manifest.outputs] == ["frames"]
    schema = node_type.config_model.model_json_schema()
    assert set(schema["properties"]) == {"device_id"} and schema["required"] == ["device_id"]
    assert node_type.parse_config({"device_id": "cam-1"}).device_id == "cam-1"  # type: ignore[attr-defined]
    for bad in ({}, {"device_id": "no spaces"}, {"device_id": "cam", "url": "rtsp://x"}):
        with pytest.raises(ValidationError):
            node_type.parse_config(bad)


def test_opening_it_outside_aios_up_fails_saying_how_to_run_it() -> None:
    """A stream runner of this process cannot open a fleet camera: the error says to play
    the pipeline from aios up with the camera's connector online."""
    validated = validate_pipeline(pipeline(), CATALOG)
    runner = StreamRunner(validated, MemorySink())
    with pytest.raises(RunError) as caught:
        runner.run()
    message = str(caught.value)
    assert "courtyard" in message and "aios up" in message and "connector online" in message


def test_aios_run_refuses_a_fleet_camera_pipeline(tmp_path: Path) -> None:
    """`aios run` exits with an error naming the way to run it."""
    document = tmp_path / "fleet.json"
    document.write_text(json.dumps(pipeline()))
    done = subprocess.run(
        [sys.executable, "-m", "aios.cli", "run", str(document), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "aios up" in done.stderr and "connector online" in done.stderr, done.stderr


def test_the_catalog_export_lists_it() -> None:
    """`aios nodes --json` has it, with its config schema."""
    out = subprocess.run(
        [sys.executable, "-m", "aios.cli", "nodes", "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    types = {n["type"]: n for n in json.loads(out)["nodes"]}
    node = types["aios/camera.device@1"]
    assert node["category"] == "input" and node["tier"] == "stream"
    assert node["config_schema"]["required"] == ["device_id"]
