"""connector.live: what a viewer is sent (annotation, sizes), the ICE address choice, the
refusals, and one real WebRTC session in this process on loopback: a stand-in camera, a
stream plan's detections drawn with their track ids, the viewer limit."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from aios.vision.types import BGRImage, Detections, DetectionsFrame, Frame
from connector.config import LiveConfig
from connector.live import (
    _HOST_ADDRESSES,
    HOST_ADDRESSES_ENV,
    LiveManager,
    _install_address_hook,
    annotate,
    best_detections,
    fit_size,
    host_addresses,
    strip_mdns_candidates,
)

aiortc = pytest.importorskip("aiortc")

GREY = 128


def frame(index: int, width: int = 640, height: int = 480) -> Frame:
    return Frame(
        image=np.full((height, width, 3), GREY, dtype=np.uint8),
        index=index,
        pts_seconds=index / 10,
        wall_time=datetime.now(UTC),
        source_id="cam",
        live=True,
    )


def people(tracked: bool) -> Detections:
    return Detections(
        xyxy=np.array([[100, 100, 300, 400]], dtype=np.float32),
        confidence=np.array([0.9], dtype=np.float32),
        class_id=np.array([0], dtype=np.int32),
        class_names=("person",),
        tracker_id=np.array([7], dtype=np.int64) if tracked else None,
    )


def test_strip_mdns_candidates_keeps_the_others() -> None:
    sdp = "\r\n".join(
        [
            "v=0",
            "a=candidate:1 1 udp 2113937151 3f2a9c1e-aaaa-bbbb.local 5000 typ host",
            "a=candidate:2 1 udp 2113937151 127.0.0.1 5001 typ host",
            "a=end-of-candidates",
        ]
    )
    out = strip_mdns_candidates(sdp)
    assert ".local" not in out
    assert "127.0.0.1 5001" in out and "a=end-of-candidates" in out and out.startswith("v=0")


@pytest.mark.parametrize(
    ("size", "bounds", "expected"),
    [
        ((768, 576), (1280, 720), (768, 576)),  # fits: unchanged, never scaled up
        ((1920, 1080), (1280, 720), (1280, 720)),
        ((2560, 1440), (640, 720), (640, 360)),
        ((1001, 751), (2000, 2000), (1000, 750)),  # even sizes for the encoder
    ],
)
def test_fit_size(
    size: tuple[int, int], bounds: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert fit_size(*size, *bounds) == expected


def test_best_detections_prefers_the_unfiltered_tracked_set() -> None:
    f = frame(0)
    values = {
        ("detect", "detections"): DetectionsFrame(f, people(tracked=False)),
        ("track", "detections"): DetectionsFrame(f, people(tracked=True)),
        ("zone", "inside"): DetectionsFrame(f, people(tracked=True), regions=("gate",)),
        ("source", "frames"): f,
    }
    chosen = best_detections(values)
    assert chosen is not None and chosen.tracker_id is not None
    assert best_detections({("source", "frames"): f}) is None


def box_pixels(image: BGRImage) -> int:
    """Pixels of the class-0 colour (BGR 255, 56, 56) or near it."""
    b, g, r = (image[:, :, i].astype(np.int32) for i in range(3))
    return int(((b > 170) & (g < 120) & (r < 120)).sum())


def test_annotate_draws_boxes_overlays_and_resizes() -> None:
    drawn: list[tuple[int, int]] = []

    class Zone:
        def draw(self, image: BGRImage) -> None:
            drawn.append(image.shape[:2])
            image[0:10, 0:10] = (0, 255, 255)

    class Broken:
        def draw(self, image: BGRImage) -> None:
            raise RuntimeError("a node bug")

    source = frame(0).image
    out = annotate(source, people(tracked=True), [Broken(), Zone()], size=(320, 240))
    assert out.shape == (240, 320, 3)
    assert box_pixels(out) > 100
    assert drawn == [(480, 640)]  # overlays draw at the camera's size, before resizing
    assert box_pixels(source) == 0 and int(source.max()) == GREY  # the camera's frame intact
    assert annotate(source, None).shape == (480, 640, 3)


def test_host_addresses_setting_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HOST_ADDRESSES_ENV, raising=False)
    assert host_addresses(LiveConfig()) is None
    monkeypatch.setenv(HOST_ADDRESSES_ENV, " 127.0.0.1, ::1 ,")
    assert host_addresses(LiveConfig()) == ["127.0.0.1", "::1"]
    assert host_addresses(LiveConfig(host_addresses=["192.0.2.7"])) == ["192.0.2.7"]
    monkeypatch.setenv(HOST_ADDRESSES_ENV, "localhost")
    with pytest.raises(ValueError, match="AIOS_WEBRTC_HOST_ADDRESSES: 'localhost'"):
        host_addresses(LiveConfig())
    with pytest.raises(ValidationError, match="not an IP address"):
        LiveConfig(host_addresses=["eth0"])


def test_address_hook_per_live_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A live loop's addresses replace aioice's; the default falls back to loopback on a
    machine without another address; other loops keep aioice's own choice."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: [])
    _install_address_hook()
    hooked = aioice.ice.get_host_addresses

    async def gather(addresses: list[str] | None, ipv6: bool) -> list[str]:
        loop = asyncio.get_running_loop()
        if addresses is not None:
            _HOST_ADDRESSES[loop] = addresses
        try:
            return list(hooked(use_ipv4=True, use_ipv6=ipv6))
        finally:
            _HOST_ADDRESSES.pop(loop, None)

    assert asyncio.run(gather([], True)) == ["127.0.0.1"]
    assert asyncio.run(gather(["192.0.2.9", "::1"], False)) == ["192.0.2.9"]
    assert asyncio.run(gather(["192.0.2.9", "::1"], True)) == ["192.0.2.9", "::1"]
    assert asyncio.run(gather(None, True)) == []  # not a live loop: aioice's own answer


class StandInCamera:
    """What the live view reads of a camera worker: ``snapshot`` and ``stopped``."""

    stopped = False

    def __init__(self) -> None:
        self.started = time.monotonic()

    def snapshot(self, timeout: float) -> Frame:
        return frame(int((time.monotonic() - self.started) * 20))


class StandInPlans:
    """A stream plan on the camera: reports tracked detections for every frame."""

    def __init__(self) -> None:
        self.listeners: list[Callable[[Frame, Mapping[Any, Any], Sequence[Any]], None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add_frame_listener(
        self, camera_id: str, listener: Callable[[Frame, Mapping[Any, Any], Sequence[Any]], None]
    ) -> Callable[[], None]:
        assert camera_id == "cam"
        self.listeners.append(listener)
        if not self.thread.is_alive():
            self.thread.start()
        return lambda: self.listeners.remove(listener)

    def _run(self) -> None:
        index = 0
        while not self.stop.wait(0.05):
            f = frame(index)
            index += 1
            for listener in list(self.listeners):
                listener(f, {("track", "detections"): DetectionsFrame(f, people(True))}, [])


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def manager() -> Iterator[tuple[LiveManager, StandInPlans]]:
    camera = StandInCamera()
    plans = StandInPlans()
    config = LiveConfig(host_addresses=["127.0.0.1"], max_viewers_per_camera=1, max_fps=10)
    live = LiveManager(config, lambda cid: camera if cid == "cam" else None, plans)  # type: ignore[arg-type,return-value]
    yield live, plans
    plans.stop.set()
    live.close_all()


def test_refusals_say_why(manager: tuple[LiveManager, StandInPlans]) -> None:
    live, _ = manager
    ok, result, error = live.execute("other", "live.offer", {"type": "offer", "sdp": "v=0 m=video"})
    assert (ok, result) == (False, {"code": "not_a_camera"})
    assert error is not None and "'other' is not an enabled camera" in error
    ok, result, _ = live.execute("cam", "live.offer", {"type": "answer", "sdp": "v=0"})
    assert (ok, result) == (False, {"code": "invalid_offer"})
    ok, result, _ = live.execute("cam", "live.offer", {"type": "offer", "sdp": "v=0\r\n"})
    assert (ok, result) == (False, {"code": "invalid_offer"})  # no video section
    ok, result, error = live.execute(
        "cam", "live.offer", {"type": "offer", "sdp": "nonsense m=video"}
    )
    assert (ok, result) == (False, {"code": "invalid_offer"}) and error
    assert live.viewers() == 0  # a refused offer leaves no session behind
    assert live.execute("cam", "live.stop", {"session_id": "nope"}) == (
        True,
        {"session_id": "nope", "stopped": False},
        None,
    )
    live.configure(LiveConfig(enabled=False))
    ok, result, _ = live.execute("cam", "live.offer", {"type": "offer", "sdp": "v=0 m=video"})
    assert (ok, result) == (False, {"code": "disabled"})


def test_a_viewer_gets_the_plan_boxes_and_the_limit_holds(
    manager: tuple[LiveManager, StandInPlans], loopback_ice: None
) -> None:
    live, _plans = manager

    async def scenario() -> None:
        pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        track: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pc.on("track", lambda t: track.done() or track.set_result(t))
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        ok, answer, error = await asyncio.to_thread(
            live.execute, "cam", "live.offer", {"type": "offer", "sdp": pc.localDescription.sdp}
        )
        assert ok, error
        assert answer is not None and answer["type"] == "answer"
        assert "127.0.0.1" in answer["sdp"]
        await pc.setRemoteDescription(aiortc.RTCSessionDescription(answer["sdp"], "answer"))

        # a second viewer of the camera is over its limit of one
        ok2, refused, error2 = await asyncio.to_thread(
            live.execute, "cam", "live.offer", {"type": "offer", "sdp": pc.localDescription.sdp}
        )
        assert (ok2, refused) == (False, {"code": "viewer_limit"})
        assert error2 is not None and "max_viewers_per_camera = 1" in error2

        received = await asyncio.wait_for(track, 20)
        images = []
        while len(images) < 5:
            image = (await asyncio.wait_for(received.recv(), 20)).to_ndarray(format="bgr24")
            if float(image.std()) > 8:  # past the placeholder: an annotated frame
                images.append(image)
        assert {i.shape for i in images} == {(480, 640, 3)}
        # the plan's box (x 100..300, y 100..400) is drawn, nothing elsewhere
        assert all(box_pixels(i[90:410, 90:310]) > 500 for i in images)
        assert all(box_pixels(i[:, 330:]) == 0 for i in images)
        status = live.status()
        assert [(s["camera_id"], s["boxes_from"]) for s in status] == [("cam", "plan")]
        assert status[0]["state"] == "connected"

        # live.stop ends it
        stopped = await asyncio.to_thread(
            live.execute, "cam", "live.stop", {"session_id": answer["session_id"]}
        )
        assert stopped == (True, {"session_id": answer["session_id"], "stopped": True}, None)
        assert live.viewers("cam") == 0
        await pc.close()

    asyncio.run(scenario())
