"""Fleet Management in the console, end to end against ``aios up --demo``: the demo devices
listed with their status, a debounced search, a status filter kept in the URL, the PLC's
details (configuration, telemetry chart) and a ``write_coil`` command whose outcome comes
back from the simulated PLC; a viewer finds no edit or command control."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from console_support import UI_TIMEOUT_MS, Api, shot, sign_in
from playwright.sync_api import expect

DEMO_DEVICES = ("local-gw", "courtyard", "sim-plc", "sim-climate", "sim-vibration")
SEARCH = "simul"
"""Part of the names of the demo's simulated devices ("Simulated PLC", …), of none of their ids."""
FIRST_LOAD_MS = 90_000


@pytest.fixture(autouse=True)
def ui_timeout() -> Iterator[None]:
    """Assertions wait as long as page elements may take to appear (not Playwright's 5 s)."""
    expect.set_options(timeout=UI_TIMEOUT_MS)
    yield
    expect.set_options(timeout=5_000)


def row(page: Any, device_id: str) -> Any:
    return page.locator(f'[data-testid="device-row"][data-device-id="{device_id}"]')


def matching(devices: list[dict[str, Any]], text: str) -> set[str]:
    text = text.lower()
    return {d["id"] for d in devices if text in d["id"].lower() or text in d["name"].lower()}


def test_fleet_search_filter_and_plc_command(page: Any, api: Api, admin_password: str) -> None:
    devices = api.get("/devices", limit=200)["items"]
    assert {d["id"] for d in devices} >= set(DEMO_DEVICES)
    expected = matching(devices, SEARCH)
    assert expected and len(expected) < len(devices), "the search term must narrow the demo list"

    sign_in(page, "admin", admin_password)
    page.goto("/fleet")
    # the first page after start-up waits for the demo to settle (model loading, first runs)
    expect(row(page, "sim-plc")).to_be_visible(timeout=FIRST_LOAD_MS)
    for device_id in DEMO_DEVICES:
        expect(row(page, device_id)).to_be_visible()
        expect(row(page, device_id).locator("[data-status]").first).to_have_attribute(
            "data-status", re.compile("^(online|warning|offline)$")
        )
    total = api.get("/analytics/devices")["total"]
    expect(page.get_by_test_id("summary-total-value")).to_have_text(str(total))
    shot(page, "fleet")

    # Registering: the API's answers show on the fields they are about.
    page.get_by_role("button", name="Register device").click()
    dialog = page.get_by_role("dialog", name="Register device")
    dialog.get_by_label("Device id").fill("sim-plc")
    dialog.get_by_label("Name").fill("Second PLC")
    dialog.get_by_role("button", name="Register").click()
    expect(dialog.get_by_text("a device with id 'sim-plc' exists")).to_be_visible()
    dialog.get_by_label("Device id").fill("bad id/with slash")
    dialog.get_by_role("button", name="Register").click()
    expect(dialog.get_by_text("use 1–128 letters, digits and _ . : -")).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert "bad id/with slash" not in {d["id"] for d in api.get("/devices", limit=200)["items"]}

    # Search by part of a name: one request after the typing pauses, not one per key.
    searches: list[str] = []

    def on_request(request: Any) -> None:
        url = urlsplit(request.url)
        if url.path == "/api/v1/devices":
            query = parse_qs(url.query)
            if "search" in query:
                searches.append(query["search"][0])

    page.on("request", on_request)
    page.get_by_label("Search devices").press_sequentially(SEARCH, delay=30)
    expect(page.get_by_test_id("device-row")).to_have_count(len(expected))
    for device_id in expected:
        expect(row(page, device_id)).to_be_visible()
    assert searches and searches[-1] == SEARCH
    assert len(searches) < len(SEARCH), f"the search was not debounced: {searches}"
    assert all(SEARCH.startswith(s) for s in searches)
    assert parse_qs(urlsplit(page.url).query)["q"] == [SEARCH]

    # Filter by status: only online devices, and the filter survives a reload.
    page.get_by_label("Status", exact=True).select_option("online")
    expect(page).to_have_url(re.compile(r"status=online"))
    expect(row(page, "sim-plc")).to_be_visible()
    expect(page.locator('[data-testid="device-row"]:not([data-status="online"])')).to_have_count(0)
    page.reload()
    expect(page.get_by_label("Search devices")).to_have_value(SEARCH)
    expect(page.get_by_label("Status", exact=True)).to_have_value("online")
    expect(row(page, "sim-plc")).to_be_visible()

    # The PLC's details: header, telemetry chart of a register, configuration.
    row(page, "sim-plc").get_by_role("link", name="Simulated PLC").click()
    page.wait_for_url("**/fleet/sim-plc")
    expect(page.get_by_role("heading", name="Simulated PLC")).to_be_visible()
    expect(page.get_by_test_id("device-status")).to_have_attribute(
        "data-status", re.compile("^(online|warning|offline)$")
    )
    chart = page.locator('[data-testid="metric-chart"][data-metric="tank_level"]')
    expect(chart).to_be_visible()
    expect(chart.locator(".recharts-line path").first).to_be_visible()

    plc = api.get("/devices/sim-plc")
    page.get_by_role("tab", name="Configuration").click()
    expect(page.get_by_test_id("desired-version")).to_have_text(f"v{plc['desired_version']}")
    expect(page.get_by_test_id("reported-version")).to_have_text(f"v{plc['reported_version']}")
    expect(page.get_by_test_id("config-sync")).to_be_visible()

    # A write_coil command by register name; its outcome is the value read back.
    page.get_by_role("tab", name="Commands").click()
    form = page.get_by_role("form", name="PLC command")
    form.get_by_label("Command").select_option("write_coil")
    form.get_by_label("Register").fill("beacon")
    form.get_by_label("Value").select_option("on")
    form.get_by_role("button", name="Send command").click()
    outcome = page.get_by_test_id("command-outcome")
    expect(outcome).to_have_attribute("data-status", "succeeded")
    expect(outcome).to_contain_text("beacon = 1")
    latest = api.get("/devices/sim-plc/commands", limit=1)["items"][0]
    assert latest["name"] == "write_coil"
    assert latest["params"] == {"register": "beacon", "value": True}
    assert latest["status"] == "succeeded" and latest["response"]["value"] == 1
    recent = page.get_by_test_id("command-row").filter(has_text='"register":"beacon"').first
    expect(recent).to_contain_text("write_coil")
    expect(recent).to_contain_text("succeeded")
    shot(page, "device-details")


def test_viewer_sees_no_edit_or_command_controls(page: Any, viewer: tuple[str, str]) -> None:
    sign_in(page, *viewer)
    page.goto("/fleet")
    expect(row(page, "sim-plc")).to_be_visible(timeout=FIRST_LOAD_MS)
    expect(page.get_by_test_id("summary-total-value")).to_have_text(re.compile(r"^\d+$"))
    expect(page.get_by_role("button", name="Register device")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)

    page.goto("/fleet/sim-plc?tab=commands")
    expect(page.get_by_role("heading", name="Recent commands")).to_be_visible()
    expect(page.get_by_role("button", name="Send command")).to_have_count(0)
    expect(page.get_by_role("form", name="PLC command")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete device")).to_have_count(0)

    page.get_by_role("tab", name="Configuration").click()
    expect(page.get_by_test_id("config-sync")).to_be_visible()
    expect(page.get_by_role("button", name="Edit desired configuration")).to_have_count(0)

    page.get_by_role("tab", name="Alert rules").click()
    expect(page.get_by_role("heading", name="Alert rules")).to_be_visible()
    expect(page.get_by_role("form", name="Add an alert rule")).to_have_count(0)

    page.get_by_role("tab", name="Events").click()
    expect(page.get_by_test_id("device-event").filter(has_text="device.registered")).to_be_visible()

    page.get_by_role("tab", name="Location").click()
    expect(page.get_by_test_id("device-location")).to_be_visible()
    expect(page.get_by_role("region", name="Device map")).to_be_visible()
    expect(page.get_by_role("button", name="Save location")).to_have_count(0)
