"""Steps on the pipeline builder's node configuration dialog, shared by the console's
end-to-end tests: open a node's form, draw a zone or a line on the camera snapshot, read the
coordinates back, save.

The dialog (``web/src/components/nodeform``) is a ``role=dialog`` named
``"<node type title> · <node id>"``; its drawing area is ``role=application`` named
``"Drawing area: <field title>"`` inside ``data-testid=zone-drawing``, whose
``data-snapshot`` is ``loading``, ``ready`` (a camera image), ``error`` or ``none`` (both:
a blank 16:9 frame). Points are normalized ``(x, y)``: fractions 0–1 of the frame width and
height, 0 = left/top, as the zone and line-crossing configs hold them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from console_support import UI_TIMEOUT_MS
from playwright.sync_api import expect

SNAPSHOT_TIMEOUT_MS = 30_000
"""How long a camera snapshot may take (the API asks the connector, or reads the file)."""


def node_dialog(page: Any) -> Any:
    """The open node configuration dialog (a locator)."""
    return page.get_by_test_id("node-config-form").locator("xpath=ancestor::*[@role='dialog']")


def open_node(page: Any, node_id: str) -> Any:
    """Double-click a node of the editor's canvas and return its configuration dialog."""
    page.get_by_test_id(f"node-{node_id}").dblclick()
    dialog = node_dialog(page)
    expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_test_id("node-config-form")).to_have_attribute(
        "data-node-id", node_id, timeout=UI_TIMEOUT_MS
    )
    return dialog


def wait_for_snapshot(dialog: Any, timeout_ms: int = SNAPSHOT_TIMEOUT_MS) -> str:
    """Wait until the drawing's snapshot is no longer loading; return its state
    (``ready``, ``error`` or ``none``)."""
    drawing = dialog.get_by_test_id("zone-drawing")
    expect(drawing).not_to_have_attribute("data-snapshot", "loading", timeout=timeout_ms)
    return str(drawing.get_attribute("data-snapshot"))


def _click_points(page: Any, dialog: Any, points: Sequence[tuple[float, float]]) -> Any:
    area = dialog.get_by_role("application", name=re.compile(r"^Drawing area"))
    area.scroll_into_view_if_needed()
    clear = dialog.get_by_role("button", name="Clear")
    if clear.is_enabled():
        clear.click()
    box = area.bounding_box()
    assert box is not None, "the drawing area is not visible"
    for x, y in points:
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ValueError(f"point {(x, y)} is not normalized (0–1)")
        # Stay one pixel inside the frame so the edges are clickable.
        px = box["x"] + min(max(x * box["width"], 1), box["width"] - 1)
        py = box["y"] + min(max(y * box["height"], 1), box["height"] - 1)
        page.mouse.click(px, py)
    return area


def draw_zone(
    page: Any,
    points: Sequence[tuple[float, float]],
    *,
    save: bool = True,
    wait_snapshot: bool = True,
) -> Any:
    """In the open dialog of a zone node, replace the polygon by ``points`` (at least 3,
    normalized), close it with Enter and, with ``save``, click Save and wait for the dialog
    to close. Returns the dialog locator.

    Raises ValueError for fewer than 3 points or points outside 0–1.
    """
    if len(points) < 3:
        raise ValueError("a zone needs at least 3 points")
    dialog = node_dialog(page)
    expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
    if wait_snapshot:
        wait_for_snapshot(dialog)
    area = _click_points(page, dialog, points)
    area.press("Enter")
    expect(dialog.get_by_text("Drag a point to move it")).to_be_visible(timeout=UI_TIMEOUT_MS)
    if save:
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)
    return dialog


def draw_line(
    page: Any,
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    save: bool = True,
    wait_snapshot: bool = True,
) -> Any:
    """In the open dialog of a line-crossing node, draw the line ``start → end``
    (normalized; crossing from its left to its right, walking from start to end, is 'in')
    and, with ``save``, click Save and wait for the dialog to close."""
    dialog = node_dialog(page)
    expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
    if wait_snapshot:
        wait_for_snapshot(dialog)
    _click_points(page, dialog, [start, end])
    expect(dialog.get_by_test_id("line-direction")).to_be_visible(timeout=UI_TIMEOUT_MS)
    if save:
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden(timeout=UI_TIMEOUT_MS)
    return dialog


def drawn_points(dialog: Any) -> list[tuple[float, float]]:
    """The points of the drawing as its coordinate inputs show them (normalized)."""
    xs = dialog.get_by_label(re.compile(r"^(Point \d+|Start|End) x$"))
    ys = dialog.get_by_label(re.compile(r"^(Point \d+|Start|End) y$"))
    count = xs.count()
    return [(float(xs.nth(i).input_value()), float(ys.nth(i).input_value())) for i in range(count)]
