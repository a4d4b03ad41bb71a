"""Camera snapshots for drawing zones: a fleet camera's frame through its connector's
``snapshot`` command (the connector side is a real :class:`connector.cameras.CameraWorker`
playing a video), and a frame from a URL or file the builder's camera node names."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from api_client import ApiClient
from api_support import Account, ManualClock
from up_support import free_port

from aios.api.snapshots import MAX_SNAPSHOT_BYTES
from aios.fleet.service import FleetService
from aios.messages import CommandRequest, CommandResponse
from aios.vision.annotate import VideoWriter
from connector.cameras import CameraWorker
from connector.config import CameraConfig

GREEN = (0, 200, 0)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s 320×240 video: grey, with a green square top left."""
    path = tmp_path_factory.mktemp("video") / "dock.mp4"
    image = np.full((240, 320, 3), 90, dtype=np.uint8)
    cv2.rectangle(image, (10, 10), (110, 110), GREEN, -1)
    with VideoWriter(path, 10.0, 320, 240) as writer:
        for _ in range(20):
            writer.write(image)
    return path


def assert_dock_jpeg(data: bytes, width: int = 320) -> None:
    """The bytes are a JPEG of the test video (green square top left, grey elsewhere)."""
    assert data[:2] == b"\xff\xd8"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] == width
    square = image[20:100, 20:100].reshape(-1, 3).mean(axis=0)
    assert square[1] > 150 and square[0] < 60 and square[2] < 60, square
    assert abs(float(image[200:230, 200:300].mean()) - 90) < 15


class ConnectorStandIn:
    """The device link of the test: a command published to the connector is answered by a
    real camera worker, on another thread, and the answer ingested by the fleet service
    (as MQTT and the connector daemon would carry it)."""

    def __init__(self, fleet: FleetService, worker: CameraWorker | None) -> None:
        self.fleet = fleet
        self.worker = worker
        self.requests: list[dict[str, Any]] = []

    def publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        self.requests.append(payload)
        if self.worker is not None:
            threading.Thread(target=self._answer, args=(payload,), daemon=True).start()

    def _answer(self, payload: dict[str, Any]) -> None:
        request = CommandRequest.model_validate(payload)
        assert self.worker is not None
        result = self.worker.snapshot_jpeg(
            float(request.params["wait_seconds"]), int(request.params["max_bytes"])
        )
        self.fleet.record_command_response(
            "gw-1",
            CommandResponse(
                message_id=f"res-{request.request_id}",
                time=self.fleet.services.clock(),
                request_id=request.request_id,
                ok=result is not None,
                result=result,
                error=None if result is not None else "no frame yet",
            ),
        )


@pytest.fixture
def fleet_cameras(api: ApiClient, operator: Account) -> None:
    for body in (
        {"id": "gw-1", "name": "Gateway", "kind": "connector"},
        {"id": "cam-1", "name": "Dock", "kind": "camera", "parent_id": "gw-1"},
        {"id": "cam-9", "name": "Loose", "kind": "camera"},
        {"id": "plc-1", "name": "PLC", "kind": "plc", "parent_id": "gw-1"},
    ):
        assert api.post("/api/v1/devices", body, token=operator.token).status == 201


def connector_online(api: ApiClient, clock: ManualClock) -> None:
    """The connector ``gw-1`` heard from just now (a heartbeat)."""
    clock.now = datetime.now(UTC)
    api.app.services.store.devices.touch("gw-1", clock.now)


@pytest.fixture
def worker(video: Path) -> Iterator[CameraWorker]:
    camera = CameraWorker(CameraConfig(id="cam-1", url=str(video)))
    camera.start()
    yield camera
    camera.stop()


def test_a_fleet_camera_snapshot_through_its_connector(
    api: ApiClient,
    viewer: Account,
    fleet_cameras: None,
    worker: CameraWorker,
    clock: ManualClock,
) -> None:
    connector_online(api, clock)
    link = ConnectorStandIn(FleetService(api.app.services), worker)
    api.app.services.link = link
    # WHEN a viewer asks for the camera's snapshot
    res = api.get("/api/v1/devices/cam-1/snapshot", token=viewer.token)
    # THEN the connector was asked for it, and the JPEG is the camera's current frame
    assert res.status == 200, res.text[:300]
    assert res.headers["content-type"] == "image/jpeg"
    assert (res.headers["x-snapshot-width"], res.headers["x-snapshot-height"]) == ("320", "240")
    assert datetime.fromisoformat(res.headers["x-snapshot-time"]).tzinfo is not None
    assert_dock_jpeg(res.raw_bytes())
    (request,) = link.requests
    assert (request["device_id"], request["name"]) == ("cam-1", "snapshot")
    assert request["params"]["max_bytes"] == MAX_SNAPSHOT_BYTES
    # AND the command is in the camera's history, answered
    commands = api.get("/api/v1/devices/cam-1/commands", token=viewer.token).json()["items"]
    assert [(c["name"], c["status"], c["requested_by"]) for c in commands] == [
        ("snapshot", "succeeded", "vera")
    ]


def test_snapshot_errors(
    api: ApiClient, viewer: Account, fleet_cameras: None, clock: ManualClock
) -> None:
    # without a device link: 503
    unreachable = api.get("/api/v1/devices/cam-1/snapshot", token=viewer.token)
    assert unreachable.status == 503 and unreachable.error["code"] == "device_unreachable"
    # a device that is not a camera, or a camera behind no connector: 409
    link = ConnectorStandIn(FleetService(api.app.services), None)  # never answers
    api.app.services.link = link
    plc = api.get("/api/v1/devices/plc-1/snapshot", token=viewer.token)
    assert plc.status == 409 and plc.error["code"] == "not_a_camera"
    loose = api.get("/api/v1/devices/cam-9/snapshot", token=viewer.token)
    assert loose.status == 409 and loose.error["code"] == "no_connector"
    missing = api.get("/api/v1/devices/cam-404/snapshot", token=viewer.token)
    assert missing.status == 404
    # a camera whose connector is offline: 503 at once, naming the connector
    offline = api.get("/api/v1/devices/cam-1/snapshot", token=viewer.token)
    assert offline.status == 503 and offline.error["code"] == "device_unreachable"
    assert "connector 'gw-1'" in offline.error["message"] and not link.requests
    # a camera that does not answer: 504 after the timeout, naming the connector
    connector_online(api, clock)
    started = datetime.now(UTC)
    silent = api.get(
        "/api/v1/devices/cam-1/snapshot", token=viewer.token, query={"timeout_seconds": 0.5}
    )
    assert silent.status == 504 and silent.error["code"] == "camera_timeout"
    assert "gw-1" in silent.error["message"] and "0.5 s" in silent.error["message"]
    assert (datetime.now(UTC) - started).total_seconds() < 5
    assert len(link.requests) == 1
    too_long = api.get(
        "/api/v1/devices/cam-1/snapshot", token=viewer.token, query={"timeout_seconds": 60}
    )
    assert too_long.status == 422 and too_long.fields() == ["query.timeout_seconds"]


def test_a_snapshot_from_a_video_file_or_image(
    api: ApiClient, operator: Account, viewer: Account, video: Path, tmp_path: Path
) -> None:
    for url in (str(video), video.as_uri()):
        res = api.post("/api/v1/cameras/snapshot", {"url": url}, token=operator.token)
        assert res.status == 200, res.text[:300]
        assert res.headers["content-type"] == "image/jpeg"
        assert_dock_jpeg(res.raw_bytes())
    # a large image is scaled down to fit
    big = np.full((1440, 2560, 3), 90, dtype=np.uint8)
    cv2.rectangle(big, (20, 20), (220, 220), GREEN, -1)
    still = tmp_path / "big.png"
    cv2.imwrite(str(still), big)
    res = api.post("/api/v1/cameras/snapshot", {"url": str(still)}, token=operator.token)
    assert res.status == 200, res.text[:300]
    assert res.headers["x-snapshot-width"] == "1280" and len(res.raw_bytes()) <= MAX_SNAPSHOT_BYTES
    assert_dock_jpeg(res.raw_bytes(), width=1280)
    # errors are clear, and viewers may not grab URLs
    missing = api.post(
        "/api/v1/cameras/snapshot", {"url": str(tmp_path / "nope.mp4")}, token=operator.token
    )
    assert missing.status == 422 and missing.fields() == ["body.url"]
    http = api.post(
        "/api/v1/cameras/snapshot", {"url": "http://127.0.0.1/x.jpg"}, token=operator.token
    )
    assert http.status == 422 and "rtsp://" in http.error["message"]
    assert (
        api.post("/api/v1/cameras/snapshot", {"url": str(video)}, token=viewer.token).status == 403
    )


def test_an_rtsp_camera_that_refuses_or_stays_silent_never_echoes_the_password(
    api: ApiClient, operator: Account, admin: Account
) -> None:
    password = "pa55-Secret-word"
    # a closed loopback port: refused at once
    closed = f"rtsp://admin:{password}@127.0.0.1:{free_port()}/Streaming/Channels/101"
    res = api.post(
        "/api/v1/cameras/snapshot", {"url": closed, "timeout_seconds": 3}, token=operator.token
    )
    assert res.status == 502 and res.error["code"] == "camera_unreachable", res.text
    assert password not in res.text and "admin:***@127.0.0.1" in res.error["message"]
    # a server that accepts and never answers: 504 after the timeout
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        port = server.getsockname()[1]
        silent = api.post(
            "/api/v1/cameras/snapshot",
            {
                "url": f"rtsp://127.0.0.1:{port}/live",
                "username": "admin",
                "password": password,
                "timeout_seconds": 1,
            },
            token=operator.token,
        )
        assert silent.status in (502, 504), silent.text
        assert password not in silent.text
    finally:
        server.close()
    audit = api.get("/api/v1/audit", token=admin.token, query={"target_type": "camera"})
    assert {e["target_id"] for e in audit.json()["items"]} == {"127.0.0.1"}
    assert password not in audit.text
