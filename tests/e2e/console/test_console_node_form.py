"""The pipeline builder's node configuration form, end to end on the demo: double-click the
demo pipeline's zone node, see the form generated from its JSON Schema with the camera's
snapshot (the demo video's frame, read by the API), redraw the zone, find the new
coordinates in the editor, see an invalid zone refused, and find a viewer's form read-only.

The demo pipeline is left unsaved (other tests watch it run).
"""

from __future__ import annotations

from typing import Any

from console_support import UI_TIMEOUT_MS, shot, sign_in
from node_form_steps import draw_zone, drawn_points, open_node, wait_for_snapshot
from playwright.sync_api import expect

PIPELINE = "pl_demo_intrusion"
ZONE = [(0.1, 0.6), (0.5, 0.55), (0.6, 0.95), (0.15, 0.9)]


def _open_editor(page: Any) -> None:
    page.goto(f"/pipelines/{PIPELINE}")
    expect(page.get_by_test_id("node-restricted")).to_be_visible(timeout=UI_TIMEOUT_MS)


def test_zone_drawn_on_the_camera_snapshot(page: Any, admin_password: str) -> None:
    sign_in(page, "admin", admin_password)
    _open_editor(page)

    dialog = open_node(page, "restricted")
    # The form comes from the zone's schema: labels, help, the config's values.
    expect(dialog.get_by_label("Zone name")).to_have_value("restricted area", timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_label("Anchor point")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_text("Vertices [x, y] as fractions of the frame")).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    # The demo camera is a video file: the API reads its frame for the drawing.
    assert wait_for_snapshot(dialog) == "ready"
    image = dialog.get_by_role("img", name="Camera snapshot")
    expect(image).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert image.evaluate("img => img.naturalWidth") == 768
    assert [tuple(p) for p in drawn_points(dialog)] == [
        (0.42, 0.36),
        (0.8, 0.36),
        (0.95, 0.58),
        (0.5, 0.58),
    ]
    shot(page, "node-form-zone-before")

    draw_zone(page, ZONE, save=False)
    shot(page, "node-form-zone-drawn")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_test_id("unsaved")).to_be_visible(timeout=UI_TIMEOUT_MS)

    # Opened again, the zone holds the clicked points (within a pixel of the frame).
    dialog = open_node(page, "restricted")
    points = drawn_points(dialog)
    assert len(points) == len(ZONE)
    for (x, y), (ex, ey) in zip(points, ZONE, strict=True):
        assert abs(x - ex) < 0.01 and abs(y - ey) < 0.01, (points, ZONE)

    # Too few points: refused with the reason on the field, the dialog stays open.
    dialog.get_by_role("button", name="Clear").click()
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_text("needs at least 3 item(s)").first).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
    shot(page, "node-form-zone-invalid")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)

    # Secret fields hold names of secrets, never values.
    dialog = open_node(page, "whatsapp")
    secret = dialog.get_by_label("Access token secret")
    expect(secret).to_have_attribute("type", "text", timeout=UI_TIMEOUT_MS)
    assert secret.input_value() != ""
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)


def test_viewer_sees_the_form_read_only(page: Any, viewer: tuple[str, str]) -> None:
    sign_in(page, *viewer)
    _open_editor(page)
    dialog = open_node(page, "restricted")
    expect(dialog.get_by_label("Zone name")).to_be_disabled(timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_role("button", name="Save")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_role("button", name="Clear")).to_be_disabled(timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_text("Read only")).to_be_visible(timeout=UI_TIMEOUT_MS)
    shot(page, "node-form-viewer")
    dialog.get_by_role("button", name="Close", exact=True).last.click()
    expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)
