"""The cloud adapters on moto: IoT Core link (``aios.cloud.iot``), S3 blobs and run media
(``aios.cloud.s3``), integration secrets on Secrets Manager (``aios.cloud.secrets``) and the
services a function builds from its environment (``aios.cloud.services``)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from cloud_functions import IOT_DATA_ENDPOINT, REGION
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends

from aios.cloud import env
from aios.cloud.iot import IotDataLink
from aios.cloud.s3 import S3BlobStore, S3MediaStore
from aios.cloud.secrets import SecretsManagerSecretStore
from aios.cloud.services import cloud_services, reset_caches
from aios.config import Settings
from aios.runs.media import (
    FolderMediaStore,
    MediaNotFound,
    MediaTooLarge,
    media_key,
    open_media_store,
)
from aios.store.dynamodb import DynamoStore, create_table

JPEG = b"\xff\xd8\xff\xe0" + b"snapshot" * 100
PREFIX = "aios/test/integrations/"


def at(minute: int) -> datetime:
    return datetime(2026, 3, 1, 9, minute, tzinfo=UTC)


# ---------------------------------------------------------------------------- IoT Core


def test_iot_link_publishes_json_at_qos1_retained_when_asked(moto: None) -> None:
    """Publish goes to iot-data with the payload as compact JSON, qos=1, retain as asked."""
    link = IotDataLink(IOT_DATA_ENDPOINT)
    requests: list[dict[str, Any]] = []

    def record(request: Any, **_: Any) -> None:
        query = parse_qs(urlsplit(request.url).query)
        requests.append({"url": request.url, "query": query, "body": request.body})

    link._data_client().meta.events.register("request-created.iot-data.Publish", record)
    desired = {"device_id": "conn-1", "version": 3, "time": at(0), "config": {"cameras": []}}
    link.publish("cfg/aios/conn-1/desired", desired, retain=True)
    link.publish("cmd/aios/conn-1/req", {"request_id": "req-1", "name": "reboot"})
    published = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION].published_payloads
    assert [topic for topic, _ in published] == ["cfg/aios/conn-1/desired", "cmd/aios/conn-1/req"]
    assert json.loads(published[0][1]) == {**desired, "time": "2026-03-01T09:00:00+00:00"}
    assert [(r["query"]["qos"], r["query"].get("retain")) for r in requests] == [
        (["1"], ["true"]),
        (["1"], ["false"]),
    ]
    assert all(r["url"].startswith(IOT_DATA_ENDPOINT + "/topics/") for r in requests)
    with pytest.raises(TypeError):
        link.publish("cmd/aios/conn-1/req", {"not json": object()})


def test_iot_link_endpoint_from_environment_or_described(
    moto: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``AIOS_IOT_DATA_ENDPOINT`` (with or without scheme), else DescribeEndpoint's ATS one."""
    monkeypatch.setenv(env.IOT_DATA_ENDPOINT, "abc123-ats.iot.us-east-1.amazonaws.com")
    assert (
        IotDataLink.from_environment().endpoint == "https://abc123-ats.iot.us-east-1.amazonaws.com"
    )
    monkeypatch.delenv(env.IOT_DATA_ENDPOINT)
    described = boto3.client("iot", region_name=REGION).describe_endpoint(
        endpointType="iot:Data-ATS"
    )["endpointAddress"]
    endpoint = IotDataLink.from_environment().endpoint
    assert endpoint.startswith("https://") and endpoint.endswith("-ats.iot.us-east-1.amazonaws.com")
    assert len(endpoint) == len(f"https://{described}")


# ---------------------------------------------------------------------------- S3


@pytest.fixture
def bucket(moto: None) -> str:
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="aios-test-media")
    return "aios-test-media"


def test_blob_store_writes_under_its_prefix_and_reads_keys(bucket: str) -> None:
    """References are bucket keys (or s3:// URLs); a missing blob is FileNotFoundError, an
    S3 failure an OSError (what the nodes map to permanent and transient errors)."""
    blobs = S3BlobStore(bucket, prefix="runs/run_1/media/")
    ref = blobs.write("snapshots/ev_1.cv.jpg", JPEG)
    assert ref == "runs/run_1/media/snapshots/ev_1.cv.jpg"
    assert blobs.read(ref) == JPEG
    assert blobs.read(f"s3://{bucket}/{ref}") == JPEG
    s3 = boto3.client("s3", region_name=REGION)
    assert s3.head_object(Bucket=bucket, Key=ref)["ContentType"] == "image/jpeg"
    with pytest.raises(FileNotFoundError):
        blobs.read("runs/run_1/media/snapshots/none.jpg")
    with pytest.raises(FileNotFoundError):
        blobs.read("s3://")
    gone = S3BlobStore("no-such-bucket")
    with pytest.raises(OSError) as failed:
        gone.write("x.jpg", JPEG)
    assert "NoSuchBucket" in str(failed.value)


def test_media_store_reads_and_writes_run_media_by_key(bucket: str) -> None:
    """The keys of :func:`aios.runs.media.media_key`; names and run ids checked; size
    limit; an identical upload writes nothing."""
    media = S3MediaStore(bucket)
    s3 = boto3.client("s3", region_name=REGION)
    assert media.write("run_1", "snapshots", "ev_1.jpg", JPEG) is True
    key = media_key("run_1", "snapshots", "ev_1.jpg")
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == JPEG and stored["ContentType"] == "image/jpeg"
    assert media.read("run_1", "snapshots", "ev_1.jpg", max_bytes=10_000) == JPEG
    modified = s3.head_object(Bucket=bucket, Key=key)["LastModified"]
    assert media.write("run_1", "snapshots", "ev_1.jpg", JPEG) is False
    assert s3.head_object(Bucket=bucket, Key=key)["LastModified"] == modified
    assert media.write("run_1", "snapshots", "ev_1.jpg", JPEG + b"!") is True
    with pytest.raises(MediaTooLarge) as large:
        media.read("run_1", "snapshots", "ev_1.jpg", max_bytes=100)
    assert (large.value.size, large.value.limit) == (len(JPEG) + 1, 100)
    for run_id, kind, name in [
        ("run_1", "snapshots", "ev_2.jpg"),  # absent
        ("run_1", "clips", "ev_1.jpg"),  # wrong extension for the kind
        ("../run_1", "snapshots", "ev_1.jpg"),
        ("run_1", "other", "ev_1.jpg"),
        ("run_1", "snapshots", "../ev_1.jpg"),
    ]:
        with pytest.raises(MediaNotFound):
            media.read(run_id, kind, name, max_bytes=10_000)
    with pytest.raises(MediaNotFound):
        media.write("run/1", "snapshots", "ev_1.jpg", JPEG)


def test_open_media_store_chooses_s3_when_a_bucket_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path)
    assert isinstance(open_media_store(settings), FolderMediaStore)
    monkeypatch.setenv(env.MEDIA_BUCKET, "aios-test-media")
    chosen = open_media_store(settings)
    assert isinstance(chosen, S3MediaStore) and chosen.bucket == "aios-test-media"


# ---------------------------------------------------------------------------- Secrets


@pytest.fixture
def secrets(moto: None) -> SecretsManagerSecretStore:
    return SecretsManagerSecretStore(PREFIX)


def test_secrets_contract_on_secrets_manager(
    secrets: SecretsManagerSecretStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The IntegrationSecretStore contract (as the store adapters keep it), each secret a
    Secrets Manager secret named by the prefix, values never listed nor logged (by the
    library; botocore's own DEBUG logs show request bodies: the functions keep botocore at
    INFO, see ``functions/_common.py``)."""
    caplog.set_level(logging.DEBUG, logger="aios")
    token = "EAAG-whatsapp-token-0123456789-wxyz"
    assert secrets.list() == [] and secrets.get("whatsapp_access_token") is None
    info = secrets.put("whatsapp_access_token", token, by="alice", at=at(1))
    assert (info.name, info.updated_by, info.updated_at, info.hint) == (
        "whatsapp_access_token",
        "alice",
        at(1),
        "wxyz",
    )
    short = secrets.put("smtp_password", "hunter2", by=None, at=at(2))
    assert short.hint is None
    assert secrets.get("whatsapp_access_token") == token
    assert secrets.get("smtp_password") == "hunter2"
    listed = secrets.list()
    assert [s.name for s in listed] == ["smtp_password", "whatsapp_access_token"]
    assert all(token not in repr(s) and "hunter2" not in repr(s) for s in listed)
    assert secrets.info("whatsapp_access_token") == info
    sm = boto3.client("secretsmanager", region_name=REGION)
    raw = sm.get_secret_value(SecretId=f"{PREFIX}whatsapp_access_token")["SecretString"]
    assert raw == token  # the value itself: operators can set it with the AWS CLI too
    # replace, then delete
    secrets.put("smtp_password", "a-much-longer-password-9876", by="bob", at=at(3))
    assert secrets.get("smtp_password") == "a-much-longer-password-9876"
    replaced = secrets.info("smtp_password")
    assert replaced is not None and (replaced.updated_by, replaced.hint) == ("bob", "9876")
    assert replaced.updated_at == at(3)
    assert secrets.delete("smtp_password") is True
    assert secrets.delete("smtp_password") is False
    assert secrets.get("smtp_password") is None and secrets.info("smtp_password") is None
    # set again at once (no recovery window blocks the name)
    secrets.put("smtp_password", "hunter3", by=None, at=at(4))
    assert secrets.get("smtp_password") == "hunter3"
    with pytest.raises(ValueError):
        secrets.put("empty", "", by=None, at=at(4))
    with pytest.raises(ValueError):
        secrets.put("huge", "x" * 9000, by=None, at=at(4))
    assert "integration secret smtp_password cleared" in caplog.text
    for value in (token, "hunter2", "hunter3", "a-much-longer-password-9876"):
        assert value not in caplog.text


def test_secrets_outside_the_prefix_or_set_by_operators(
    secrets: SecretsManagerSecretStore,
) -> None:
    """Secrets not under the prefix are not the console's; one created with the AWS CLI
    under it is listed with its change date and no hint."""
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="aios/test/jwt", SecretString="x" * 48)
    sm.create_secret(Name="aios/prod/integrations/smtp_password", SecretString="other-stage")
    sm.create_secret(Name=f"{PREFIX}telegram_bot_token", SecretString="123:ABCDEFGHIJKL")
    listed = secrets.list()
    assert [s.name for s in listed] == ["telegram_bot_token"]
    assert listed[0].hint is None and listed[0].updated_by is None
    assert abs(listed[0].updated_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert secrets.get("telegram_bot_token") == "123:ABCDEFGHIJKL"
    assert secrets.get("smtp_password") is None


# ---------------------------------------------------------------------------- services


@pytest.fixture
def table(moto: None) -> str:
    create_table(boto3.client("dynamodb", region_name=REGION), "aios-test-data")
    return "aios-test-data"


def test_cloud_services_from_the_environment(table: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Store on the DataTable, JWT key from Secrets Manager (read once per container),
    integration secrets on Secrets Manager, IoT link, launcher only with a lifecycle."""
    reset_caches()
    key = "k" * 48
    sm = boto3.client("secretsmanager", region_name=REGION)
    arn = sm.create_secret(Name="aios/test/jwt", SecretString=key)["ARN"]
    monkeypatch.setenv(env.DATABASE_URL, f"dynamodb://{table}")
    monkeypatch.setenv(env.JWT_SECRET_ARN, arn)
    monkeypatch.setenv(env.INTEGRATION_SECRET_PREFIX, PREFIX)
    monkeypatch.setenv(env.IOT_DATA_ENDPOINT, IOT_DATA_ENDPOINT)
    services = cloud_services()
    assert isinstance(services.store, DynamoStore)
    assert services.settings.jwt_secret is not None
    assert services.settings.jwt_secret.get_secret_value() == key
    assert isinstance(services.store.secrets, SecretsManagerSecretStore)
    assert services.store.secrets.prefix == PREFIX
    assert isinstance(services.link, IotDataLink) and services.link.endpoint == IOT_DATA_ENDPOINT
    assert services.launcher is None  # no lifecycle state machine in this environment
    # read once: the secret's later change is not seen by this container
    sm.put_secret_value(SecretId=arn, SecretString="n" * 48)
    assert cloud_services().settings.jwt_secret.get_secret_value() == key  # type: ignore[union-attr]
    # a function that neither issues nor checks tokens does not read it
    assert cloud_services(with_jwt_secret=False).settings.jwt_secret is None
    # a JSON secret (GenerateSecretString with a key) gives its field
    json_arn = sm.create_secret(Name="aios/test/jwt2", SecretString=json.dumps({"secret": key}))[
        "ARN"
    ]
    monkeypatch.setenv(env.JWT_SECRET_ARN, json_arn)
    assert cloud_services().settings.jwt_secret.get_secret_value() == key  # type: ignore[union-attr]
    # with a lifecycle state machine: the Step Functions launcher
    monkeypatch.setenv(
        env.LIFECYCLE_STATE_MACHINE_ARN,
        f"arn:aws:states:{REGION}:{DEFAULT_ACCOUNT_ID}:stateMachine:aios-test-lifecycle",
    )
    launcher = cloud_services().launcher
    assert launcher is not None and type(launcher).__name__ == "StepFunctionsLauncher"
    # without the prefix, the DataTable keeps the integration secrets
    monkeypatch.delenv(env.INTEGRATION_SECRET_PREFIX)
    assert not isinstance(cloud_services().store.secrets, SecretsManagerSecretStore)
