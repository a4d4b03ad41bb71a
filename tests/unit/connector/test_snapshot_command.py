"""The connector's ``snapshot`` command: a camera's newest frame as a bounded JPEG in the
command result, answered through the daemon's command dispatch."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from aios.messages import CommandRequest
from aios.vision.annotate import VideoWriter
from connector.cameras import CameraWorker
from connector.config import CameraConfig
from connector.daemon import SNAPSHOT_COMMAND, Connector


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s 640×480 noisy video (noise makes JPEGs large)."""
    path = tmp_path_factory.mktemp("video") / "noise.mp4"
    rng = np.random.default_rng(3)
    with VideoWriter(path, 10.0, 640, 480) as writer:
        for _ in range(20):
            writer.write(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    return path


@pytest.fixture
def worker(video: Path) -> Iterator[CameraWorker]:
    camera = CameraWorker(CameraConfig(id="cam-1", url=str(video)))
    camera.start()
    yield camera
    camera.stop()


def dispatcher(cameras: dict[str, CameraWorker]) -> Any:
    """The daemon's command dispatch over these cameras (no link, no other devices)."""
    connector = object.__new__(Connector)
    connector.id = "gw-1"
    connector._lock = threading.RLock()
    connector.cameras = cameras
    connector.plcs = {}
    return connector


def request(device_id: str, **params: Any) -> CommandRequest:
    now = datetime.now(UTC)
    return CommandRequest(
        message_id="req-1",
        time=now,
        request_id="req-1",
        device_id=device_id,
        name=SNAPSHOT_COMMAND,
        params=params,
        deadline=now + timedelta(seconds=10),
    )


def test_snapshot_answers_a_bounded_jpeg_of_the_newest_frame(worker: CameraWorker) -> None:
    connector = dispatcher({"cam-1": worker})
    ok, result, error = connector._run_command(request("cam-1", max_bytes=30_000))
    assert ok is True and error is None, error
    assert result is not None
    data = base64.b64decode(result["jpeg_base64"])
    assert data[:2] == b"\xff\xd8" and len(data) == result["bytes"] <= 30_000
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1::-1] == (result["width"], result["height"])
    assert result["width"] <= 640 and result["height"] * 4 == result["width"] * 3
    captured = datetime.fromisoformat(result["captured_at"])
    assert abs((datetime.now(UTC) - captured).total_seconds()) < 10


def test_snapshot_of_an_unknown_camera_or_bad_params_is_refused(worker: CameraWorker) -> None:
    connector = dispatcher({"cam-1": worker})
    ok, result, error = connector._run_command(request("cam-404"))
    assert ok is False and result is None
    assert error is not None and "cam-404" in error and "cam-1" in error
    for params in ({"max_bytes": 10**9}, {"max_bytes": "big"}, {"wait_seconds": -1}):
        ok, _, error = connector._run_command(request("cam-1", **params))
        assert ok is False and error is not None


def test_a_camera_without_a_frame_says_so(tmp_path: Path) -> None:
    missing = CameraWorker(CameraConfig(id="cam-2", url=str(tmp_path / "missing.mp4")))
    missing.start()
    try:
        connector = dispatcher({"cam-2": missing})
        ok, result, error = connector._run_command(request("cam-2", wait_seconds=0.3))
        assert ok is False and result is None
        assert error is not None and "no frame yet" in error
    finally:
        missing.stop()
