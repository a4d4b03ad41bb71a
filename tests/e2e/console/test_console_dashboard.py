"""The dashboard end to end, in Chromium against ``aios up --demo``: the login page, the key
figures and the map show the demo's devices, events of the playing intrusion pipeline
arrive live in the alert feed and the bell, one is acknowledged from the feed (and the API
keeps who did it), snapshots load behind the bearer token; signing out ends the session;
a viewer finds no acknowledge button."""

from __future__ import annotations

import re
from typing import Any

from console_support import Api, shot, sign_in
from up_process import UpProcess

LIVE_TIMEOUT_MS = 60_000
"""How long the first live event of the demo's pipeline may take to reach the page (the
camera's video is decoded and run through detection on 2 shared cores)."""


def _kpi(page: Any, name: str) -> int:
    text = page.get_by_test_id(f"kpi-{name}").inner_text()
    digits = re.sub(r"[^0-9]", "", text)
    assert digits, f"KPI {name} shows no number: {text!r}"
    return int(digits)


def test_login_page_and_sign_out(page: Any, demo: UpProcess) -> None:
    page.goto("/")
    page.wait_for_url("**/login")
    page.get_by_label("Username").wait_for()
    shot(page, "login")

    sign_in(page, "admin", demo.admin_password())
    page.get_by_role("heading", name="Dashboard").wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/login")
    # the session is gone: the console sends you back to the login page
    page.goto("/fleet")
    page.wait_for_url("**/login")
    page.get_by_role("button", name="Sign in").wait_for()


def test_dashboard_shows_the_demo_live_and_acknowledges(
    page: Any, api: Api, demo: UpProcess
) -> None:
    devices = api.get("/devices", limit=1000)["items"]
    located = [d for d in devices if d.get("location")]
    assert devices, "the demo registered no device"
    assert located, "the demo placed no device on the map"

    sign_in(page, "admin", demo.admin_password())
    page.get_by_role("heading", name="Dashboard").wait_for()

    # key figures: every demo device counted once, by its status
    page.wait_for_function(
        """(total) => ['online', 'warning', 'offline']
            .map((k) => document.querySelector(`[data-testid=kpi-${k}]`)?.textContent ?? '')
            .reduce((n, t) => n + (parseInt(t.replace(/[^0-9]/g, ''), 10) || 0), 0) === total""",
        arg=len(devices),
    )
    assert _kpi(page, "online") + _kpi(page, "warning") > 0
    assert _kpi(page, "pipelines") >= 1  # the demo's intrusion pipeline is playing

    # the map: one marker per located device, over the bundled outline (no tile server)
    page.wait_for_function(
        "(n) => document.querySelectorAll('path.device-marker').length === n", arg=len(located)
    )
    assert page.locator(".leaflet-tile").count() == 0

    # live: an event of the playing pipeline arrives in the feed while the page is open
    feed = page.get_by_test_id("live-feed")
    events_before = feed.locator("[data-testid=feed-item][data-kind=event]").count()
    page.wait_for_function(
        """(n) => document.querySelectorAll(
            '[data-testid=live-feed] [data-testid=feed-item][data-kind=event]').length > n""",
        arg=events_before,
        timeout=LIVE_TIMEOUT_MS,
    )
    # ... and the bell counts it
    page.get_by_test_id("alert-count").wait_for()
    page.get_by_test_id("event-row").first.wait_for()  # today's events list

    # acknowledge the newest event from the feed
    first = feed.locator("[data-testid=feed-item][data-kind=event]").first
    first.get_by_role("button", name=re.compile("^Acknowledge")).click()
    first_ack = feed.get_by_text("Acknowledged by admin").first
    first_ack.wait_for()
    acknowledged = api.get("/events", acknowledged="true", limit=50)["items"]
    assert any(e.get("acknowledged_by") == "admin" for e in acknowledged)

    # the bell's dropdown lists the recent alerts and events
    page.get_by_role("banner").get_by_role("button", name=re.compile("^Alerts")).click()
    dropdown = page.get_by_role("dialog", name="Recent alerts")
    dropdown.get_by_test_id("feed-item").first.wait_for()
    assert dropdown.get_by_role("link", name="Open dashboard").is_visible()
    page.keyboard.press("Escape")
    dropdown.wait_for(state="hidden")

    # snapshots are fetched with the token and shown (the page is tall enough to see the list)
    page.set_viewport_size({"width": 1440, "height": 2000})
    page.wait_for_function(
        """() => [...document.querySelectorAll('img[data-testid=event-thumbnail]')]
            .some((img) => img.complete && img.naturalWidth > 0)"""
    )
    shot(page, "dashboard")


def test_viewer_sees_no_acknowledge_button(page: Any, viewer: tuple[str, str]) -> None:
    sign_in(page, *viewer)
    page.get_by_role("heading", name="Dashboard").wait_for()
    page.get_by_test_id("live-feed").get_by_test_id("feed-item").first.wait_for(
        timeout=LIVE_TIMEOUT_MS
    )
    page.get_by_role("banner").get_by_role("button", name=re.compile("^Alerts")).click()
    page.get_by_role("dialog", name="Recent alerts").get_by_test_id("feed-item").first.wait_for()
    assert page.get_by_role("button", name=re.compile("^Acknowledge")).count() == 0
