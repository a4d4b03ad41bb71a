"""Benchmark: raw detector throughput versus the whole stream tier on the same video.

Prints, for one run on the first frames of ``vtest.avi`` (768×576, people walking):

* raw inferences per second of the detector (pre-decoded frames, preprocessing + model +
  decoding, no pipeline);
* pipeline frames per second without a motion gate (file → detection + tracking → zone →
  loitering → dashboard), and with one;
* pipeline overhead per frame in milliseconds: what a frame costs beyond the detection
  node (decode, zone, loitering, events, the runtime), measured inside the same run, and
  each figure as a ratio to the raw baseline;
* the same two pipelines on a still scene (the first frame of vtest.avi repeated), where
  the motion gate lets detection skip frames.

Run: ``.venv/bin/python tests/bench/bench_pipeline.py [--frames N]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from aios import assets
from aios.nodes import CATALOG
from aios.pipeline.validation import validate_pipeline
from aios.runtime.events import MemorySink
from aios.runtime.stream import StreamRunner
from aios.vision.annotate import VideoWriter
from aios.vision.detector import Detector
from aios.vision.model_store import resolve_model_path

ROOT = Path(__file__).resolve().parents[2]


def raw_inference(frames: list[Any], repeats: int) -> float:
    """Return detector calls per second on in-memory frames (best of ``repeats``)."""
    detector = Detector(
        resolve_model_path(None),
        min_confidence=0.3,
        classes={"person"},
        num_threads=max(1, min(4, os.cpu_count() or 1)),
    )
    detector.detect(frames[0])
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for frame in frames:
            detector.detect(frame)
        rates.append(len(frames) / (time.perf_counter() - started))
    return max(rates)


def pipeline_rate(
    doc: dict[str, Any], frames: int, repeats: int
) -> tuple[float, int, dict[str, float]]:
    """Return frames per second, detector inferences and mean milliseconds per frame spent
    in each node (plus ``decode+runtime`` for the rest), from the fastest of ``repeats``."""
    best: tuple[float, int, dict[str, float]] = (0.0, 0, {})
    for _ in range(repeats):
        runner = StreamRunner(validate_pipeline(doc, CATALOG), MemorySink(), max_frames=frames)
        summary = runner.run()
        rate = summary.frames / summary.wall_seconds
        if rate > best[0]:
            per_node = {
                nid: 1000 * stats.seconds / summary.frames
                for nid, stats in summary.nodes.items()
                if stats.calls
            }
            per_node["decode+runtime"] = 1000 / rate - sum(per_node.values())
            inferences = getattr(runner.workers[0].impls["detect"], "inferences", 0)
            best = (rate, inferences, per_node)
    return best


def main(argv: list[str] | None = None) -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200, help="frames of vtest.avi to use")
    parser.add_argument("--repeats", type=int, default=2, help="runs per figure (best kept)")
    args = parser.parse_args(argv)

    video = assets.path("vtest.avi")
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < args.frames:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()

    with_gate = json.loads((ROOT / "examples" / "pipelines" / "intrusion.json").read_text())
    for node in with_gate["nodes"]:
        if node["type"] == "aios/zone@1":
            node["config"]["evidence"] = {"snapshot": False, "clip": False}
    without_gate = copy.deepcopy(with_gate)
    without_gate["nodes"] = [n for n in without_gate["nodes"] if n["id"] != "motion"]
    without_gate["edges"] = [
        e for e in without_gate["edges"] if e["source"] != "motion" and e["target"] != "motion"
    ]
    without_gate["edges"].append(
        {"source": "camera", "sourceHandle": "frames", "target": "detect", "targetHandle": "frames"}
    )

    raw = raw_inference(frames, args.repeats)
    plain, plain_inf, plain_ms = pipeline_rate(without_gate, len(frames), args.repeats)
    gated, gated_inf, gated_ms = pipeline_rate(with_gate, len(frames), args.repeats)
    # Measured inside the run, so machine drift between runs does not enter it: everything
    # a frame costs beyond the detection node (decode, analytics, events, the runtime).
    overhead_ms = 1000 / plain - plain_ms["detect"]

    with tempfile.TemporaryDirectory() as tmp:
        still = Path(tmp) / "still.mp4"
        with VideoWriter(still, fps=10.0, width=frames[0].shape[1], height=frames[0].shape[0]) as w:
            for _ in frames:
                w.write(frames[0])
        for doc in (with_gate, without_gate):
            camera = next(n for n in doc["nodes"] if n["id"] == "camera")
            camera["config"] = {"path": str(still)}
        still_plain, still_plain_inf, _ = pipeline_rate(without_gate, len(frames), args.repeats)
        still_gated, still_gated_inf, _ = pipeline_rate(with_gate, len(frames), args.repeats)

    print(f"video: {video.name}, {len(frames)} frames, {frames[0].shape[1]}x{frames[0].shape[0]}")
    print(f"raw detector:                 {raw:7.2f} inferences/s   (baseline, 1.00x)")
    print(
        f"pipeline without motion gate: {plain:7.2f} frames/s       ({plain / raw:.2f}x raw,"
        f" {plain_inf} inferences)"
    )
    print(
        f"pipeline with motion gate:    {gated:7.2f} frames/s       ({gated / raw:.2f}x raw,"
        f" {gated_inf} inferences)"
    )
    print(
        f"pipeline overhead per frame:  {overhead_ms:7.2f} ms beyond detection "
        f"({overhead_ms / (1000 / raw):.2f}x of {1000 / raw:.2f} ms raw inference)"
    )
    print(
        "time per frame by node, without gate: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in plain_ms.items())
    )
    print(
        "time per frame by node, with gate:    "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in gated_ms.items())
    )
    print(
        f"still scene, no motion gate:  {still_plain:7.2f} frames/s       "
        f"({still_plain / raw:.2f}x raw, {still_plain_inf} inferences)"
    )
    print(
        f"still scene, motion gate:     {still_gated:7.2f} frames/s       "
        f"({still_gated / raw:.2f}x raw, {still_gated_inf} inferences)"
    )


if __name__ == "__main__":
    main()
