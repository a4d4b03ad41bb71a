"""The store a process's settings name."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from aios.config import Settings
from aios.domain import Device, DeviceKind
from aios.store.dynamodb import DynamoStore, create_table
from aios.store.factory import DatabaseUrlError, open_store
from aios.store.sqlite import SqliteStore


def test_default_is_sqlite_in_the_data_folder(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=tmp_path / "data"))
    try:
        assert isinstance(store, SqliteStore)
        store.devices.create(Device(id="cam-1", name="Gate", kind=DeviceKind.CAMERA))
    finally:
        store.close()
    assert (tmp_path / "data" / "aios.db").is_file()


def test_dynamodb_url_opens_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        create_table(boto3.client("dynamodb"), "aios-test")
        store = open_store(Settings(database_url="dynamodb://aios-test"))
        try:
            assert isinstance(store, DynamoStore)
            store.devices.create(Device(id="cam-1", name="Gate", kind=DeviceKind.CAMERA))
            found = store.devices.get("cam-1")
            assert found is not None and found.name == "Gate"
        finally:
            store.close()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgres://db/aios", "sqlite:///path/aios.db, dynamodb://TABLE"),
        ("sqlite://aios.db", "sqlite:///relative/path.db"),
        ("dynamodb://", "names no table"),
    ],
)
def test_unusable_urls_say_what_to_write(url: str, says: str) -> None:
    with pytest.raises(DatabaseUrlError, match=says.replace(".", r"\.").replace("/", "/")):
        open_store(Settings(database_url=url))
