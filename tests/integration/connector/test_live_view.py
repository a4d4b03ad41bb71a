"""Live view over WebRTC, end to end on this machine: a real ``aios up --connector`` with
``vtest.avi`` played as a camera, an aiortc peer standing in for the browser. The offer goes
through the API, the connector answers over MQTT, the video flows from the connector to the
peer on loopback (``live.host_addresses: [127.0.0.1]``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from up_process import UpProcess
from up_support import free_port, wait_until

aiortc = pytest.importorskip("aiortc")

CONNECTOR = "live-gw"
CAMERA = "courtyard"
SENSOR = "sim-climate"
MAX_VIEWERS = 2


def blue_box_pixels(image: np.ndarray[Any, Any]) -> int:
    """Pixels of the box colour of class ``person`` (BGR 255, 56, 56) or close to it:
    strongly blue. ``vtest.avi`` itself has none in any of its 795 frames."""
    b, g, r = (image[:, :, i].astype(np.int32) for i in range(3))
    mask = (b > 170) & (g < 120) & (r < 120) & (b - np.maximum(g, r) > 90)
    return int(mask.sum())


@pytest.fixture
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's own peer offers only 127.0.0.1 (aioice leaves loopback out by default)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
def up(video: Path, model: Path, tmp_path: Path) -> Iterator[UpProcess]:
    config = {
        "connector": {"id": CONNECTOR, "name": "Live view test connector"},
        "platform": {"mqtt_url": f"mqtt://127.0.0.1:{free_port()}"},  # replaced by aios up
        "data_dir": str(tmp_path / "connector"),
        "heartbeat_seconds": 1,
        "cameras": [{"id": CAMERA, "name": "Courtyard", "url": str(video)}],
        "sensors": [
            {
                "type": "simulated",
                "id": SENSOR,
                "poll_interval_seconds": 1,
                "metrics": [{"name": "temperature", "unit": "degC", "mid": 21}],
            }
        ],
        "live": {
            "host_addresses": ["127.0.0.1"],
            "max_viewers_per_camera": MAX_VIEWERS,
            "max_fps": 10,
            "detect_fps": 5,
        },
    }
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    process = UpProcess(tmp_path / "data", tmp_path, args=("--connector", str(path))).start()
    try:
        yield process
    finally:
        process.cleanup()


def _auth(up: UpProcess) -> dict[str, str]:
    login = httpx.post(
        f"{up.url}/api/v1/auth/login",
        json={"username": "admin", "password": up.admin_password()},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _status(up: UpProcess, auth: dict[str, str]) -> dict[str, Any]:
    """The connector's ``status`` command result (its live sessions among it)."""
    sent = httpx.post(
        f"{up.url}/api/v1/devices/{CONNECTOR}/command",
        json={"name": "status", "timeout_seconds": 10},
        headers=auth,
        timeout=10,
    )
    assert sent.status_code == 202, sent.text
    rid = sent.json()["request_id"]

    def answered() -> dict[str, Any] | None:
        r = httpx.get(
            f"{up.url}/api/v1/devices/{CONNECTOR}/commands/{rid}", headers=auth, timeout=10
        )
        body: dict[str, Any] = r.json()
        return body if body["status"] != "pending" else None

    done = wait_until(answered, 15, "status answered")
    assert done["status"] == "succeeded", done
    result: dict[str, Any] = done["response"]
    return result


class Viewer:
    """An aiortc peer doing what the console's LiveView does: a receive-only video
    transceiver, the offer posted once ICE gathering is complete."""

    def __init__(self, client: httpx.AsyncClient, device_id: str = CAMERA) -> None:
        self.client = client
        self.device_id = device_id
        self.pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        self.track: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.session_id: str | None = None

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video" and not self.track.done():
                self.track.set_result(track)

    async def offer(self) -> httpx.Response:
        self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())  # gathers candidates
        return await self.client.post(
            f"/api/v1/devices/{self.device_id}/live",
            json={"type": "offer", "sdp": self.pc.localDescription.sdp},
        )

    async def start(self) -> dict[str, Any]:
        response = await self.offer()
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        await self.pc.setRemoteDescription(
            aiortc.RTCSessionDescription(sdp=answer["sdp"], type=answer["type"])
        )
        self.session_id = answer["session_id"]
        return answer

    async def frames(self, count: int, timeout: float = 30.0) -> list[np.ndarray[Any, Any]]:
        track = await asyncio.wait_for(self.track, timeout)
        out: list[np.ndarray[Any, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"only {len(out)} of {count} frames arrived in {timeout} s"
            frame = await asyncio.wait_for(track.recv(), left)
            image = frame.to_ndarray(format="bgr24")
            if not out and float(image.std()) < 8:
                continue  # the placeholder sent until the first annotated frame: flat grey
            out.append(image)
        return out

    async def close(self) -> None:
        await self.pc.close()


def test_live_view_streams_the_camera_with_boxes(up: UpProcess, loopback_ice: None) -> None:
    auth = _auth(up)

    def status_of(device_id: str) -> str:
        r = httpx.get(f"{up.url}/api/v1/devices/{device_id}", headers=auth, timeout=10)
        return str(r.json().get("status")) if r.status_code == 200 else f"http {r.status_code}"

    for device_id in (CONNECTOR, CAMERA):  # warning (a busy CPU) is connected too
        wait_until(lambda d=device_id: status_of(d) in ("online", "warning"), 60, f"{device_id} up")

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=up.url, headers=auth, timeout=30) as client:
            # a device that is not a camera has no live view
            for device_id in (SENSOR, CONNECTOR):
                refused = await Viewer(client, device_id).offer()
                assert refused.status_code == 409, refused.text
                assert refused.json()["error"]["code"] == "not_a_camera"

            # WHEN a viewer posts an offer for the camera
            first = Viewer(client)
            started = time.monotonic()
            answer = await first.start()
            answered_in = time.monotonic() - started
            assert answer["type"] == "answer"
            assert (answer["device_id"], answer["connector_id"]) == (CAMERA, CONNECTOR)
            assert "127.0.0.1" in answer["sdp"]
            # THEN real video arrives: vtest.avi's size, moving, with person boxes drawn
            frames = await first.frames(20)
            assert {f.shape for f in frames} == {(576, 768, 3)}
            assert float(np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean()) > 1.0
            assert float(frames[-1].mean()) > 40  # a picture, not the dark placeholder
            # boxes come once the detector has loaded (in the background: the video
            # does not wait for it); vtest.avi always has people in view
            boxed = [blue_box_pixels(f) for f in frames]
            while max(boxed[-5:]) <= 300 and len(boxed) < 300:
                boxed.extend(blue_box_pixels(f) for f in await first.frames(5))
            assert max(boxed[-5:]) > 300, f"no person box drawn: {boxed}"

            # a second viewer of the same camera is fine; a third is over the limit
            second = Viewer(client)
            started = time.monotonic()
            await second.start()
            second_in = time.monotonic() - started
            assert len(await second.frames(3)) == 3
            third = Viewer(client)
            refused = await third.offer()
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["code"] == "viewer_limit"
            assert "max_viewers_per_camera" in refused.json()["error"]["message"]
            await third.close()

            # WHEN one session is ended through the API, a new viewer fits again
            assert second.session_id is not None
            ended = await client.delete(f"/api/v1/devices/{CAMERA}/live/{second.session_id}")
            assert ended.status_code == 204, ended.text
            await second.close()
            third = Viewer(client)
            await third.start()
            assert len(await third.frames(3)) == 3

            # WHEN the browser side closes its peer connection, the connector ends it too
            await first.close()
            await third.close()
            status = await asyncio.to_thread(
                wait_until,
                lambda: not _status(up, auth)["live_sessions"] or None,
                30,
                "live sessions closed after the viewers left",
            )
            assert status is True
            print(
                f"answered in {answered_in:.2f} s, then {second_in:.2f} s; "
                f"box pixels in {len(boxed)} frames: {boxed[:3]}…{boxed[-5:]}"
            )

    asyncio.run(scenario())
