"""`aios run` end to end on real video with the real model, and its refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from aios.plc.simulator import ModbusSimulator, start_simulator

ROOT = Path(__file__).resolve().parents[3]
INTRUSION = ROOT / "examples" / "pipelines" / "intrusion.json"


def aios(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the aios CLI in a subprocess and return the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "aios.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
    )


def read_events(path: Path) -> list[dict[str, Any]]:
    """Return the JSON objects of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class WatchedPlc:
    """A simulated PLC and the changes of its siren coil (0) seen while it ran."""

    def __init__(self, simulator: ModbusSimulator) -> None:
        self.simulator = simulator
        self.siren: list[bool] = [False]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            value = self.simulator.read_coils(0, 1)[0]
            if value != self.siren[-1]:
                self.siren.append(value)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def plc() -> Iterator[WatchedPlc]:
    """The simulated PLC the example's siren is wired to (on a free port)."""
    with start_simulator() as simulator:
        watched = WatchedPlc(simulator)
        yield watched
        watched.stop()


@pytest.fixture(scope="module")
def example(plc: WatchedPlc, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped intrusion pipeline, with its siren pointed at the simulated PLC's port."""
    doc = json.loads(INTRUSION.read_text())
    [siren] = [n for n in doc["nodes"] if n["id"] == "siren"]
    siren["config"]["connection"]["port"] = plc.simulator.port
    path = tmp_path_factory.mktemp("example") / "intrusion.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def full_run(
    example: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, Any]]]:
    """Run the shipped intrusion pipeline over the whole of vtest.avi once."""
    out = tmp_path_factory.mktemp("run1")
    result = aios(
        "run",
        str(example),
        "--events",
        str(out / "events.jsonl"),
        "--annotated",
        str(out / "annotated.mp4"),
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    return out, read_events(out / "events.jsonl")


@pytest.mark.timeout(900)
def test_intrusion_emits_zone_and_loitering_events_with_evidence(
    full_run: tuple[Path, list[dict[str, Any]]],
) -> None:
    """The shipped pipeline emits zone-enter and loitering events with snapshots and clips."""
    out, events = full_run
    types = {e["event_type"] for e in events}
    # THEN people entering the restricted area and people staying there are reported
    assert {"zone.enter", "loitering"} <= types, types
    enters = [e for e in events if e["event_type"] == "zone.enter"]
    assert all(e["class_name"] == "person" and e["zone"] == "restricted area" for e in enters)
    assert all(e["track_id"] is not None for e in enters)
    loiters = [e for e in events if e["event_type"] == "loitering"]
    assert all(e["dwell_seconds"] >= 5.0 for e in loiters)
    # Each event was recorded by the dashboard, once.
    assert all(e["outputs"] == ["dashboard"] for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    # Snapshots exist and are JPEGs of the frame size; clips exist and decode.
    for event in enters[:5] + loiters[:3]:
        image = cv2.imread(event["snapshot"])
        assert image is not None and image.shape[:2] == (576, 768)
    for event in loiters:
        clip = cv2.VideoCapture(event["clip"])
        # 3 s before and 2 s after at 10 fps, both ends included
        assert clip.isOpened() and int(clip.get(cv2.CAP_PROP_FRAME_COUNT)) >= 45
    annotated = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) >= 790
    # Times are UTC, from the pipeline's recording start plus the position in the file.
    first = events[0]
    assert first["time"].startswith("2026-01-05T09:0") and first["time"].endswith("Z")


@pytest.mark.timeout(900)
def test_alarms_pulse_the_siren_and_unconfigured_channels_say_so(
    full_run: tuple[Path, list[dict[str, Any]]], plc: WatchedPlc
) -> None:
    """Loitering alarms pulse the siren coil on the PLC; channels without credentials
    report "not configured" on the execution instead of failing the run."""
    out, events = full_run
    executions = read_events(out / "executions.jsonl")
    loitering = {e["event_id"] for e in events if e["event_type"] == "loitering"}
    alarms = [x for x in executions if x["input"]["context"]["entry"] == "loitering"]
    # THEN every loitering event ran the alarm branch, and every execution succeeded
    assert {x["input"]["event"]["event_id"] for x in alarms} == loitering
    assert all(x["status"] == "SUCCEEDED" for x in executions)
    results: dict[str, list[str]] = {}
    for x in alarms:
        for branch in x["output"]["branches"]:
            for node_id, result in branch["results"].items():
                results.setdefault(node_id, []).append(result["status"])
    for channel in ("whatsapp", "telegram", "email"):
        assert set(results[channel]) == {"not_configured"}, results[channel]
    assert "sent" in results["siren"] and set(results["siren"]) <= {"sent", "throttled"}
    assert set(results["dashboard"]) == {"recorded"}
    # AND the siren coil went on and off once per pulse sent, and ended off
    pulses = results["siren"].count("sent")
    assert plc.siren == [False, True] * pulses + [False], plc.siren
    assert plc.simulator.read_coils(0, 1) == [False]


@pytest.mark.timeout(900)
def test_same_input_gives_same_events(
    full_run: tuple[Path, list[dict[str, Any]]], example: Path, tmp_path: Path
) -> None:
    """Running the same input twice gives the same events (ids, times, tracks, dwell)."""
    _, events = full_run
    # WHEN the first 300 frames run again into another folder
    result = aios(
        "run",
        str(example),
        "--events",
        str(tmp_path / "events.jsonl"),
        "--max-frames",
        "300",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    again = read_events(tmp_path / "events.jsonl")

    def comparable(e: dict[str, Any]) -> dict[str, Any]:
        return {
            **e,
            "snapshot": Path(e["snapshot"]).name if e["snapshot"] else None,
            "clip": Path(e["clip"]).name if e["clip"] else None,
        }

    def in_order(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Event-tier executions run concurrently, so records may land in any order.
        return sorted(items, key=lambda e: (e["frame_index"], e["event_id"], e["outputs"]))

    # THEN the events of those frames are identical
    expected = in_order([comparable(e) for e in events if e["frame_index"] < 300])
    assert expected, "no events in the first 300 frames"
    assert in_order([comparable(e) for e in again]) == expected


BAD_CASES = {
    "unknown_type": (
        lambda d: d["nodes"][2].update(type="aios/object_detector@1"),
        "node 'detect' type: unknown node type 'aios/object_detector@1'",
    ),
    "invalid_config": (
        lambda d: d["nodes"][3]["config"].update(polygon=[[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]]),
        "node 'restricted' config.polygon.1.0: Input should be less than or equal to 1",
    ),
    "unknown_port": (
        lambda d: d["edges"][2].update(sourceHandle="boxes"),
        "'detect' (aios/object_detection@1) has no output port 'boxes'",
    ),
    "incompatible_ports": (
        lambda d: d["edges"][3].update(sourceHandle="events"),
        "output 'events' of 'restricted' carries event, but input 'detections' of "
        "'loitering' takes detections",
    ),
    "cycle": (
        lambda d: d["edges"].append(
            {
                "source": "restricted",
                "sourceHandle": "inside",
                "target": "restricted",
                "targetHandle": "detections",
            }
        ),
        "the graph has a cycle through nodes 'restricted'",
    ),
    "dangling_edge": (
        lambda d: d["edges"].append(
            {
                "source": "loitering",
                "sourceHandle": "events",
                "target": "horn",
                "targetHandle": "events",
            }
        ),
        "target node 'horn' does not exist",
    ),
    "unreachable_output": (
        lambda d: (
            d["nodes"].append(
                {
                    "id": "zone2",
                    "type": "aios/zone@1",
                    "config": {"polygon": [[0, 0], [1, 0], [1, 1]]},
                }
            ),
            d["edges"].__setitem__(4, {**d["edges"][4], "source": "zone2"}),
            d["edges"].__setitem__(3, {**d["edges"][3], "source": "zone2"}),
        ),
        "node 'dashboard': no input node reaches this output",
    ),
    "no_input": (
        lambda d: (
            d["nodes"].pop(0),
            d["edges"].pop(0),
        ),
        "the pipeline has no input node",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_pipeline_is_refused_and_nothing_written(case: str, tmp_path: Path) -> None:
    """Each kind of bad document exits non-zero with its precise message; no file is written."""
    # GIVEN the shipped pipeline with one defect
    doc = json.loads(INTRUSION.read_text())
    mutate, message = BAD_CASES[case]
    mutate(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    out = tmp_path / "out"
    # WHEN it is run
    result = aios("run", str(bad), "--events", str(out / "events.jsonl"), "--quiet", timeout=60)
    # THEN it is refused with the message, and nothing is written
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
    assert f"[{case}]" in result.stderr
    assert not out.exists()


def test_unreadable_document_is_refused(tmp_path: Path) -> None:
    """A missing file or broken JSON exits non-zero with the reason."""
    assert "cannot read" in aios("run", str(tmp_path / "none.json"), timeout=60).stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "nodes": [')
    result = aios("validate", str(broken), timeout=60)
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_failed_start_keeps_the_previous_events_file(tmp_path: Path) -> None:
    """A run that cannot start (bad model path) leaves an earlier events file untouched."""
    # GIVEN an events file from an earlier run
    events = tmp_path / "events.jsonl"
    events.write_text('{"earlier": true}\n')
    # WHEN a run fails while loading its model
    result = subprocess.run(
        [sys.executable, "-m", "aios.cli", "run", str(INTRUSION), "--events", str(events), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "YOLO_MODEL_PATH": str(tmp_path / "missing.onnx")},
        check=False,
    )
    # THEN it names the node and the path, and the file is as it was
    assert result.returncode == 1
    assert "node 'detect' (aios/object_detection@1) cannot start" in result.stderr
    assert "missing.onnx (from environment variable YOLO_MODEL_PATH)" in result.stderr
    assert events.read_text() == '{"earlier": true}\n'


def test_outputs_are_checked_before_running(tmp_path: Path) -> None:
    """Unwritable or wrong-kind output paths are refused at once."""
    result = aios("run", str(INTRUSION), "--events", str(tmp_path), "-q", timeout=60)
    assert result.returncode == 2 and "must be a file" in result.stderr
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = aios("run", str(INTRUSION), "--annotated", str(blocker / "a.mp4"), timeout=60)
    assert result.returncode == 2 and "is not a writable folder" in result.stderr


def test_bad_sources_and_files_are_explained(tmp_path: Path) -> None:
    """Unsupported --source schemes and non-UTF-8 documents get a message, not a traceback."""
    result = aios("run", str(INTRUSION), "--source", "http://camera/stream", timeout=60)
    assert result.returncode == 2 and "unsupported scheme 'http'" in result.stderr
    binary = tmp_path / "pipeline.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = aios("run", str(binary), timeout=60)
    assert result.returncode == 2 and "not UTF-8 text" in result.stderr
    result = aios("validate", str(tmp_path / "none.json"), "--json", timeout=60)
    assert result.returncode == 2
    assert json.loads(result.stdout)["issues"][0]["code"] == "invalid_document"
