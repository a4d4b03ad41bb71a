"""The pipeline builder end to end, in Chromium against ``aios up --demo``.

An operator builds a pipeline by hand: RTSP camera → object detection → zone → condition →
WhatsApp, dragged from the palette and connected by their handles; a connection between
incompatible ports (camera frames → WhatsApp events) is refused; Validate shows the
problems on the nodes; the camera URL and the zone (drawn on the drawing area) are set in
the nodes' configuration dialogs; Save, Play, the run's status and events arrive in the
monitor, Stop. The camera is real: GStreamer's RTSP server (Debian's ``python3-gi``) streams
the demo video ``vtest.avi`` on 127.0.0.1. Then the demo's own intrusion pipeline shows its
events arriving live in the monitor.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_support import UI_TIMEOUT_MS, Api, shot, sign_in
from node_form_steps import draw_zone, open_node
from up_support import free_port

RUN_TIMEOUT_MS = 120_000
"""How long the run may take to start and produce its first event (detection on 2 cores)."""

RTSP_SERVER = r"""
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
port, video = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( filesrc location={video} ! decodebin ! videoconvert ! videoscale "
    "! video/x-raw,width=384,height=288 ! x264enc tune=zerolatency speed-preset=ultrafast "
    "key-int-max=10 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/courtyard", factory)
if server.attach(None) == 0:
    sys.exit(2)
print("READY", flush=True)
GLib.MainLoop().run()
"""


@pytest.fixture(scope="module")
def rtsp_url() -> Iterator[str]:
    """``rtsp://127.0.0.1:<port>/courtyard``: the demo video served over RTSP."""
    from aios import assets

    video = Path(assets.path("vtest.avi"))
    port = free_port()
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-c", RTSP_SERVER, str(port), str(video)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "READY":
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the RTSP server did not start: {line!r} {err[-2000:]}")
        yield f"rtsp://127.0.0.1:{port}/courtyard"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def _expect_timeout() -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_TIMEOUT_MS)


def node(page: Any, node_id: str) -> Any:
    return page.locator(f'.react-flow__node[data-id="{node_id}"]')


def handle(page: Any, node_id: str, port: str, kind: str) -> Any:
    """The handle of port ``port`` of node ``node_id`` (``kind``: source or target)."""
    return node(page, node_id).locator(f'.react-flow__handle.{kind}[data-handleid="{port}"]')


def drag_handle(page: Any, source: Any, target: Any) -> None:
    """Press on one handle, move to the other in steps, release (a user drawing an edge)."""
    a = source.bounding_box()
    b = target.bounding_box()
    assert a and b
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=12)
    page.mouse.up()


def edge_count(page: Any) -> int:
    return int(page.locator(".react-flow__edge").count())


def test_build_validate_save_play_and_monitor(
    page: Any, api: Api, admin_password: str, rtsp_url: str
) -> None:
    from playwright.sync_api import expect

    sign_in(page, "admin", admin_password)
    page.get_by_role("navigation").get_by_role("link", name="Pipelines").click()
    expect(page.get_by_role("link", name=re.compile("Intrusion"))).to_be_visible()
    shot(page, "pipelines")

    # --- build: five nodes from the palette, dropped where they go
    page.get_by_role("button", name="New pipeline").click()
    page.wait_for_url("**/pipelines/new")
    canvas = page.get_by_test_id("pipeline-canvas")
    canvas.wait_for()
    page.get_by_label("Pipeline name").fill("Courtyard watch (built by hand)")
    layout = [
        ("aios/camera.rtsp@1", 30, 60),
        ("aios/object_detection@1", 280, 60),
        ("aios/zone@1", 530, 60),
        ("aios/conditional@1", 280, 330),
        ("aios/whatsapp@1", 530, 330),
    ]
    for node_type, x, y in layout:
        page.get_by_test_id(f"palette-{node_type}").drag_to(
            canvas, target_position={"x": x, "y": y}
        )
    for node_id in ("camera_rtsp", "object_detection", "zone", "conditional", "whatsapp"):
        expect(node(page, node_id)).to_be_visible()

    # --- connect by dragging from output handles to input handles
    links = [
        ("camera_rtsp", "frames", "object_detection", "frames"),
        ("object_detection", "detections", "zone", "detections"),
        ("zone", "events", "conditional", "events"),
        ("conditional", "true", "whatsapp", "events"),
    ]
    for count, (src, out, dst, inp) in enumerate(links, start=1):
        drag_handle(page, handle(page, src, out, "source"), handle(page, dst, inp, "target"))
        expect(page.locator(".react-flow__edge")).to_have_count(count)

    # --- an incompatible connection is refused, and the editor says why
    drag_handle(
        page,
        handle(page, "camera_rtsp", "frames", "source"),
        handle(page, "whatsapp", "events", "target"),
    )
    expect(
        page.get_by_text(
            re.compile(r"Frames \(frames\) cannot connect to WhatsApp · Events \(event\)")
        )
    ).to_be_visible()
    assert edge_count(page) == 4
    # From here on, toasts (the demo's alerts arrive every few seconds) would cover the
    # dialogs' Save buttons at the bottom right: keep them out of the way.
    page.add_style_tag(content="[data-rht-toaster] { display: none !important; }")

    # --- validate: the unconfigured camera, the zone without polygon and the condition
    # without conditions are marked
    page.get_by_role("button", name="Validate", exact=True).click()
    expect(node(page, "camera_rtsp").get_by_test_id("node-error-badge")).to_be_visible()
    expect(node(page, "zone").get_by_test_id("node-error-badge")).to_be_visible()
    expect(node(page, "zone").get_by_test_id("node-errors")).to_contain_text("polygon")
    expect(node(page, "conditional").get_by_test_id("node-error-badge")).to_be_visible()
    expect(page.get_by_test_id("issues")).to_contain_text("zone")
    problems = page.get_by_role("button", name=re.compile(r"^Problems"))
    problems.click()  # the panel closes; the nodes keep their error marks
    expect(page.get_by_test_id("issues")).to_be_hidden()

    # --- fix them in the configuration dialogs
    dialog = open_node(page, "camera_rtsp")
    dialog.get_by_label("RTSP URL").fill(rtsp_url)
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()

    open_node(page, "zone")
    draw_zone(page, [(0.03, 0.03), (0.97, 0.03), (0.97, 0.97), (0.03, 0.97)])

    dialog = open_node(page, "conditional")
    dialog.get_by_role("button", name="Add to conditions").click()
    dialog.get_by_label(re.compile(r"^Field")).fill("class_name")
    dialog.get_by_label(re.compile(r"^Operator")).select_option("exists")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()

    # the problems are checked again as the pipeline changes: none left
    problems.click()
    expect(page.get_by_test_id("validation-ok")).to_be_visible()
    expect(page.locator('[data-has-errors="true"]')).to_have_count(0)

    # --- save (revision 1 of a new pipeline)
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(re.compile(r"/pipelines/(?!new)[^/]+$"))
    pipeline_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    expect(page.get_by_text("Unsaved")).to_be_hidden()
    saved = api.get(f"/pipelines/{pipeline_id}")
    assert saved["latest_revision"] == 1
    assert saved["validation"]["valid"], saved["validation"]
    doc = saved["document"]
    assert {n["id"]: n["type"] for n in doc["nodes"]} == {
        "camera_rtsp": "aios/camera.rtsp@1",
        "object_detection": "aios/object_detection@1",
        "zone": "aios/zone@1",
        "conditional": "aios/conditional@1",
        "whatsapp": "aios/whatsapp@1",
    }
    assert {
        (e["source"], e["sourceHandle"], e["target"], e["targetHandle"]) for e in doc["edges"]
    } == set(links)
    cam = next(n for n in doc["nodes"] if n["id"] == "camera_rtsp")
    assert cam["config"]["url"] == rtsp_url
    zone = next(n for n in doc["nodes"] if n["id"] == "zone")
    assert len(zone["config"]["polygon"]) == 4
    shot(page, "builder")

    # --- play: the run starts and its events arrive in the monitor
    page.get_by_role("button", name="Play", exact=True).click()
    status = page.get_by_role("toolbar", name="Pipeline").get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", re.compile("starting|running"))
    monitor = page.get_by_test_id("monitor")
    expect(monitor).to_be_visible()
    expect(status).to_have_attribute("data-status", "running", timeout=RUN_TIMEOUT_MS)
    expect(monitor.get_by_test_id("run-event").first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(monitor.get_by_test_id("counters-table")).to_contain_text("frames")
    expect(node(page, "camera_rtsp").get_by_test_id("node-counters")).to_contain_text("frames")
    shot(page, "monitor")

    # --- stop
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(status).to_have_attribute("data-status", "stopped", timeout=60_000)
    runs = api.get(f"/pipelines/{pipeline_id}/runs")["items"]
    assert runs[0]["status"] == "stopped"
    assert api.get("/events", run_id=runs[0]["id"])["items"], "the run stored no event"


def test_demo_pipeline_events_arrive_live(page: Any, api: Api, admin_password: str) -> None:
    from playwright.sync_api import expect

    demo = next(p for p in api.get("/pipelines")["items"] if "ntrusion" in p["name"])
    sign_in(page, "admin", admin_password)
    page.goto(f"/pipelines/{demo['id']}")
    expect(node(page, "camera")).to_be_visible()
    monitor = page.get_by_test_id("monitor")
    expect(monitor).to_be_visible()
    status = page.get_by_role("toolbar", name="Pipeline").get_by_test_id("run-status")
    expect(status).to_have_attribute("data-status", "running", timeout=RUN_TIMEOUT_MS)
    events = monitor.get_by_test_id("run-event")
    expect(events.first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    # a new event arrives over the live feed, without reloading the page
    first = events.first.inner_text()
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    while events.first.inner_text() == first:
        assert time.monotonic() < deadline, "no new event arrived in the monitor"
        page.wait_for_timeout(1000)
    expect(monitor.get_by_test_id("counters-table")).to_be_visible()
    # the zone's snapshots, fetched with the session's token, shown as thumbnails
    expect(monitor.get_by_test_id("event-snapshot").first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    print(f"{events.count()} events shown", file=sys.stderr)


def test_viewer_sees_the_builder_read_only(page: Any, api: Api, viewer: tuple[str, str]) -> None:
    from playwright.sync_api import expect

    demo = next(p for p in api.get("/pipelines")["items"] if "ntrusion" in p["name"])
    sign_in(page, *viewer)
    page.goto("/pipelines")
    expect(page.get_by_role("link", name=demo["name"])).to_be_visible()
    expect(page.get_by_role("button", name="New pipeline")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)
    page.get_by_role("link", name=demo["name"]).click()
    expect(node(page, "restricted")).to_be_visible()
    expect(page.get_by_role("complementary", name="Node palette")).to_have_count(0)
    for name in ("Save", "Play", "Stop", "Delete selected"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_label("Pipeline name")).to_have_attribute("readonly", "")

    # a viewer's drag pans the view; the nodes keep their places relative to each other
    def offset() -> tuple[float, float]:
        one = node(page, "restricted").bounding_box()
        two = node(page, "detect").bounding_box()
        assert one and two
        return one["x"] - two["x"], one["y"] - two["y"]

    before = offset()
    box = node(page, "restricted").bounding_box()
    assert box
    page.mouse.move(box["x"] + 40, box["y"] + 10)
    page.mouse.down()
    page.mouse.move(box["x"] + 240, box["y"] + 160, steps=8)
    page.mouse.up()
    after = offset()
    assert abs(after[0] - before[0]) < 1 and abs(after[1] - before[1]) < 1
    expect(page.get_by_test_id("unsaved")).to_have_count(0)
    # the configuration opens read-only
    dialog = open_node(page, "restricted")
    expect(dialog.get_by_role("button", name="Save", exact=True)).to_have_count(0)
