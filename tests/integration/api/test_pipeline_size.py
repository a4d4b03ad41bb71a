"""Pipeline documents larger than a store revision can hold: a 422 saying the size and
what to do, the same with SQLite and DynamoDB (whose items are at most 400 KB), and nothing
saved; a document under the limit is saved by both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from api_client import ApiClient
from api_support import Account
from moto import mock_aws

from aios.api.routes.pipelines import MAX_DOCUMENT_BYTES
from aios.store.dynamodb import DynamoStore, create_table
from aios.store.port import Store
from aios.store.sqlite import SqliteStore

PIPELINES = "/api/v1/pipelines"


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    """The API's store: SQLite on tmp_path, or DynamoDB (moto) on the store's table."""
    if request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "aios.db")
        yield sqlite
        sqlite.close()
        return
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("dynamodb")
        create_table(client, "aios-test")
        dynamo = DynamoStore("aios-test", client=client)
        yield dynamo
        dynamo.close()


def many_nodes(count: int) -> dict[str, Any]:
    return {
        "name": "Huge",
        "nodes": [
            {"id": f"tick{i:05d}", "type": "aios/timer@1", "config": {"interval_seconds": 60}}
            for i in range(count)
        ],
        "edges": [],
    }


def test_a_document_over_the_limit_is_422_with_every_store(
    api: ApiClient, operator: Account, store: Store
) -> None:
    huge = many_nodes(5_000)  # 370 KB as sent
    res = api.post(PIPELINES, huge, token=operator.token)
    assert res.status == 422, res.body
    error = res.json()["error"]
    assert error["details"] == [
        {"field": "body", "message": error["details"][0]["message"], "type": "too_large"}
    ]
    message = error["details"][0]["message"]
    assert message.startswith("the pipeline document is ")
    assert "at most 400 KB per revision" in message and "split it" in message
    assert store.pipelines.list(limit=10).items == []

    # under the limit: saved (one large node setting), then too large as a new revision
    near = {
        "name": "Large",
        "nodes": [
            {
                "id": "tick",
                "type": "aios/timer@1",
                "config": {"interval_seconds": 60, "note": "x" * (MAX_DOCUMENT_BYTES - 1000)},
            }
        ],
        "edges": [],
    }
    created = api.post(PIPELINES, near, token=operator.token)
    assert created.status == 201, created.body
    pipeline_id = created.json()["id"]
    res = api.put(
        f"{PIPELINES}/{pipeline_id}",
        {"expected_revision": 1, "document": huge},
        token=operator.token,
    )
    assert res.status == 422 and res.fields() == ["body.document"]
    record = store.pipelines.get(pipeline_id)
    assert record is not None and record.latest_revision == 1


def test_a_restored_revision_over_the_limit_is_refused_with_its_place(
    api: ApiClient, admin: Account, store: Store
) -> None:
    backup = api.get("/api/v1/backup", token=admin.token).json()
    backup["pipelines"] = [
        {
            "id": "pl_huge",
            "name": "Huge",
            "description": "",
            "revisions": [many_nodes(2), many_nodes(5_000)],
        }
    ]
    res = api.post("/api/v1/restore", backup, token=admin.token)
    assert res.status == 422, res.body
    assert "body.pipelines.0.revisions.1" in res.fields()
    assert "split it" in res.text
    # validated whole before anything is written
    assert store.pipelines.list(limit=10).items == []
