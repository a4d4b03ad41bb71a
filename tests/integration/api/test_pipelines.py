"""``/api/v1/pipelines`` and ``/api/v1/runs``: documents and revisions, validation, Play
and Stop through the local run launcher, run history."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_client import ApiClient
from api_support import Account, ManualClock, add_user, make_settings
from pipeline_builders import edge

from aios.api.app import create_app
from aios.domain import Role
from aios.runs.local import LocalRunLauncher
from aios.services import Services
from aios.store.sqlite import SqliteStore

PIPELINES = "/api/v1/pipelines"


def timer_pipeline(name: str = "Hourly check", panel: str = "Ticks") -> dict[str, Any]:
    """An event-only pipeline (timer → dashboard): runs until stopped, needs no video."""
    return {
        "name": name,
        "nodes": [
            {"id": "tick", "type": "aios/timer@1", "config": {"interval_seconds": 3600}},
            {"id": "dash", "type": "aios/dashboard@1", "config": {"panel": panel}},
        ],
        "edges": [edge("tick", "events", "dash", "events")],
    }


def broken_pipeline() -> dict[str, Any]:
    """Right shape, wrong graph: an unknown type and a config error."""
    return {
        "name": "Broken",
        "nodes": [
            {"id": "tick", "type": "aios/timer@1", "config": {"interval_seconds": -1}},
            {"id": "dash", "type": "aios/dashbord@1", "config": {}},
        ],
        "edges": [edge("tick", "events", "dash", "events")],
    }


def test_create_read_update_delete(api: ApiClient, operator: Account, viewer: Account) -> None:
    """Each save is a revision; a stale save is 409; reads show validation."""
    res = api.post(PIPELINES, timer_pipeline(), token=operator.token)
    assert res.status == 201, res.text
    created = res.json()
    pid = created["id"]
    assert (created["name"], created["latest_revision"], created["created_by"]) == (
        "Hourly check",
        1,
        "oscar",
    )
    assert created["validation"] == {"valid": True, "issues": []}
    assert created["document"]["nodes"][0]["id"] == "tick"
    assert created["document"]["schemaVersion"] == 1
    assert created["active_run_id"] is None
    # WHEN saved again over revision 1
    res = api.put(
        f"{PIPELINES}/{pid}",
        {"expected_revision": 1, "document": timer_pipeline("Renamed")},
        token=operator.token,
    )
    assert res.status == 200, res.text
    assert (res.json()["latest_revision"], res.json()["name"]) == (2, "Renamed")
    # AND a second editor still on revision 1 is refused
    stale = api.put(
        f"{PIPELINES}/{pid}",
        {"expected_revision": 1, "document": timer_pipeline("Other")},
        token=operator.token,
    )
    assert stale.status == 409 and stale.error["code"] == "stale_revision"
    # THEN both revisions are kept, newest first
    revisions = api.get(f"{PIPELINES}/{pid}/revisions", token=viewer.token).json()["items"]
    assert [r["revision"] for r in revisions] == [2, 1]
    one = api.get(f"{PIPELINES}/{pid}/revisions/1", token=viewer.token).json()
    assert one["document"]["name"] == "Hourly check"
    assert api.get(f"{PIPELINES}/{pid}/revisions/9", token=viewer.token).status == 404
    assert api.get(f"{PIPELINES}/{pid}/revisions/zero", token=viewer.token).fields() == [
        "path.revision"
    ]
    # AND listed and searchable
    api.post(PIPELINES, timer_pipeline("Door alarm"), token=operator.token)
    names = [p["name"] for p in api.get(PIPELINES, token=viewer.token).json()["items"]]
    assert sorted(names) == ["Door alarm", "Renamed"]
    found = api.get(PIPELINES, token=viewer.token, query={"search": "door"}).json()["items"]
    assert [p["name"] for p in found] == ["Door alarm"]
    page = api.get(PIPELINES, token=viewer.token, query={"limit": 1}).json()
    nxt = api.get(PIPELINES, token=viewer.token, query={"cursor": page["next_cursor"]}).json()
    assert len(page["items"]) == len(nxt["items"]) == 1 and nxt["next_cursor"] is None
    # WHEN deleted
    assert api.delete(f"{PIPELINES}/{pid}", token=operator.token).status == 204
    assert api.get(f"{PIPELINES}/{pid}", token=viewer.token).status == 404
    assert api.delete(f"{PIPELINES}/{pid}", token=operator.token).status == 404


def test_documents_of_the_wrong_shape_are_422_with_paths(api: ApiClient, operator: Account) -> None:
    """The document's shape is checked on save; field paths point into the body."""
    res = api.post(
        PIPELINES,
        {"name": "", "nodes": [{"id": "bad id!", "type": "aios/timer@1"}], "edgez": []},
        token=operator.token,
    )
    assert res.status == 422
    assert sorted(res.fields()) == ["body.edgez", "body.name", "body.nodes.0.id"]
    res = api.put(f"{PIPELINES}/pl_x", {"document": timer_pipeline()}, token=operator.token)
    assert res.status == 422 and res.fields() == ["body.expected_revision"]
    res = api.put(
        f"{PIPELINES}/pl_missing",
        {"expected_revision": 1, "document": timer_pipeline()},
        token=operator.token,
    )
    assert res.status == 404


def test_graph_problems_are_saved_reported_and_block_play(
    api: ApiClient, operator: Account, viewer: Account
) -> None:
    """A document of the right shape with graph/config problems is stored (work in
    progress), reported with node ids and paths, and refused by execute."""
    res = api.post(PIPELINES, broken_pipeline(), token=operator.token)
    assert res.status == 201
    body = res.json()
    assert body["validation"]["valid"] is False
    issues = {(i["code"], i["node_id"], tuple(i["path"])) for i in body["validation"]["issues"]}
    assert ("unknown_type", "dash", ("type",)) in issues
    assert any(code == "invalid_config" and node == "tick" for code, node, _ in issues)
    # AND validate says the same, for the stored revision and for an unsaved document
    stored = api.post(f"{PIPELINES}/{body['id']}/validate", token=viewer.token).json()
    assert stored == body["validation"]
    unsaved = api.post(f"{PIPELINES}/validate", broken_pipeline(), token=viewer.token).json()
    assert unsaved == body["validation"]
    fine = api.post(f"{PIPELINES}/validate", timer_pipeline(), token=viewer.token).json()
    assert fine == {"valid": True, "issues": []}
    not_an_object = api.post(f"{PIPELINES}/validate", {"nodes": 3}, token=viewer.token).json()
    assert not_an_object["valid"] is False
    assert {i["code"] for i in not_an_object["issues"]} == {"invalid_document"}
    # AND execute is refused with every issue
    run = api.post(f"{PIPELINES}/{body['id']}/execute", token=operator.token)
    assert run.status == 422 and run.error["code"] == "pipeline_invalid"
    assert {d["code"] for d in run.error["details"]} >= {"unknown_type", "invalid_config"}
    assert api.post(f"{PIPELINES}/pl_none/validate", token=viewer.token).status == 404


def test_execute_without_a_launcher_is_503(api: ApiClient, operator: Account) -> None:
    """A process that cannot start runs says so."""
    pid = api.post(PIPELINES, timer_pipeline(), token=operator.token).json()["id"]
    res = api.post(f"{PIPELINES}/{pid}/execute", token=operator.token)
    assert res.status == 503 and res.error["code"] == "runs_unavailable"
    assert api.post(f"{PIPELINES}/pl_none/execute", token=operator.token).status == 404
    stop = api.post(f"{PIPELINES}/{pid}/stop", token=operator.token)
    assert stop.status == 404 and "no active run" in stop.error["message"]


@pytest.fixture
def running_site(
    tmp_path: Path, store: SqliteStore, clock: ManualClock, password_hash: str
) -> Iterator[tuple[ApiClient, Account, Account]]:
    """The API with the local run launcher (runs in threads of this process)."""
    services = Services(store=store, settings=make_settings(tmp_path), clock=clock)
    launcher = LocalRunLauncher(
        services, data_dir=tmp_path / "runs", max_concurrent=2, counters_interval=0.2
    )
    services.launcher = launcher
    app = create_app(services)
    api = ApiClient(app)
    operator = add_user(app, "oscar", Role.OPERATOR, password_hash)
    admin = add_user(app, "alice", Role.ADMIN, password_hash)
    yield api, operator, admin
    launcher.shutdown(timeout=30)


def wait_run(api: ApiClient, token: str, run_id: str, *statuses: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        run = api.get(f"/api/v1/runs/{run_id}", token=token).json()
        if run["status"] in statuses:
            return run  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, run
        time.sleep(0.05)


@pytest.mark.timeout(90)
def test_play_and_stop(running_site: tuple[ApiClient, Account, Account]) -> None:
    """Execute starts a run (202), a second Play is 409, delete is refused while it runs,
    Stop ends it; runs are listed and analytics count them; both are audited."""
    api, operator, admin = running_site
    pid = api.post(PIPELINES, timer_pipeline(), token=operator.token).json()["id"]
    # WHEN played
    res = api.post(f"{PIPELINES}/{pid}/execute", token=operator.token)
    assert res.status == 202, res.text
    run = res.json()
    assert (run["pipeline_id"], run["revision"], run["started_by"]) == (pid, 1, "oscar")
    running = wait_run(api, operator.token, run["id"], "running")
    assert running["status"] == "running"
    # THEN a second Play conflicts, and the pipeline cannot be deleted
    again = api.post(f"{PIPELINES}/{pid}/execute", token=operator.token)
    assert again.status == 409 and run["id"] in again.error["message"]
    busy = api.delete(f"{PIPELINES}/{pid}", token=operator.token)
    assert busy.status == 409 and busy.error["code"] == "pipeline_running"
    assert api.get(f"{PIPELINES}/{pid}", token=operator.token).json()["active_run_id"] == run["id"]
    perf = api.get("/api/v1/analytics/performance", token=operator.token).json()
    assert perf["active_runs"] == 1 and [r["run_id"] for r in perf["runs"]] == [run["id"]]
    # WHEN stopped
    res = api.post(f"{PIPELINES}/{pid}/stop", token=operator.token)
    assert res.status == 202 and res.json()["id"] == run["id"]
    done = wait_run(api, operator.token, run["id"], "stopped", "failed")
    assert done["status"] == "stopped", done
    # THEN it is in the history
    runs = api.get(f"{PIPELINES}/{pid}/runs", token=operator.token).json()
    assert [r["id"] for r in runs["items"]] == [run["id"]]
    assert api.get(f"{PIPELINES}/pl_none/runs", token=operator.token).status == 404
    assert api.get("/api/v1/runs/run_none", token=operator.token).status == 404
    # AND a chosen revision plays; a missing one is 404
    assert (
        api.post(f"{PIPELINES}/{pid}/execute", token=operator.token, query={"revision": 7}).status
        == 404
    )
    # AND both writes are audited with the run id
    audit = api.get("/api/v1/audit", token=admin.token, query={"target_id": pid}).json()
    runs_audited = {
        (e["action"], e["detail"].get("run_id"))
        for e in audit["items"]
        if e["outcome"] == "success"
    }
    assert {("pipeline.execute", run["id"]), ("pipeline.stop", run["id"])} <= runs_audited


def test_validate_checks_fleet_cameras_against_the_fleet(
    api: ApiClient, operator: Account, viewer: Account
) -> None:
    """A fleet camera node naming a device that is not a camera behind a connector is a
    problem on its config.device_id — the same refusal Play would give, found before."""
    for body in (
        {"id": "gw-1", "name": "Gateway", "kind": "connector"},
        {"id": "cam-1", "name": "Dock", "kind": "camera", "parent_id": "gw-1"},
        {"id": "plc-1", "name": "PLC", "kind": "plc", "parent_id": "gw-1"},
    ):
        assert api.post("/api/v1/devices", body, token=operator.token).status == 201

    def on_camera(device_id: str) -> dict[str, Any]:
        return {
            "name": "Dock people",
            "nodes": [
                {"id": "cam", "type": "aios/camera.device@1", "config": {"device_id": device_id}},
                {"id": "det", "type": "aios/object_detection@1", "config": {}},
                {
                    "id": "zone",
                    "type": "aios/zone@1",
                    "config": {"polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]},
                },
                {"id": "dash", "type": "aios/dashboard@1", "config": {}},
            ],
            "edges": [
                edge("cam", "frames", "det", "frames"),
                edge("det", "detections", "zone", "detections"),
                edge("zone", "events", "dash", "events"),
            ],
        }

    assert api.post(f"{PIPELINES}/validate", on_camera("cam-1"), token=viewer.token).json() == {
        "valid": True,
        "issues": [],
    }
    for device_id, words in (("plc-1", "is a plc, not a camera"), ("cam-404", "not in the fleet")):
        result = api.post(f"{PIPELINES}/validate", on_camera(device_id), token=viewer.token)
        (issue,) = result.json()["issues"]
        assert (issue["code"], issue["node_id"], issue["path"]) == (
            "fleet_camera",
            "cam",
            ["config", "device_id"],
        )
        assert words in issue["message"]
