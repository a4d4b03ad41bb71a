"""Backup and restore of a site's configuration: one JSON file out; back in, validated
whole before anything is written, then created or updated, with counts per kind."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from api_client import ApiClient
from api_support import Account, ManualClock, add_user, make_settings

from aios.api.app import create_app
from aios.domain import Role
from aios.services import Services
from aios.store.sqlite import SqliteStore

INTRUSION = json.loads(
    (Path(__file__).parents[3] / "examples" / "pipelines" / "intrusion.json").read_text()
)


def seed(api: ApiClient, admin: Account, operator: Account) -> str:
    """A connector with a camera, a pipeline of two revisions, a rule, a setting, a secret."""
    for body in (
        {"id": "gw-1", "name": "Gateway", "kind": "connector", "site": "plant-1"},
        {
            "id": "cam-1",
            "name": "Dock camera",
            "kind": "camera",
            "parent_id": "gw-1",
            "tags": ["dock"],
            "location": {"lat": 38.7, "lon": -9.1},
        },
    ):
        assert api.post("/api/v1/devices", body, token=operator.token).status == 201
    config = {"cameras": [{"id": "cam-1", "url": "rtsp://cam.local/stream"}]}
    assert (
        api.put("/api/v1/devices/gw-1/config", {"config": config}, token=operator.token).status
        == 200
    )
    created = api.post("/api/v1/pipelines", INTRUSION, token=operator.token)
    assert created.status == 201, created.text
    pipeline_id = created.json()["id"]
    second = copy.deepcopy(INTRUSION) | {"description": "second revision"}
    saved = api.put(
        f"/api/v1/pipelines/{pipeline_id}",
        {"expected_revision": 1, "document": second},
        token=operator.token,
    )
    assert saved.status == 200, saved.text
    rule = {"kind": "offline", "for_minutes": 5, "severity": "critical"}
    assert api.post("/api/v1/devices/cam-1/alert-rules", rule, token=operator.token).status == 201
    assert (
        api.put("/api/v1/settings", {"allow_pending_devices": True}, token=admin.token).status
        == 200
    )
    secret = {"value": "123456:AAE-telegram-bot-token"}
    assert (
        api.put("/api/v1/integrations/telegram_bot_token", secret, token=admin.token).status == 200
    )
    return str(pipeline_id)


def download(api: ApiClient, admin: Account) -> dict[str, Any]:
    res = api.get("/api/v1/backup", token=admin.token)
    assert res.status == 200, res.text
    assert res.headers["content-disposition"].startswith('attachment; filename="aios-backup-')
    assert "AAE-telegram-bot-token" not in res.text
    return dict(res.json())


def test_backup_then_restore_into_an_empty_site(
    api: ApiClient,
    admin: Account,
    operator: Account,
    viewer: Account,
    *,
    tmp_path: Path,
    clock: ManualClock,
    password_hash: str,
) -> None:
    pipeline_id = seed(api, admin, operator)
    backup = download(api, admin)
    # THEN the file holds the configuration, users without hashes, secret names only
    assert backup["schema_version"] == 1 and backup["exported_by"] == "alice"
    assert [d["id"] for d in backup["devices"]] == ["cam-1", "gw-1"]
    gateway = next(d for d in backup["devices"] if d["id"] == "gw-1")
    assert gateway["desired_config"]["cameras"][0]["id"] == "cam-1"
    assert "last_seen" not in gateway and "reported_config" not in gateway
    (pipeline,) = backup["pipelines"]
    assert pipeline["id"] == pipeline_id and len(pipeline["revisions"]) == 2
    assert pipeline["revisions"][1]["description"] == "second revision"
    assert [r["device_id"] for r in backup["alert_rules"]] == ["cam-1"]
    assert backup["settings"] == {"fleet": {"allow_pending": True}}
    assert {u["username"] for u in backup["users"]} == {"alice", "oscar", "vera"}
    assert not any("password" in key or "hash" in key for u in backup["users"] for key in u)
    assert backup["integration_secrets"] == ["telegram_bot_token"]
    # AND only admins may download it
    assert api.get("/api/v1/backup", token=operator.token).status == 403

    # WHEN it is restored into another, empty site
    other_store = SqliteStore(tmp_path / "other.db")
    try:
        other = ApiClient(
            create_app(
                Services(store=other_store, settings=make_settings(tmp_path / "o"), clock=clock)
            )
        )
        root = add_user(other.app, "root", Role.ADMIN, password_hash)
        res = other.post("/api/v1/restore", backup, token=root.token)
        # THEN everything is created, and the missing secret is named
        assert res.status == 200, res.text
        counts = res.json()
        assert counts["devices"] == {"created": 2, "updated": 0, "unchanged": 0}
        assert counts["pipelines"] == {"created": 1, "updated": 0, "unchanged": 0}
        assert counts["alert_rules"] == {"created": 1, "updated": 0, "unchanged": 0}
        assert counts["settings"] == {"created": 1, "updated": 0, "unchanged": 0}
        assert counts["users"] == {"created": 3, "updated": 0, "unchanged": 0}
        assert counts["missing_secrets"] == ["telegram_bot_token"]
        camera = other.get("/api/v1/devices/cam-1", token=root.token).json()
        assert (camera["parent_id"], camera["tags"], camera["location"]) == (
            "gw-1",
            ["dock"],
            {"lat": 38.7, "lon": -9.1},
        )
        gw = other.get("/api/v1/devices/gw-1", token=root.token).json()
        assert gw["desired_config"] == gateway["desired_config"] and gw["desired_version"] == 1
        restored = other.get(f"/api/v1/pipelines/{pipeline_id}", token=root.token).json()
        assert restored["latest_revision"] == 2
        assert restored["document"]["description"] == "second revision"
        revisions = other.get(f"/api/v1/pipelines/{pipeline_id}/revisions", token=root.token)
        assert [r["revision"] for r in revisions.json()["items"]] == [2, 1]
        settings = other.get("/api/v1/settings", token=root.token).json()
        assert settings["allow_pending_devices"] is True
        # AND a restored user exists with its role but cannot sign in without a new password
        users = {
            u["username"]: u for u in other.get("/api/v1/users", token=root.token).json()["items"]
        }
        assert users["oscar"]["role"] == "operator"
        login = other.post(
            "/api/v1/auth/login", {"username": "oscar", "password": "correct horse battery staple"}
        )
        assert login.status == 401
        # AND restoring the same file again changes nothing
        again = other.post("/api/v1/restore", backup, token=root.token).json()
        assert again["devices"] == {"created": 0, "updated": 0, "unchanged": 2}
        assert again["pipelines"] == {"created": 0, "updated": 0, "unchanged": 1}
        assert again["users"]["unchanged"] == 3
        assert (
            other.get(f"/api/v1/pipelines/{pipeline_id}", token=root.token).json()[
                "latest_revision"
            ]
            == 2
        )
    finally:
        other_store.close()


def test_restore_updates_existing_records_keeping_versions(
    api: ApiClient, admin: Account, operator: Account, viewer: Account
) -> None:
    pipeline_id = seed(api, admin, operator)
    backup = download(api, admin)
    # GIVEN the file edited: a renamed camera, a new gateway config, a changed pipeline,
    # vera promoted, and a new device
    for device in backup["devices"]:
        if device["id"] == "cam-1":
            device["name"] = "Dock camera (north)"
        if device["id"] == "gw-1":
            device["desired_config"] = {"cameras": []}
    backup["devices"].append({"id": "sensor-9", "name": "Temp", "kind": "sensor"})
    backup["pipelines"][0]["revisions"][-1]["description"] = "third revision"
    for user in backup["users"]:
        if user["username"] == "vera":
            user["role"] = "operator"
        if user["username"] == "alice":
            user["role"] = "viewer"  # the caller's own account is never changed
    before = api.get("/api/v1/devices/gw-1", token=admin.token).json()
    # WHEN restored over the same site
    res = api.post("/api/v1/restore", backup, token=admin.token, query={"mode": "merge"})
    assert res.status == 200, res.text
    counts = res.json()
    assert counts["devices"] == {"created": 1, "updated": 2, "unchanged": 0}
    assert counts["pipelines"] == {"created": 0, "updated": 1, "unchanged": 0}
    assert counts["users"] == {"created": 0, "updated": 1, "unchanged": 2}
    assert counts["missing_secrets"] == []
    # THEN the records moved on by their versions
    gw = api.get("/api/v1/devices/gw-1", token=admin.token).json()
    assert gw["desired_config"] == {"cameras": []}
    assert gw["desired_version"] == before["desired_version"] + 1
    assert api.get("/api/v1/devices/cam-1", token=admin.token).json()["name"] == (
        "Dock camera (north)"
    )
    pipeline = api.get(f"/api/v1/pipelines/{pipeline_id}", token=admin.token).json()
    assert pipeline["latest_revision"] == 3
    assert pipeline["document"]["description"] == "third revision"
    assert api.get("/api/v1/auth/me", token=admin.token).json()["role"] == "admin"
    users = {u["username"]: u for u in api.get("/api/v1/users", token=admin.token).json()["items"]}
    assert users["vera"]["role"] == "operator"
    audit = api.get("/api/v1/audit", token=admin.token, query={"target_type": "backup"}).json()
    assert [e["action"] for e in audit["items"]] == ["backup.restore"]


def test_an_invalid_backup_is_refused_whole(
    api: ApiClient, admin: Account, operator: Account
) -> None:
    pipeline_id = seed(api, admin, operator)
    backup = download(api, admin)
    broken = copy.deepcopy(backup)
    broken["devices"].append({"id": "new-cam", "name": "New", "kind": "toaster"})
    broken["devices"].append(
        {"id": "cam-2", "name": "Orphan", "kind": "camera", "parent_id": "gw-404"}
    )
    broken["pipelines"][0]["revisions"][1]["nodes"][0]["id"] = "bad id!"
    broken["alert_rules"].append({"id": "rule_x", "device_id": "ghost", "kind": "offline"})
    broken["users"].append({"id": "usr_x", "username": "alice", "role": "viewer"})
    broken["devices"][0]["name"] = "Should not be written"
    res = api.post("/api/v1/restore", broken, token=admin.token)
    # THEN every problem is named by its path, and nothing was written
    assert res.status == 422, res.text
    assert res.error["code"] == "invalid_backup"
    fields = res.fields()
    assert "body.devices.2.kind" in fields
    assert "body.devices.3.parent_id" in fields
    assert "body.pipelines.0.revisions.1.nodes.0.id" in fields
    assert "body.alert_rules.1.device_id" in fields
    assert f"body.users.{len(backup['users'])}.username" in fields
    assert api.get("/api/v1/devices/new-cam", token=admin.token).status == 404
    assert api.get("/api/v1/devices/cam-1", token=admin.token).json()["name"] == "Dock camera"
    assert (
        api.get(f"/api/v1/pipelines/{pipeline_id}", token=admin.token).json()["latest_revision"]
        == 2
    )
    # AND a file of a newer format is refused
    newer = api.post("/api/v1/restore", backup | {"schema_version": 2}, token=admin.token)
    assert newer.status == 422 and newer.fields() == ["body.schema_version"]
    # AND an unknown mode, or a file that is not a backup, is refused
    mode = api.post("/api/v1/restore", backup, token=admin.token, query={"mode": "replace"})
    assert mode.status == 422 and mode.fields() == ["query.mode"]
    not_backup = api.post("/api/v1/restore", {"devices": []}, token=admin.token)
    assert not_backup.status == 422 and "body.schema_version" in not_backup.fields()
    # AND only admins may restore
    assert api.post("/api/v1/restore", backup, token=operator.token).status == 403


@pytest.mark.parametrize("field", ["users", "devices"])
def test_listed_twice_is_refused(api: ApiClient, admin: Account, field: str) -> None:
    item = (
        {"id": "usr_1", "username": "dup", "role": "viewer"}
        if field == "users"
        else {"id": "dev-1", "name": "d", "kind": "sensor"}
    )
    twin = dict(item) | ({"id": "usr_2"} if field == "users" else {})
    body = {"schema_version": 1, "exported_at": "2026-01-01T00:00:00Z", field: [item, twin]}
    res = api.post("/api/v1/restore", body, token=admin.token)
    expected = "body.users.1.username" if field == "users" else "body.devices.1.id"
    assert res.status == 422 and res.fields() == [expected]
