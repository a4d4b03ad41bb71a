"""Edge placement end to end: a real ``aios up --connector FILE`` process (embedded broker,
SQLite, its HTTP API) whose connector plays vtest.avi as the camera ``courtyard``; a
pipeline on that fleet camera is played and stopped through the API."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from up_process import UpProcess
from up_support import wait_until
from zone_pipelines import person_zone_pipeline

WAIT = 120.0
"""The connector loads the model on the plan's first start (≈10 s on 2 idle cores)."""

CONNECTOR = "site-gw"
CAMERA = "courtyard"


def fleet_camera_pipeline(camera: str = CAMERA) -> dict[str, Any]:
    """fleet camera → person detection → zone (whole frame, snapshots) → dashboard."""
    return person_zone_pipeline(
        "Courtyard at the edge",
        {"type": "aios/camera.device@1", "config": {"device_id": camera}},
        zone="courtyard",
        polygon=[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
        snapshot=True,
    )


@pytest.fixture
def up(tmp_path: Path, video: Path, model: Path) -> Iterator[UpProcess]:
    connector_file = tmp_path / "connector.yaml"
    connector_file.write_text(
        f"connector:\n  id: {CONNECTOR}\n  name: Site gateway\n"
        f"data_dir: {tmp_path / 'connector-data'}\n"
        "heartbeat_seconds: 2\n"
        f"cameras:\n  - id: {CAMERA}\n    name: Courtyard\n    url: {video}\n"
    )
    process = UpProcess(tmp_path / "data", tmp_path, args=("--connector", str(connector_file)))
    process.start()
    try:
        yield process
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.signal(signal.SIGINT)
        process.cleanup()


class Api:
    def __init__(self, up: UpProcess) -> None:
        self.client = httpx.Client(base_url=up.url, timeout=30.0)
        res = self.client.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": up.admin_password()},
        )
        assert res.status_code == 200, res.text
        self.client.headers["Authorization"] = f"Bearer {res.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        res = self.client.get(path, params=params or None)
        assert res.status_code == 200, (path, res.status_code, res.text)
        return res.json()

    def post(self, path: str, body: Any = None, status: int = 200) -> Any:
        res = self.client.post(path, json=body if body is not None else {})
        assert res.status_code == status, (path, res.status_code, res.text)
        return res.json() if res.content else None


def plans_of(device: dict[str, Any], key: str) -> list[dict[str, Any]]:
    plans = (device.get(key) or {}).get("stream_plans")
    return list(plans) if isinstance(plans, list) else []


@pytest.mark.timeout(300)
def test_play_runs_the_stream_tier_on_the_connector_and_stop_removes_the_plan(
    up: UpProcess,
) -> None:
    """Play of a fleet-camera pipeline pushes the plan to the camera's connector, which
    runs it: events reach the run (stored, counted, on the dashboard) with snapshots that
    the API serves; Stop removes the plan and the connector stops its worker."""
    api = Api(up)
    connector_path = f"/api/v1/devices/{CONNECTOR}"
    # GIVEN the connector's camera registered as a fleet camera and a pipeline on it
    camera = wait_until(lambda: api.get(f"/api/v1/devices/{CAMERA}"), 30, "the camera")
    assert camera["parent_id"] == CONNECTOR
    pipeline = api.post("/api/v1/pipelines", fleet_camera_pipeline(), status=201)
    # WHEN it is played
    run = api.post(f"/api/v1/pipelines/{pipeline['id']}/execute", status=202)
    run_id = run["id"] if "id" in run else run["run"]["id"]
    plan_id = f"{run_id}.cam"
    # THEN the connector's desired configuration holds the plan for this run
    desired = wait_until(
        lambda: plans_of(api.get(connector_path), "desired_config"), 30, "the plan pushed"
    )
    assert [(p["plan_id"], p["camera_id"], p["run_id"]) for p in desired] == [
        (plan_id, CAMERA, run_id)
    ]
    media = desired[0]["media"]
    assert media["upload_url"] == (f"{up.url}/api/v1/runs/{run_id}/media/{{kind}}/{{name}}")
    assert media["headers"]["Authorization"].startswith("Bearer ")
    assert desired[0]["pipeline"]["nodes"][0]["type"] == "aios/camera.device@1"
    # AND the connector runs it and reports so
    wait_until(
        lambda: any(
            p.get("plan_id") == plan_id and p.get("state") == "running"
            for p in plans_of(api.get(connector_path), "reported_config")
        ),
        WAIT,
        "the connector to report the plan running",
    )
    # AND the run is running, its events are stored with snapshots the API serves
    wait_until(lambda: api.get(f"/api/v1/runs/{run_id}")["status"] == "running", WAIT, "running")

    def events_with_snapshots() -> list[dict[str, Any]]:
        items = api.get("/api/v1/events", run_id=run_id)["items"]
        return [e for e in items if e["data"].get("snapshot_url")]

    events = wait_until(events_with_snapshots, WAIT, "events with snapshots")
    event = events[0]
    assert event["type"] == "zone.enter" and event["node_id"] == "zone"
    assert event["source_id"] == CAMERA and event["data"]["source_node"] == "cam"
    assert event["data"]["dashboard"]["node_id"] == "dash"
    assert event["data"]["snapshot"].startswith(f"runs/{run_id}/media/snapshots/")

    def snapshot() -> httpx.Response | None:
        res = api.client.get(event["data"]["snapshot_url"])
        return res if res.status_code == 200 else None

    res = wait_until(snapshot, 60, "the snapshot uploaded")
    assert res.headers["content-type"] == "image/jpeg"
    assert res.content[:3] == b"\xff\xd8\xff" and len(res.content) > 5000
    # AND the run's counters move
    counters = wait_until(
        lambda: (
            (c := api.get(f"/api/v1/runs/{run_id}")["counters"])
            and c.get("events_stored", 0) >= 1
            and c
        ),
        30,
        "counters",
    )
    assert counters["events"]["zone"] >= 1
    assert counters["executions"]["succeeded"] >= 1
    # WHEN it is stopped
    api.post(f"/api/v1/pipelines/{pipeline['id']}/stop", status=202)
    wait_until(lambda: api.get(f"/api/v1/runs/{run_id}")["status"] == "stopped", 60, "stopped")
    # THEN the plan is gone from the desired configuration, and the connector stopped it
    assert plans_of(api.get(connector_path), "desired_config") == []
    wait_until(
        lambda: (
            plans_of(api.get(connector_path), "reported_config") == []
            and api.get(connector_path)["reported_version"]
            == api.get(connector_path)["desired_version"]
        ),
        60,
        "the connector to report no plan",
    )
    # AND the stored events stay reachable, uploads to the stopped run are refused
    stored = api.get("/api/v1/events", run_id=run_id)["items"]
    assert len(stored) >= len(events)
    res = httpx.put(
        media["upload_url"].replace("{kind}", "snapshots").replace("{name}", "late.jpg"),
        content=b"\xff\xd8\xff\xe0late",
        headers=media["headers"],
    )
    assert res.status_code == 409, res.text
