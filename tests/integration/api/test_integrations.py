"""Integration secrets: listed masked with where they come from, set and cleared by an
admin, found by the pipelines' secret lookup — and never in a response, the audit log or
the logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from api_client import ApiClient
from api_support import Account

from aios.events.secrets import SecretNotFound
from aios.store.secrets import secret_chain

TOKEN = "EAAGm0PX4ZCpsBA-secret-token-7Qk2"
WEBHOOK_SECRET = "whsec-signing-0123456789"


def items_by_name(api: ApiClient, admin: Account) -> dict[str, dict[str, object]]:
    res = api.get("/api/v1/integrations", token=admin.token)
    assert res.status == 200, res.text
    return {item["name"]: item for item in res.json()["items"]}


def test_set_list_masked_and_clear(
    api: ApiClient,
    admin: Account,
    operator: Account,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("AIOS_SECRET_WHATSAPP_ACCESS_TOKEN", raising=False)
    caplog.set_level(logging.DEBUG)
    # GIVEN nothing set: the notification nodes' secrets are listed, unset
    before = items_by_name(api, admin)
    assert {"whatsapp_access_token", "telegram_bot_token", "smtp_password"} <= set(before)
    whatsapp = before["whatsapp_access_token"]
    assert (whatsapp["set"], whatsapp["source"], whatsapp["masked"]) == (False, None, None)
    assert whatsapp["env_var"] == "AIOS_SECRET_WHATSAPP_ACCESS_TOKEN"
    # WHEN an admin sets the WhatsApp token
    res = api.put("/api/v1/integrations/whatsapp_access_token", {"value": TOKEN}, token=admin.token)
    # THEN the answer shows it set from the store, masked to its last 4 characters
    assert res.status == 200, res.text
    body = res.json()
    assert (body["set"], body["source"], body["stored"]) == (True, "store", True)
    assert body["masked"] == "••••7Qk2" and body["hint"] == "7Qk2"
    assert body["updated_by"] == "alice" and body["updated_at"] is not None
    assert TOKEN not in res.text
    listed = api.get("/api/v1/integrations", token=admin.token)
    assert TOKEN not in listed.text
    assert items_by_name(api, admin)["whatsapp_access_token"]["masked"] == "••••7Qk2"
    # AND a pipeline's secret lookup finds the value (what the WhatsApp node reads)
    store = api.app.services.store
    assert secret_chain(store.secrets).get("whatsapp_access_token") == TOKEN
    # AND neither the audit log nor the logs hold it
    audit = api.get("/api/v1/audit", token=admin.token, query={"target_type": "integration"})
    entries = audit.json()["items"]
    assert [(e["action"], e["target_id"]) for e in entries] == [
        ("integration.set", "whatsapp_access_token")
    ]
    assert TOKEN not in audit.text
    assert TOKEN not in caplog.text
    # WHEN the environment pins another value, it wins (and is shown as such)
    monkeypatch.setenv("AIOS_SECRET_WHATSAPP_ACCESS_TOKEN", "from-the-environment-value")
    pinned = items_by_name(api, admin)["whatsapp_access_token"]
    assert (pinned["source"], pinned["masked"], pinned["stored"]) == ("env", "•••• set", True)
    assert secret_chain(store.secrets).get("whatsapp_access_token") == (
        "from-the-environment-value"
    )
    monkeypatch.delenv("AIOS_SECRET_WHATSAPP_ACCESS_TOKEN")
    # WHEN a short value is set, nothing of it is shown
    api.put("/api/v1/integrations/smtp_password", {"value": "hunter2"}, token=admin.token)
    assert items_by_name(api, admin)["smtp_password"]["masked"] == "•••• set"
    # WHEN it is cleared, the lookup no longer finds it; clearing again is a 404
    assert api.delete("/api/v1/integrations/whatsapp_access_token", token=admin.token).status == 204
    assert items_by_name(api, admin)["whatsapp_access_token"]["set"] is False
    with pytest.raises(SecretNotFound):
        secret_chain(store.secrets).get("whatsapp_access_token")
    again = api.delete("/api/v1/integrations/whatsapp_access_token", token=admin.token)
    assert again.status == 404 and again.error["code"] == "not_found"
    # AND only admins may read or write them
    assert api.get("/api/v1/integrations", token=operator.token).status == 403
    denied = api.put(
        "/api/v1/integrations/telegram_bot_token", {"value": TOKEN}, token=operator.token
    )
    assert denied.status == 403 and TOKEN not in denied.text


def test_secrets_named_by_pipelines_and_the_secrets_file(
    api: ApiClient, admin: Account, operator: Account, tmp_path: Path
) -> None:
    # GIVEN a pipeline whose webhook node names a signing secret
    document = {
        "name": "Orders",
        "nodes": [
            {
                "id": "orders",
                "type": "aios/webhook@1",
                "config": {"path": "/hooks/orders", "secret_name": "orders_webhook_secret"},
            }
        ],
    }
    created = api.post("/api/v1/pipelines", document, token=operator.token)
    assert created.status == 201, created.text
    # AND a secrets file holding the Telegram token
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps({"telegram_bot_token": "123456:AAE-file-token"}))
    secrets_file.chmod(0o600)
    api.app.services.settings.secrets_file = secrets_file
    # THEN the list names the webhook's secret, where it is used, and the file's token
    items = items_by_name(api, admin)
    webhook = items["orders_webhook_secret"]
    assert webhook["set"] is False
    assert webhook["used_by"] == [
        {
            "pipeline_id": created.json()["id"],
            "pipeline_name": "Orders",
            "node_id": "orders",
            "node_type": "aios/webhook@1",
            "field": "secret_name",
        }
    ]
    telegram = items["telegram_bot_token"]
    assert (telegram["set"], telegram["source"], telegram["masked"]) == (True, "file", "•••• set")
    assert "AAE-file-token" not in api.get("/api/v1/integrations", token=admin.token).text
    # WHEN the webhook secret is set from the console, it is set from the store
    res = api.put(
        "/api/v1/integrations/orders_webhook_secret", {"value": WEBHOOK_SECRET}, token=admin.token
    )
    assert res.status == 200 and res.json()["source"] == "store"
    assert res.json()["used_by"][0]["node_id"] == "orders"


def test_invalid_names_and_values_are_refused_without_echo(api: ApiClient, admin: Account) -> None:
    bad_name = api.put(
        "/api/v1/integrations/9-starts-with-digit", {"value": "x"}, token=admin.token
    )
    assert bad_name.status == 422 and bad_name.fields() == ["path.name"]
    empty = api.put("/api/v1/integrations/smtp_password", {"value": ""}, token=admin.token)
    assert empty.status == 422 and empty.fields() == ["body.value"]
    huge = "s3cr3t" * 2000
    too_long = api.put("/api/v1/integrations/smtp_password", {"value": huge}, token=admin.token)
    assert too_long.status == 422 and "s3cr3t" not in too_long.text
    extra = api.put(
        "/api/v1/integrations/smtp_password", {"value": "ok-value", "x": 1}, token=admin.token
    )
    assert extra.status == 422 and extra.fields() == ["body.x"]
