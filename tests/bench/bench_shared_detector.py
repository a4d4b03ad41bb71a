"""Benchmark: N cameras detecting with one shared onnxruntime session versus one each.

Each "camera" is a thread that runs the default detector (YOLOv3-tiny COCO, 416×416) on
frames of ``vtest.avi`` (768×576) as fast as it can for a fixed time, as the connector's
stream workers do when several stream plans use the same model. Two set-ups:

* **separate** — every camera loads its own :class:`~aios.vision.detector.Detector`
  (its own ``InferenceSession``, ``min(4, cores)`` intra-op threads, as the
  object-detection node builds it);
* **shared** — one session, every camera's detector runs on it
  (:meth:`~aios.vision.detector.Detector.sharing`); onnxruntime allows concurrent
  ``run`` calls on one session.

Prints, for each N, total frames/s of both, the ratio shared / separate and the resident
memory each set-up added (each figure in a fresh process; with one camera both set-ups
are the same, so that row shows the measurement noise). The connector's choice
(:data:`connector.streams.SHARE_DETECTOR`) follows these figures.

Run: ``.venv/bin/python tests/bench/bench_shared_detector.py [--cameras 1 2 4] [--seconds 8]``.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import cv2
import psutil

from aios import assets
from aios.vision.detector import Detector
from aios.vision.model_store import resolve_model_path


def _frames(count: int) -> list[Any]:
    cap = cv2.VideoCapture(str(assets.path("vtest.avi")))
    frames: list[Any] = []
    while len(frames) < count:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def _detectors(cameras: int, shared: bool) -> list[Detector]:
    threads = max(1, min(4, os.cpu_count() or 1))
    path = resolve_model_path(None)
    first = Detector(path, min_confidence=0.3, classes={"person"}, num_threads=threads)
    if shared:
        return [first] + [
            first.sharing(min_confidence=0.3, classes={"person"}) for _ in range(cameras - 1)
        ]
    return [first] + [
        Detector(path, min_confidence=0.3, classes={"person"}, num_threads=threads)
        for _ in range(cameras - 1)
    ]


def measure(cameras: int, shared: bool, seconds: float) -> tuple[float, float]:
    """Return (total frames per second over all cameras, MiB of memory the set-up added).

    Runs in a fresh process (see :func:`main`), so the memory figure is that set-up's own.
    """
    frames = _frames(60)
    gc.collect()
    process = psutil.Process()
    before = process.memory_info().rss
    detectors = _detectors(cameras, shared)
    for d in detectors:
        d.detect(frames[0])  # warm-up, outside the timed part
    added = (process.memory_info().rss - before) / 2**20
    counts = [0] * cameras
    start = threading.Barrier(cameras + 1)
    deadline: list[float] = [0.0]

    def camera(i: int) -> None:
        start.wait()
        n = 0
        while time.perf_counter() < deadline[0]:
            detectors[i].detect(frames[(n * 7 + i * 13) % len(frames)])
            n += 1
        counts[i] = n

    workers = [threading.Thread(target=camera, args=(i,)) for i in range(cameras)]
    for w in workers:
        w.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    detectors.clear()
    return sum(counts) / elapsed, added


def main(argv: list[str] | None = None) -> None:
    """Measure and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per figure")
    args = parser.parse_args(argv)
    frames = _frames(1)
    print(
        f"model: {resolve_model_path(None).name}, cores: {os.cpu_count()}, "
        f"{args.seconds:g} s per figure, frames {frames[0].shape[1]}x{frames[0].shape[0]}, "
        f"load average before: {os.getloadavg()[0]:.2f}"
    )
    print("cameras  separate fps  shared fps  shared/separate  separate MiB  shared MiB")
    context = multiprocessing.get_context("spawn")
    for n in args.cameras:
        # One process per figure: a clean memory baseline, no session left from before.
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            separate, separate_mib = pool.submit(measure, n, False, args.seconds).result()
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            shared, shared_mib = pool.submit(measure, n, True, args.seconds).result()
        print(
            f"{n:7d}  {separate:12.2f}  {shared:10.2f}  {shared / separate:15.2f}"
            f"  {separate_mib:12.1f}  {shared_mib:10.1f}"
        )


if __name__ == "__main__":
    main()
