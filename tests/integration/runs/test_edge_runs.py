"""Runs on fleet cameras, on the service side: the plans pushed to the connector's desired
configuration (and valid for the connector), the connector's events taken in through the
fleet's ingestion as the run's own, reports that fail the run, Stop removing only the
run's plans, and cameras that cannot run at the edge. Real SQLite store, real launcher,
real event tier; the connector's messages are built by the connector's own code."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from run_site import Site, stored_events, wait_until

from aios.api.auth import load_jwt_secret, verify_upload_grant
from aios.domain import Device, DeviceKind, RunStatus
from aios.fleet.service import FleetService
from aios.messages import CONFIG_REPORTED, ConfigReport, DeviceEventItem, DeviceEventsMessage
from aios.runtime.events import StreamEvent
from connector.streams import StreamPlan, event_item, parse_plans

CONNECTOR = "gw-1"
CAMERA = "cam-1"
POS = {"x": 0, "y": 0}


def fleet_pipeline(camera: str = CAMERA, *, with_file: Path | None = None) -> dict[str, Any]:
    """fleet camera → detection → zone (snapshots) → dashboard (+ a file input if asked)."""
    nodes: list[dict[str, Any]] = [
        {"id": "cam", "type": "aios/camera.device@1", "config": {"device_id": camera}},
        {"id": "detect", "type": "aios/object_detection@1", "config": {"classes": ["person"]}},
        {
            "id": "zone",
            "type": "aios/zone@1",
            "config": {
                "name": "yard",
                "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                "evidence": {"snapshot": True, "clip": False},
            },
        },
        {"id": "dash", "type": "aios/dashboard@1", "config": {}},
    ]
    edges = [
        {"source": "cam", "sourceHandle": "frames", "target": "detect", "targetHandle": "frames"},
        {
            "source": "detect",
            "sourceHandle": "detections",
            "target": "zone",
            "targetHandle": "detections",
        },
        {"source": "zone", "sourceHandle": "events", "target": "dash", "targetHandle": "events"},
    ]
    if with_file is not None:
        nodes.append(
            {"id": "file", "type": "aios/file.input@1", "config": {"path": str(with_file)}}
        )
        nodes.append({"id": "motion", "type": "aios/motion_gate@1", "config": {}})
        edges.append(
            {
                "source": "file",
                "sourceHandle": "frames",
                "target": "motion",
                "targetHandle": "frames",
            }
        )
    for node in nodes:
        node["position"] = POS
    return {"schemaVersion": 1, "name": "Yard at the edge", "nodes": nodes, "edges": edges}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    opened = Site(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def fleet(site: Site) -> FleetService:
    """The fleet with connector gw-1 and its camera cam-1 (no broker: desired configs are
    stored, as by a process without a device link)."""
    service = FleetService(site.services)
    service.register(Device(id=CONNECTOR, name="Gateway", kind=DeviceKind.CONNECTOR), actor="t")
    service.register(
        Device(id=CAMERA, name="Yard", kind=DeviceKind.CAMERA, parent_id=CONNECTOR), actor="t"
    )
    return service


def desired_plans(site: Site) -> list[dict[str, Any]]:
    device = site.store.devices.get(CONNECTOR)
    assert device is not None
    return list(device.desired_config.get("stream_plans") or [])


def stream_event(n: int, *, snapshot: bool = True) -> StreamEvent:
    """A zone.enter event as the connector's stream tier makes it."""
    event_id = f"evt{n:04d}"
    return StreamEvent(
        event_id=event_id,
        time=datetime(2026, 1, 5, 8, 0, n, tzinfo=UTC),
        media_time_seconds=float(n),
        frame_index=n * 10,
        pipeline="Yard at the edge",
        node_id="zone",
        node_type="aios/zone@1",
        source_id="cam",
        event_type="zone.enter",
        track_id=n,
        class_name="person",
        confidence=0.8,
        zone="yard",
        bbox=(10.0, 20.0, 110.0, 220.0),
        frame_width=768,
        frame_height=576,
        snapshot=f"/var/lib/connector/media/plan/snapshots/{event_id}.jpg" if snapshot else None,
        outputs=["dash"],
    )


def publish_events(
    fleet: FleetService, plan: StreamPlan, events: list[StreamEvent], message_id: str | None = None
) -> None:
    """What the connector publishes for its camera, ingested by the fleet."""
    fleet.record_events(
        CONNECTOR,
        DeviceEventsMessage(
            message_id=message_id or uuid.uuid4().hex,
            time=datetime.now(UTC),
            device_id=CAMERA,
            events=[event_item(e, plan) for e in events],
        ),
    )


def report(fleet: FleetService, site: Site, plans: list[dict[str, Any]]) -> None:
    """The connector's config.reported for the current desired version."""
    device = site.store.devices.get(CONNECTOR)
    assert device is not None
    data = ConfigReport(version=device.desired_version, config={"stream_plans": plans})
    fleet.record_events(
        CONNECTOR,
        DeviceEventsMessage(
            message_id=uuid.uuid4().hex,
            time=datetime.now(UTC),
            events=[DeviceEventItem(type=CONFIG_REPORTED, data=data.model_dump(mode="json"))],
        ),
    )


@pytest.mark.timeout(120)
def test_play_pushes_a_plan_the_connector_accepts_and_takes_its_events(
    site: Site, fleet: FleetService
) -> None:
    """The plan is valid for the connector and grants uploads to this run only; the
    connector's events become the run's: into the dashboard, stored once with snapshot
    URLs, counted; the run is running from the first of them."""
    pid = site.add_pipeline(fleet_pipeline())
    # WHEN the pipeline is played
    run = site.runs.execute(pid, actor="alice")
    raw = wait_until(lambda: desired_plans(site), 30, "the plan pushed")
    # THEN the connector's desired configuration holds one plan the connector can run
    plans, errors = parse_plans({"stream_plans": raw})
    assert errors == []
    (plan,) = plans
    assert (plan.plan_id, plan.version, plan.camera_id, plan.run_id) == (
        f"{run.id}.cam",
        1,
        CAMERA,
        run.id,
    )
    assert plan.media is not None
    assert plan.media.upload_url == (
        f"http://127.0.0.1:{site.settings.port}/api/v1/runs/{run.id}/media/{{kind}}/{{name}}"
    )
    grant = plan.media.headers["Authorization"].removeprefix("Bearer ")
    allowed = verify_upload_grant(
        load_jwt_secret(site.settings), grant, issuer="aios", now=datetime.now(UTC)
    )
    assert (allowed.run_id, allowed.connector_id) == (run.id, CONNECTOR)
    assert site.run(run.id).status is RunStatus.STARTING
    # WHEN the connector publishes two events, then the same ones again (a redelivery)
    publish_events(fleet, plan, [stream_event(1), stream_event(2)])
    publish_events(fleet, plan, [stream_event(1), stream_event(2)])
    # THEN the run is running, and each event is stored once, as the dashboard recorded it
    site.wait_status(run.id, RunStatus.RUNNING, timeout=30)
    events = wait_until(
        lambda: len(stored_events(site, run.id)) >= 2 and stored_events(site, run.id), 30
    )
    wait_until(lambda: site.run(run.id).counters.get("events_stored") == 2, 30, "counters")
    assert len(stored_events(site, run.id)) == 2
    first = next(e for e in events if e.data["event_id"] == "evt0001")
    # the event is about the fleet camera; the pipeline's node is kept beside it
    assert (first.node_id, first.source_id, first.type, first.severity) == (
        "zone",
        CAMERA,
        "zone.enter",
        "warning",
    )
    assert first.data["source_node"] == "cam"
    assert first.data["dashboard"]["node_id"] == "dash"
    assert first.data["snapshot"] == f"runs/{run.id}/media/snapshots/evt0001.jpg"
    assert first.data["snapshot_url"] == f"/api/v1/runs/{run.id}/media/snapshots/evt0001.jpg"
    assert first.data["event_time"] == "2026-01-05T08:00:01+00:00"
    counters = site.run(run.id).counters
    assert counters["events"] == {"zone": 2}
    assert counters["executions"]["succeeded"] == 2
    # AND the fleet keeps them in the camera's history too
    assert {
        e.data["stream_event"]["event_id"]
        for e in site.store.device_events.list(CAMERA).items
        if "stream_event" in e.data
    } >= {
        "evt0001",
        "evt0002",
    }


@pytest.mark.timeout(120)
def test_stop_removes_only_the_runs_plans(site: Site, fleet: FleetService) -> None:
    """Two pipelines on the same connector: stopping one leaves the other's plan, and
    events for the stopped run are no longer taken."""
    first = site.runs.execute(site.add_pipeline(fleet_pipeline()), actor="a")
    wait_until(lambda: len(desired_plans(site)) == 1, 30)
    second = site.runs.execute(site.add_pipeline(fleet_pipeline()), actor="a")
    wait_until(lambda: len(desired_plans(site)) == 2, 30, "both plans")
    assert {p["run_id"] for p in desired_plans(site)} == {first.id, second.id}
    # WHEN the connector reports both running
    report(
        fleet, site, [{"plan_id": p["plan_id"], "state": "running"} for p in desired_plans(site)]
    )
    site.wait_status(first.id, RunStatus.RUNNING, timeout=30)
    site.wait_status(second.id, RunStatus.RUNNING, timeout=30)
    # AND the first is stopped
    site.runs.stop(first.pipeline_id, actor="a")
    site.wait_status(first.id, RunStatus.STOPPED, timeout=30)
    # THEN its plan is gone, the other's is there
    assert [p["run_id"] for p in desired_plans(site)] == [second.id]
    (plan,) = [p for p in parse_plans({"stream_plans": desired_plans(site)})[0]]
    stale = StreamPlan.model_validate(
        {**desired_plans(site)[0], "plan_id": f"{first.id}.cam", "run_id": first.id}
    )
    publish_events(fleet, stale, [stream_event(7)])
    publish_events(fleet, plan, [stream_event(8)])
    wait_until(lambda: stored_events(site, second.id), 30, "the second run's event")
    assert stored_events(site, first.id) == []


@pytest.mark.timeout(120)
def test_a_plan_the_connector_cannot_run_fails_the_run(site: Site, fleet: FleetService) -> None:
    """A plan reported failed fails the run with the connector's reason; its plan is removed."""
    run = site.runs.execute(site.add_pipeline(fleet_pipeline()), actor="a")
    (plan,) = wait_until(lambda: desired_plans(site), 30)
    report(
        fleet,
        site,
        [
            {
                "plan_id": plan["plan_id"],
                "state": "failed",
                "error": "the pipeline cannot start: no model",
            }
        ],
    )
    failed = site.wait_status(run.id, RunStatus.FAILED, timeout=30)
    assert failed.error is not None
    assert "gw-1" in failed.error and "'cam'" in failed.error and "no model" in failed.error
    assert desired_plans(site) == []


@pytest.mark.timeout(120)
def test_a_camera_down_is_shown_and_a_camera_the_connector_lacks_fails_the_run(
    site: Site, fleet: FleetService
) -> None:
    """A plan waiting for a camera that is down keeps the run starting with the reason in
    its counters; waiting for a camera the connector's file does not have fails the run."""
    run = site.runs.execute(site.add_pipeline(fleet_pipeline()), actor="a")
    (plan,) = wait_until(lambda: desired_plans(site), 30)
    down = "camera 'cam' is reconnecting: connection refused"
    report(
        fleet, site, [{"plan_id": plan["plan_id"], "state": "waiting_for_camera", "error": down}]
    )

    def waiting() -> str | None:
        stored = site.store.runs.get(run.id)
        assert stored is not None and stored.status is RunStatus.STARTING
        value = stored.counters.get("waiting")
        return value if isinstance(value, str) else None

    assert wait_until(waiting, 30) == f"connector 'gw-1': {down}"
    missing = "camera 'cam' is not configured (or not enabled) on this connector"
    report(
        fleet, site, [{"plan_id": plan["plan_id"], "state": "waiting_for_camera", "error": missing}]
    )
    failed = site.wait_status(run.id, RunStatus.FAILED, timeout=30)
    assert failed.error is not None
    assert "has no camera" in failed.error and "add the camera" in failed.error
    assert desired_plans(site) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("orphan", "camera 'cam-2' has no connector"),
        ("unknown", "camera 'cam-9' is not in the fleet"),
        ("sensor", "device 'sensor-1' is a sensor, not a camera"),
        (
            "mixed",
            "mixes fleet cameras ('cam') with video inputs that would run on this machine ('file')",
        ),
    ],
)
def test_cameras_that_cannot_run_at_the_edge_fail_the_run_clearly(
    site: Site, fleet: FleetService, tmp_path: Path, setup: str, expected: str
) -> None:
    """A fleet camera without a connector, not in the fleet, not a camera, or beside a
    local video input: the run fails saying so, and no plan is pushed."""
    camera = {"orphan": "cam-2", "unknown": "cam-9", "sensor": "sensor-1", "mixed": CAMERA}[setup]
    if setup == "orphan":
        fleet.register(Device(id="cam-2", name="Loose", kind=DeviceKind.CAMERA), actor="t")
    if setup == "sensor":
        fleet.register(
            Device(id="sensor-1", name="T", kind=DeviceKind.SENSOR, parent_id=CONNECTOR), actor="t"
        )
    video = tmp_path / "clip.avi"
    video.write_bytes(b"")
    document = fleet_pipeline(camera, with_file=video if setup == "mixed" else None)
    run = site.runs.execute(site.add_pipeline(document), actor="a")
    failed = site.wait_status(run.id, RunStatus.FAILED, timeout=30)
    assert failed.error is not None and expected in failed.error, failed.error
    assert desired_plans(site) == []


@pytest.mark.timeout(120)
def test_plans_of_runs_that_ended_elsewhere_are_pruned(site: Site, fleet: FleetService) -> None:
    """Plans left by a process that ended without removing them (its runs recovered as
    failed) are dropped at start, and by the next push; plans without a run are kept."""
    run = site.runs.execute(site.add_pipeline(fleet_pipeline()), actor="a")
    (plan,) = wait_until(lambda: desired_plans(site), 30)
    manual = {**plan, "plan_id": "manual", "run_id": None}
    orphan = {**plan, "plan_id": "gone.cam", "run_id": "run_gone"}
    device = site.store.devices.get(CONNECTOR)
    assert device is not None
    fleet.set_desired_config(
        CONNECTOR,
        {"stream_plans": [plan, manual, orphan]},
        expected_version=device.desired_version,
        actor="t",
    )
    # WHEN the stale plans are pruned while the run is active
    removed = site.launcher.prune_edge_plans()
    # THEN only the plan of the unknown run went
    assert removed == {CONNECTOR: ["gone.cam"]}
    assert [p["plan_id"] for p in desired_plans(site)] == [plan["plan_id"], "manual"]
    assert site.launcher.prune_edge_plans() == {}
    site.runs.stop(run.pipeline_id, actor="a")
    site.wait_status(run.id, RunStatus.STOPPED, timeout=30)
    assert [p["plan_id"] for p in desired_plans(site)] == ["manual"]
