"""A camera's live view in the console, end to end: Debian's Chromium opens the demo
camera's device page, starts the live view, and the connector's WebRTC video plays in the
page (``videoWidth > 0``, the picture changing); Stop ends the session on the connector.
A viewer account may watch too."""

from __future__ import annotations

import time
from typing import Any

from console_support import Api, shot, sign_in
from playwright.sync_api import expect

CAMERA = "courtyard"
FIRST_LOAD_MS = 90_000
LIVE_MS = 45_000


def live_sessions(api: Api) -> list[dict[str, Any]]:
    """The connector's open live sessions (its ``status`` command)."""
    camera = api.get(f"/devices/{CAMERA}")
    sent = api.post(f"/devices/{camera['parent_id']}/command", {"name": "status"})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = api.get(f"/devices/{camera['parent_id']}/commands/{sent['request_id']}")
        if done["status"] != "pending":
            assert done["status"] == "succeeded", done
            sessions: list[dict[str, Any]] = done["response"]["live_sessions"]
            return sessions
        time.sleep(0.3)
    raise AssertionError("the connector did not answer the status command")


def watch(page: Any) -> None:
    """Open the camera's page, start the live view, wait for the video to play."""
    page.goto(f"/fleet/{CAMERA}")
    page.get_by_role("tab", name="Live view").click(timeout=FIRST_LOAD_MS)
    page.get_by_role("button", name="Start live view").click()
    expect(page.get_by_test_id("live-state")).to_have_attribute(
        "data-state", "live", timeout=LIVE_MS
    )
    video = page.get_by_test_id("live-video")
    page.wait_for_function(
        "v => v.videoWidth > 0 && v.currentTime > 0", arg=video.element_handle(), timeout=LIVE_MS
    )


def test_live_view_plays_in_chromium(page: Any, api: Api, admin_password: str) -> None:
    sign_in(page, "admin", admin_password)
    watch(page)
    video = page.get_by_test_id("live-video").element_handle()
    size = page.evaluate("v => [v.videoWidth, v.videoHeight]", video)
    assert size[0] > 0 and size[1] > 0
    expect(page.get_by_test_id("live-state")).to_contain_text(f"{size[0]}×{size[1]}")
    # the picture moves: frames keep arriving
    first = page.evaluate("v => v.getVideoPlaybackQuality().totalVideoFrames", video)
    page.wait_for_function(
        f"v => v.getVideoPlaybackQuality().totalVideoFrames >= {first + 10}",
        arg=video,
        timeout=LIVE_MS,
    )
    assert [s["camera_id"] for s in live_sessions(api)] == [CAMERA]
    shot(page, "live-view")

    # Stop ends the session on the connector
    page.get_by_role("button", name="Stop live view").click()
    expect(page.get_by_test_id("live-state")).to_have_attribute("data-state", "idle")
    deadline = time.monotonic() + 20
    while live_sessions(api) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert live_sessions(api) == []


def test_a_viewer_can_watch(page: Any, viewer: tuple[str, str]) -> None:
    sign_in(page, *viewer)
    watch(page)
    page.get_by_role("button", name="Stop live view").click()
