"""Events, analytics, the node catalog, the audit log and site settings."""

from __future__ import annotations

from datetime import timedelta

from api_client import ApiClient
from api_support import Account, ManualClock

from aios.domain import EventRecord, PipelineRecord, Run, RunStatus
from aios.nodes import CATALOG


def seed_events(api: ApiClient, clock: ManualClock) -> None:
    """Six events of two pipelines over three hours."""
    store = api.app.services.store
    base = clock().replace(minute=10, second=0) - timedelta(hours=3)
    rows = [
        ("pl_a", "zone.entered", "info", 0),
        ("pl_a", "zone.entered", "info", 1),
        ("pl_a", "loitering", "critical", 61),
        ("pl_b", "webhook.received", "info", 62),
        ("pl_b", "webhook.received", "warning", 125),
        ("pl_a", "zone.entered", "info", 126),
    ]
    for i, (pipeline, kind, severity, minutes) in enumerate(rows):
        store.events.put(
            EventRecord(
                id=f"evt_{i}",
                pipeline_id=pipeline,
                run_id=f"run_{pipeline}",
                node_id="n1",
                type=kind,
                severity=severity,
                time=base + timedelta(minutes=minutes),
            )
        )


def test_events_list_filters_and_pages(api: ApiClient, viewer: Account, clock: ManualClock) -> None:
    seed_events(api, clock)

    def ids(**query: object) -> list[str]:
        res = api.get("/api/v1/events", token=viewer.token, query=query)
        assert res.status == 200, res.text
        return [e["id"] for e in res.json()["items"]]

    assert ids() == ["evt_5", "evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]
    assert ids(pipeline_id="pl_b") == ["evt_4", "evt_3"]
    assert ids(type="zone.entered") == ["evt_5", "evt_1", "evt_0"]
    assert ids(run_id="run_pl_a", type="loitering") == ["evt_2"]
    start = clock().replace(minute=10, second=0) - timedelta(hours=2)
    assert ids(since=start.isoformat()) == ["evt_5", "evt_4", "evt_3", "evt_2"]
    naive = start.replace(tzinfo=None).isoformat()
    assert ids(since=naive) == ["evt_5", "evt_4", "evt_3", "evt_2"]
    first = api.get("/api/v1/events", token=viewer.token, query={"limit": 4}).json()
    second = api.get(
        "/api/v1/events", token=viewer.token, query={"limit": 4, "cursor": first["next_cursor"]}
    ).json()
    assert [e["id"] for e in first["items"] + second["items"]] == [
        f"evt_{i}" for i in range(5, -1, -1)
    ]
    assert second["next_cursor"] is None
    far = api.get(
        "/api/v1/events", token=viewer.token, query={"since": "0001-01-01T00:00:00+14:00"}
    )
    assert far.status == 422 and far.fields() == ["query.since"]


def test_event_analytics(api: ApiClient, viewer: Account, clock: ManualClock) -> None:
    """Counts by type, severity, pipeline and UTC hour, in [since, until)."""
    seed_events(api, clock)
    res = api.get("/api/v1/analytics/events", token=viewer.token)
    assert res.status == 200, res.text
    body = res.json()
    assert body["total"] == 6 and body["truncated"] is False
    assert body["by_type"] == {"zone.entered": 3, "webhook.received": 2, "loitering": 1}
    assert body["by_severity"] == {"info": 4, "critical": 1, "warning": 1}
    assert body["by_pipeline"] == {"pl_a": 4, "pl_b": 2}
    assert [h["count"] for h in body["by_hour"]] == [2, 2, 2]
    only_b = api.get(
        "/api/v1/analytics/events", token=viewer.token, query={"pipeline_id": "pl_b"}
    ).json()
    assert only_b["total"] == 2
    backwards = api.get(
        "/api/v1/analytics/events",
        token=viewer.token,
        query={"since": clock().isoformat(), "until": (clock() - timedelta(hours=1)).isoformat()},
    )
    assert backwards.status == 422 and backwards.fields() == ["query.since"]


def test_performance_from_run_counters(api: ApiClient, viewer: Account, clock: ManualClock) -> None:
    """Frames, fps, events and executions summed from the runs' counters."""
    store = api.app.services.store
    store.pipelines.create(PipelineRecord(id="pl_a", name="A"), {"name": "A", "nodes": []})
    start = clock() - timedelta(minutes=10)
    done = Run(
        pipeline_id="pl_a",
        revision=1,
        status=RunStatus.STOPPED,
        started_at=start,
        stopped_at=start + timedelta(seconds=100),
        counters={
            "frames": {"cam": 800, "cam2": 200},
            "fps": {"cam": 8.0},
            "events": {"zone": 5, "door": 2},
            "executions": {"succeeded": 6, "failed": 1},
            "events_stored": 7,
        },
    )
    live = Run(
        pipeline_id="pl_a",
        revision=1,
        status=RunStatus.RUNNING,
        started_at=start + timedelta(minutes=5),
        counters={"frames": {"cam": 300}, "fps": {"cam": 9.5}, "elapsed_seconds": 30.0},
    )
    store.runs.create(done)
    store.runs.create(live)
    body = api.get("/api/v1/analytics/performance", token=viewer.token).json()
    assert [r["run_id"] for r in body["runs"]] == [live.id, done.id]
    first, second = body["runs"]
    assert (first["frames"], first["fps"], first["elapsed_seconds"]) == (300, 9.5, 30.0)
    assert (second["frames"], second["fps"], second["events"]) == (1000, 10.0, 7)
    assert second["executions"] == {"succeeded": 6, "failed": 1}
    assert (body["active_runs"], body["frames"], body["fps"]) == (1, 1300, 9.5)
    assert body["executions"] == {"succeeded": 6, "failed": 1}
    one = api.get(
        "/api/v1/analytics/performance",
        token=viewer.token,
        query={"pipeline_id": "pl_a", "limit": 1},
    ).json()
    assert [r["run_id"] for r in one["runs"]] == [live.id]
    missing = api.get(
        "/api/v1/analytics/performance", token=viewer.token, query={"pipeline_id": "pl_x"}
    )
    assert missing.status == 404


def test_node_catalog(api: ApiClient, viewer: Account) -> None:
    """GET nodes is the catalog export (manifests and config schemas)."""
    res = api.get("/api/v1/nodes", token=viewer.token)
    assert res.status == 200
    assert res.json() == CATALOG.export()
    assert "aios/zone@1" in {n["type"] for n in res.json()["nodes"]}


def test_audit_log_filters(api: ApiClient, admin: Account, operator: Account) -> None:
    """The audit log filters by actor, target type and id, newest first."""
    api.post(
        "/api/v1/devices", {"id": "cam-1", "name": "A", "kind": "camera"}, token=operator.token
    )
    api.post("/api/v1/users", {"username": "zed", "password": "long enough"}, token=admin.token)
    by_oscar = api.get(
        "/api/v1/audit", token=admin.token, query={"actor_id": operator.user.id}
    ).json()["items"]
    assert [(e["action"], e["target_id"], e["user_agent"]) for e in by_oscar] == [
        ("device.create", "cam-1", "aios-tests/1.0")
    ]
    users = api.get("/api/v1/audit", token=admin.token, query={"target_type": "user"}).json()
    assert [e["action"] for e in users["items"]] == ["user.create"]
    page = api.get("/api/v1/audit", token=admin.token, query={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_cursor"]


def test_site_settings(api: ApiClient, admin: Account) -> None:
    """Admins read and change the pending-device setting (stored where the fleet reads it)."""
    from aios.fleet.service import FleetService

    assert api.get("/api/v1/settings", token=admin.token).json() == {
        "allow_pending_devices": False,
        "forced_by_configuration": False,
    }
    res = api.put("/api/v1/settings", {"allow_pending_devices": True}, token=admin.token)
    assert res.status == 200 and res.json()["allow_pending_devices"] is True
    assert FleetService(api.app.services).allow_pending() is True
    assert api.put("/api/v1/settings", {"allow_pending": 1}, token=admin.token).fields() == [
        "body.allow_pending"
    ]
