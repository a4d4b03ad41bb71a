"""`aios users first-admin` as a process: the first account of a deployment's store.

The DynamoDB case runs against moto's server on 127.0.0.1 (boto3 in the child process talks
HTTP to it through ``AWS_ENDPOINT_URL``), on a table created from ``template.yaml``'s DataTable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from argon2 import PasswordHasher
from moto.server import ThreadedMotoServer
from up_support import free_port

from aios.config import Settings
from aios.store.factory import open_store

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"


def first_admin(
    database_url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``aios users first-admin`` on ``database_url`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "aios.cli", "users", "first-admin", "--database-url", database_url],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def password_of(output: str) -> str:
    lines = dict(line.split(": ", 1) for line in output.strip().splitlines())
    assert lines["username"] == "admin"
    return lines["password"]


def test_sqlite_first_admin_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'aios.db'}"
    first = first_admin(url)
    assert first.returncode == 0, first.stderr
    password = password_of(first.stdout)
    assert len(password) >= 20

    second = first_admin(url)
    assert second.returncode == 1
    assert "has accounts already" in second.stderr
    assert second.stdout == ""

    store = open_store(Settings(database_url=url))
    try:
        users = store.users.list(limit=10).items
        assert [u.username for u in users] == ["admin"]
        assert users[0].role.value == "admin"
        assert PasswordHasher().verify(users[0].password_hash, password)
    finally:
        store.close()


def test_bad_database_url_says_what_to_write(tmp_path: Path) -> None:
    result = first_admin("postgres://db/aios")
    assert result.returncode == 2
    assert "dynamodb://TABLE" in result.stderr
    assert result.stdout == ""


@pytest.fixture
def moto_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_dynamodb_first_admin_on_the_template_table(moto_server: str) -> None:
    from cloud_stack import load_template

    table = load_template()["Resources"]["DataTable"]["Properties"]
    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_server,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_table(
        TableName="aios-test-data",
        AttributeDefinitions=table["AttributeDefinitions"],
        KeySchema=table["KeySchema"],
        GlobalSecondaryIndexes=table["GlobalSecondaryIndexes"],
        BillingMode=table["BillingMode"],
    )
    first = first_admin("dynamodb://aios-test-data", env)
    assert first.returncode == 0, first.stderr
    password_of(first.stdout)
    second = first_admin("dynamodb://aios-test-data", env)
    assert second.returncode == 1, second.stderr
    items = client.scan(TableName="aios-test-data")["Items"]
    usernames = {i["username"]["S"] for i in items if i.get("entity", {}).get("S") == "user"}
    assert usernames == {"admin"}


def test_missing_table_and_missing_credentials_say_what_to_set(
    moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    missing = first_admin("dynamodb://missing-table", env)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: DynamoDB table 'missing-table' does not exist")
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr and missing.stdout == ""

    # no credentials anywhere: no keys, no profile files, no instance metadata
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    no_credentials = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    anonymous = first_admin("dynamodb://aios-test-data", no_credentials)
    assert anonymous.returncode == 1
    assert anonymous.stderr.startswith("error: no AWS credentials: set AWS_PROFILE")
    assert len(anonymous.stderr.strip().splitlines()) == 1
    assert anonymous.stdout == ""
