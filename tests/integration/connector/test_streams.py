"""Stream plans on real cameras: vtest.avi played as live cameras, a camera that is down
(RTSP to a closed loopback port), the real detector, real media uploads over HTTP."""

from __future__ import annotations

import copy
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from zone_pipelines import POS, person_zone_pipeline

from aios.messages import EVENT_TYPE_PATTERN, DeviceEventItem
from connector.cameras import CameraWorker
from connector.config import CameraConfig
from connector.media import MediaUploader
from connector.streams import StreamPlan, StreamPlanManager, parse_plans


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cameras:
    """The connector's camera workers, by id (what the daemon holds)."""

    def __init__(self) -> None:
        self.workers: dict[str, CameraWorker] = {}

    def add(self, config: CameraConfig, password: str | None = None) -> CameraWorker:
        worker = CameraWorker(config, password)
        worker.start()
        self.workers[config.id] = worker
        return worker

    def __call__(self, camera_id: str) -> CameraWorker | None:
        return self.workers.get(camera_id)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()


@pytest.fixture
def cameras() -> Iterator[Cameras]:
    cams = Cameras()
    try:
        yield cams
    finally:
        cams.stop()


class Events:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[tuple[str, DeviceEventItem]] = []

    def __call__(self, camera_id: str, items: list[DeviceEventItem]) -> None:
        with self.lock:
            self.items.extend((camera_id, i) for i in items)

    def snapshot(self) -> list[tuple[str, DeviceEventItem]]:
        with self.lock:
            return list(self.items)


def motion_pipeline(name: str, threshold: float = 0.002) -> dict[str, Any]:
    """camera → motion gate: cheap, enough to count frames."""
    return {
        "name": name,
        "nodes": [
            {
                "id": "cam",
                "type": "aios/camera.rtsp@1",
                "config": {"host": "bound"},
                "position": POS,
            },
            {
                "id": "motion",
                "type": "aios/motion_gate@1",
                "config": {"min_changed_fraction": threshold},
                "position": POS,
            },
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


def zone_pipeline(name: str, *, snapshot: bool) -> dict[str, Any]:
    """camera → person detection + tracking → zone (most of the frame) → dashboard."""
    return person_zone_pipeline(
        name,
        {"type": "aios/camera.rtsp@1", "config": {"host": "bound"}},
        zone="floor",
        polygon=[[0.02, 0.02], [0.98, 0.02], [0.98, 0.98], [0.02, 0.98]],
        snapshot=snapshot,
    )


def plan(
    plan_id: str, camera_id: str, pipeline: dict[str, Any], version: int = 1, **extra: Any
) -> StreamPlan:
    plans, errors = parse_plans(
        {
            "stream_plans": [
                {
                    "plan_id": plan_id,
                    "version": version,
                    "camera_id": camera_id,
                    "pipeline": pipeline,
                    **extra,
                }
            ]
        }
    )
    assert errors == []
    return plans[0]


def statuses(manager: StreamPlanManager) -> dict[str, Any]:
    return {s.plan_id: s for s in manager.status()}


def test_push_change_remove_plans(cameras: Cameras, video: Path, tmp_path: Path) -> None:
    cam_a = cameras.add(CameraConfig(id="cam-a", url=str(video)))
    cam_b = cameras.add(CameraConfig(id="cam-b", url=f"file://{video}"))
    events = Events()
    manager = StreamPlanManager(cameras, events, media_dir=tmp_path / "media")
    try:
        p1 = plan("p1", "cam-a", motion_pipeline("one"))
        p2 = plan("p2", "cam-b", motion_pipeline("two"))
        report = manager.apply([p1, p2])
        assert sorted(report.started) == ["p1", "p2"] and not report.failed
        threads = manager.workers
        assert set(threads) == {"p1", "p2"}
        assert all(t.is_alive() for t in threads.values())
        wait_for(
            lambda: all(s.state == "running" and s.frames >= 3 for s in manager.status()),
            20,
            "both plans running with frames",
        )
        assert (cam_a.subscribers, cam_b.subscribers) == (1, 1)

        # the same plans again: nothing restarts
        report = manager.apply([p1, p2])
        assert sorted(report.unchanged) == ["p1", "p2"]
        assert manager.workers == threads

        # p2 changes (content, same version) and p1 moves to a new version on camera b
        p2_changed = plan("p2", "cam-b", motion_pipeline("two", threshold=0.01))
        p1_v2 = plan("p1", "cam-b", motion_pipeline("one"), version=2)
        report = manager.apply([p1_v2, p2_changed])
        assert sorted(report.updated) == ["p1", "p2"]
        after = manager.workers
        assert after["p1"] is not threads["p1"] and after["p2"] is not threads["p2"]
        assert not threads["p1"].is_alive() and not threads["p2"].is_alive()
        wait_for(
            lambda: (cam_a.subscribers, cam_b.subscribers) == (0, 2),
            10,
            "p1 moved from cam-a to cam-b",
        )
        wait_for(
            lambda: (
                statuses(manager)["p1"].version == 2
                and statuses(manager)["p1"].frames >= 3
                and statuses(manager)["p2"].frames >= 3
            ),
            20,
            "updated plans running",
        )

        # a third plan added while the others keep their workers
        p3 = plan("p3", "cam-a", motion_pipeline("three"))
        report = manager.apply([p1_v2, p2_changed, p3])
        assert report.started == ["p3"] and sorted(report.unchanged) == ["p1", "p2"]
        assert manager.workers["p1"] is after["p1"]

        # p2 removed: only its worker stops
        report = manager.apply([p1_v2, p3])
        assert report.stopped == ["p2"] and sorted(report.unchanged) == ["p1", "p3"]
        assert not after["p2"].is_alive()
        assert set(manager.workers) == {"p1", "p3"}
        wait_for(lambda: cam_b.subscribers == 1, 5, "p2 unsubscribed")
        frames_p1 = statuses(manager)["p1"].frames
        wait_for(lambda: statuses(manager)["p1"].frames > frames_p1 + 3, 10, "p1 still running")

        # an invalid plan is reported, the rest untouched
        bad = copy.deepcopy(motion_pipeline("bad"))
        bad["nodes"][1]["config"] = {"min_changed_fraction": -1}
        _, errors = parse_plans(
            {
                "stream_plans": [
                    {"plan_id": "p4", "version": 1, "camera_id": "cam-a", "pipeline": bad}
                ]
            }
        )
        assert len(errors) == 1 and "p4" in errors[0] and "min_changed_fraction" in errors[0]

        manager.stop_all()
        assert all(not t.is_alive() for t in after.values())
        assert manager.status() == []
        assert (cam_a.subscribers, cam_b.subscribers) == (0, 0)
        assert cam_a.health().state == "streaming"  # camera capture is not the plans' business
    finally:
        manager.stop_all()


def test_camera_down_is_reported_others_keep_running(
    cameras: Cameras, video: Path, tmp_path: Path
) -> None:
    port = closed_port()
    secret = "s3cr@t:/pw"
    down = cameras.add(
        CameraConfig(
            id="cam-down",
            url=f"rtsp://127.0.0.1:{port}/Streaming/Channels/101",
            username="admin",
            password="env:UNUSED_CAMERA_PASSWORD",
            open_timeout_seconds=2,
            read_timeout_seconds=2,
            reconnect_max_seconds=2,
        ),
        secret,
    )
    up = cameras.add(CameraConfig(id="cam-up", url=str(video)))
    manager = StreamPlanManager(cameras, Events(), media_dir=tmp_path / "media")
    try:
        report = manager.apply(
            [
                plan("on-down", "cam-down", motion_pipeline("down")),
                plan("on-up", "cam-up", motion_pipeline("up")),
                plan("on-missing", "cam-missing", motion_pipeline("missing")),
            ]
        )
        assert sorted(report.started) == ["on-down", "on-missing", "on-up"]
        wait_for(lambda: down.health().error is not None, 15, "the down camera's error")
        wait_for(lambda: statuses(manager)["on-up"].frames >= 10, 20, "frames on the live camera")

        health = down.health()
        assert health.state == "reconnecting"
        assert health.frames == 0 and health.last_frame_time is None and health.fps == 0.0
        assert health.error is not None and f"127.0.0.1:{port}" in health.error
        for text in (health.error, repr(down), down.redacted_url):
            assert secret not in text and "s3cr%40t" not in text

        st = statuses(manager)
        assert st["on-down"].state == "waiting_for_camera"
        assert st["on-down"].error is not None and "cam-down" in st["on-down"].error
        assert secret not in st["on-down"].error and st["on-down"].frames == 0
        assert st["on-missing"].state == "waiting_for_camera"
        assert "not configured" in (st["on-missing"].error or "")
        assert st["on-up"].state == "running" and st["on-up"].error is None
        assert up.health().state == "streaming" and up.health().fps > 3
        assert manager.workers["on-down"].is_alive()

        # the missing camera appears: its plan picks it up
        cameras.add(CameraConfig(id="cam-missing", url=str(video)))
        wait_for(
            lambda: (
                statuses(manager)["on-missing"].state == "running"
                and statuses(manager)["on-missing"].frames > 0
            ),
            15,
            "the plan on the camera added later",
        )

        # a plan on a down camera stops promptly, and so does the camera worker
        started = time.monotonic()
        report = manager.apply([plan("on-up", "cam-up", motion_pipeline("up"))])
        assert sorted(report.stopped) == ["on-down", "on-missing"]
        assert time.monotonic() - started < 5
        down.stop(timeout=5)
        assert down.thread is not None and not down.thread.is_alive()
        assert down.health().state == "stopped"
        assert statuses(manager)["on-up"].state == "running"
    finally:
        manager.stop_all()


class _PutServer:
    """An HTTP server on 127.0.0.1 that stores PUT bodies (a presigned-URL stand-in)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.puts: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_left = fail_first
        self.refuse = False
        self.attempts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.attempts += 1
                if self.path.startswith("/redirect/"):  # as a platform API handing off to S3
                    self.send_response(307)
                    self.send_header("Location", self.path.replace("/redirect/", "/m/", 1))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if outer.refuse:
                    status = 403
                elif outer.fail_left > 0:
                    outer.fail_left -= 1
                    status = 503
                else:
                    outer.puts.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_zone_events_become_device_events(
    cameras: Cameras, video: Path, model: Path, tmp_path: Path
) -> None:
    cameras.add(CameraConfig(id="cam-a", url=str(video)))
    cameras.add(CameraConfig(id="cam-b", url=str(video)))
    server = _PutServer(fail_first=1)
    uploader = MediaUploader(backoff_seconds=0.05, retry_interval_seconds=1.0)
    uploader.start()
    events = Events()
    media_dir = tmp_path / "media"
    manager = StreamPlanManager(cameras, events, media_dir=media_dir, uploader=uploader)
    try:
        target = {
            "upload_url": server.url + "/upload/{kind}/{name}?X-Amz-Signature=abc",
            "headers": {"x-amz-meta-site": "plant-1"},
        }
        report = manager.apply(
            [
                plan(
                    "zone-a",
                    "cam-a",
                    zone_pipeline("floor watch", snapshot=True),
                    run_id="run-7",
                    media=target,
                ),
                plan("zone-b", "cam-b", zone_pipeline("floor watch b", snapshot=False)),
            ]
        )
        assert sorted(report.started) == ["zone-a", "zone-b"]
        wait_for(
            lambda: {c for c, _ in events.snapshot()} == {"cam-a", "cam-b"},
            60,
            "zone events from both cameras",
        )
        # both plans run the same model on one onnxruntime session
        sessions = {
            id(worker.runner.workers[0].impls["detect"].detector._session)
            for worker in manager._workers.values()
            if worker.runner is not None
        }
        assert len(sessions) == 1

        wait_for(lambda: len(server.puts) >= 1, 20, "a snapshot upload")
        manager.stop_all()
        assert uploader.wait_idle(20)
    finally:
        manager.stop_all()
        uploader.stop()
        server.close()

    items = events.snapshot()
    ids = [i.id for _, i in items]
    assert len(ids) == len(set(ids))  # one id per event (the idempotency key)
    for camera_id, item in items:
        again = DeviceEventItem.model_validate(item.model_dump(mode="json"))
        assert again == item
        assert re.match(EVENT_TYPE_PATTERN, item.type) and item.type == "zone.enter"
        assert item.severity == "warning" and item.time is not None
        data = item.data
        assert data["zone"] == "floor" and data["class"] == "person"
        assert data["node_id"] == "zone" and data["source_id"] == "cam"
        assert isinstance(data["track_id"], int) and 0.3 <= data["confidence"] <= 1
        x1, y1, x2, y2 = data["bbox"]
        assert 0 <= x2 - x1 <= data["frame_width"] and y2 > y1
        assert (data["frame_width"], data["frame_height"]) == (768, 576)
        if camera_id == "cam-a":
            assert data["plan_id"] == "zone-a" and data["run_id"] == "run-7"
            assert data["pipeline"] == "floor watch"
            (snap,) = data["media"]
            assert snap["kind"] == "snapshots" and snap["name"] == f"{item.id}.jpg"
            assert snap["key"] == f"runs/run-7/media/snapshots/{item.id}.jpg"
            assert snap["url"] == f"/api/v1/runs/run-7/media/snapshots/{item.id}.jpg"
        else:
            assert data["plan_id"] == "zone-b" and "run_id" not in data and "media" not in data

    snaps_a = [i for c, i in items if c == "cam-a"]
    uploaded = {path: (headers, body) for path, headers, body in server.puts}
    for item in snaps_a:
        headers, body = uploaded[f"/upload/snapshots/{item.id}.jpg?X-Amz-Signature=abc"]
        assert headers["content-type"] == "image/jpeg"
        assert headers["x-amz-meta-site"] == "plant-1"
        assert body[:3] == b"\xff\xd8\xff"  # a JPEG
    # uploaded files are removed; none are left behind
    assert list((media_dir / "zone-a").rglob("*.jpg")) == []
    assert uploader.uploaded == len(snaps_a) and uploader.failures == 0


def test_media_kept_until_uploaded(tmp_path: Path) -> None:
    from connector.media import MediaTarget

    server = _PutServer()
    server.refuse = True  # an expired signature, a platform that says no
    media = tmp_path / "media"
    uploader = MediaUploader(media, attempts=2, backoff_seconds=0.01, retry_interval_seconds=0.3)
    clip = media / "plan-1" / "clips" / "ev1.mp4"
    target = MediaTarget(upload_url=server.url + "/m/{kind}/{name}", headers={"x-k": "v"})
    try:
        # a clip still being recorded: queued before the file exists (starts the uploader)
        uploader.enqueue(clip, "clips", target)
        time.sleep(0.3)
        assert server.attempts == 0 and uploader.pending() == 1
        clip.parent.mkdir(parents=True)
        clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
        wait_for(lambda: uploader.failures >= 2, 10, "refused upload rounds")
        assert clip.is_file() and uploader.pending() == 1 and server.puts == []
    finally:
        uploader.stop()
    (record,) = (media / ".uploads").glob("*.json")
    assert record.stat().st_mode & 0o077 == 0  # it holds the presigned URL

    # the connector restarts: the upload resumes, and now the platform takes it
    server.refuse = False
    again = MediaUploader(media, backoff_seconds=0.01)
    try:
        again.start()
        assert again.wait_idle(10)
        assert not clip.exists() and not record.exists() and again.uploaded == 1
        ((path, headers, body),) = server.puts
        assert path == "/m/clips/ev1.mp4" and headers["content-type"] == "video/mp4"
        assert headers["x-k"] == "v" and body.endswith(b"ftypmp42")

        # a 307 (an API handing the upload to a presigned URL) keeps the PUT and its body
        snap = media / "plan-1" / "snapshots" / "ev2.jpg"
        snap.parent.mkdir(parents=True)
        snap.write_bytes(b"\xff\xd8\xff\xe0jpeg")
        again.upload(
            snap, "snapshots", MediaTarget(upload_url=server.url + "/redirect/{kind}/{name}")
        )
        assert server.puts[-1][0] == "/m/snapshots/ev2.jpg"
        assert server.puts[-1][2] == b"\xff\xd8\xff\xe0jpeg"
    finally:
        again.stop()
        server.close()

    with pytest.raises(ValueError, match="placeholder"):
        MediaTarget(upload_url="https://bucket.example/fixed.jpg")
    with pytest.raises(ValueError, match="http"):
        MediaTarget(upload_url="ftp://bucket.example/{name}")
