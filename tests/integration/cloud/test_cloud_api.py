"""The API function (``functions/api.py``) end to end on moto: API Gateway REST proxy events
in, DynamoDB, S3, Secrets Manager, IoT Core and Step Functions behind it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from cloud_functions import REGION, Answer, Deployment, answer, api_event, deploy
from moto.core import DEFAULT_ACCOUNT_ID
from moto.iotdata.models import iotdata_backends

from aios.api.auth import issue_upload_grant, load_jwt_secret
from aios.cloud import env
from aios.domain import Run, RunStatus
from aios.runs.media import media_key

API = "/api/v1"

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
"""Bytes with a JPEG's signature (the routes check the signature only)."""

TOKEN_VALUE = "123456789:AAH-telegram-bot-token-ZXCV"


def timer_pipeline(name: str) -> dict[str, Any]:
    """An event-only pipeline: timer → dashboard."""
    return {
        "name": name,
        "nodes": [
            {"id": "tick", "type": "aios/timer@1", "config": {"interval_seconds": 3600}},
            {"id": "dash", "type": "aios/dashboard@1", "config": {"panel": "Ticks"}},
        ],
        "edges": [
            {
                "source": "tick",
                "sourceHandle": "events",
                "target": "dash",
                "targetHandle": "events",
            }
        ],
    }


class Site:
    """The deployed API, called as API Gateway calls it, and its first admin."""

    def __init__(self, deployment: Deployment) -> None:
        from aios.api.auth import ensure_first_admin

        self.deployment = deployment
        # What the deployment script does once: the first admin account, as `aios up` makes it.
        password = ensure_first_admin(deployment.services())
        assert password is not None
        self.admin_password = password

    def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        raw = self.deployment.invoke("ApiFunction", api_event(method, f"{API}{path}", **kwargs))
        return answer(raw)

    def login(self) -> dict[str, Any]:
        res = self.call(
            "POST", "/auth/login", body={"username": "admin", "password": self.admin_password}
        )
        assert res.status == 200, res.text
        return res.json()  # type: ignore[no-any-return]


@pytest.fixture
def site(moto: None) -> Iterator[Site]:
    """The API without a lifecycle state machine (no run launcher)."""
    yield Site(deploy({"ApiFunction"}, unset={env.LIFECYCLE_STATE_MACHINE_ARN}))


def test_login_devices_and_pipeline_revisions(site: Site) -> None:
    """First admin signs in; devices are created, changed (the desired configuration goes
    to the device through IoT Core, retained) and deleted; a pipeline gets revisions; Play
    without a lifecycle state machine is a clear 503."""
    # sign in: the password of the first admin; then the token works, a wrong one is 401
    assert site.call("GET", "/devices").status == 401
    tokens = site.login()
    token = tokens["access_token"]
    assert tokens["refresh_token"] and tokens["expires_in"] > 0
    me = site.call("GET", "/auth/me", token=token).json()
    assert (me["username"], me["role"]) == ("admin", "admin")
    refreshed = site.call("POST", "/auth/refresh", body={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status == 200 and refreshed.json()["access_token"] != token
    assert site.call("GET", "/auth/me", token=token + "x").status == 401
    # what the gateway's authorizer said is not taken on trust: the API checks the token
    trusting = api_event("GET", f"{API}/auth/me", token="forged")
    trusting["requestContext"]["authorizer"] = {
        "principalId": me["id"],
        "role": "admin",
        "username": "admin",
    }
    assert answer(site.deployment.invoke("ApiFunction", trusting)).status == 401
    # device CRUD
    created = site.call(
        "POST",
        "/devices",
        token=token,
        body={"id": "conn-1", "name": "Gate connector", "kind": "connector", "site": "North"},
    )
    assert created.status == 201, created.text
    assert created.json()["status"] == "offline"  # never seen
    changed = site.call("PUT", "/devices/conn-1", token=token, body={"name": "Gate 1"})
    assert changed.status == 200 and changed.json()["name"] == "Gate 1"
    listed = site.call("GET", "/devices", token=token).json()["items"]
    assert [d["id"] for d in listed] == ["conn-1"]
    # the desired configuration is published, retained, on the device's cfg topic
    config = site.call(
        "PUT", "/devices/conn-1/config", token=token, body={"config": {"cameras": []}}
    )
    assert config.status in (200, 202), config.text
    published = iotdata_backends[DEFAULT_ACCOUNT_ID][REGION].published_payloads
    assert [topic for topic, _ in published] == ["cfg/aios/conn-1/desired"]
    desired = json.loads(published[0][1])
    assert (desired["device_id"], desired["version"], desired["config"]) == (
        "conn-1",
        1,
        {"cameras": []},
    )
    # stored in the DataTable
    assert site.deployment.services().store.devices.get("conn-1") is not None
    assert site.call("DELETE", "/devices/conn-1", token=token).status == 204
    assert site.call("GET", "/devices/conn-1", token=token).status == 404
    # pipeline: create (revision 1), save (revision 2)
    pipeline = site.call("POST", "/pipelines", token=token, body=timer_pipeline("Ticks"))
    assert pipeline.status == 201, pipeline.text
    pid = pipeline.json()["id"]
    saved = site.call(
        "PUT",
        f"/pipelines/{pid}",
        token=token,
        body={"expected_revision": 1, "document": timer_pipeline("Ticks v2")},
    )
    assert saved.status == 200 and saved.json()["latest_revision"] == 2
    revisions = site.call("GET", f"/pipelines/{pid}/revisions", token=token).json()["items"]
    assert [r["revision"] for r in revisions] == [2, 1]
    # Play: no lifecycle state machine configured → 503, said clearly
    play = site.call("POST", f"/pipelines/{pid}/execute", token=token)
    assert play.status == 503, play.text
    assert play.json()["error"]["code"] == "runs_unavailable"


def _lifecycle_machine() -> str:
    """A stand-in lifecycle state machine (one Pass state): Play only has to start it."""
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(
        RoleName="lifecycle-test",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    return str(
        boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name="lifecycle-test", definition=json.dumps(definition), roleArn=role
        )["stateMachineArn"]
    )


def test_play_starts_the_lifecycle_execution(moto: None) -> None:
    """With the lifecycle state machine configured, Play records a run and starts one
    execution named after it, with the run's pipeline and revision as input."""
    deployment = deploy({"ApiFunction"})
    # The lifecycle itself runs elsewhere (its tests bind its tasks); a stand-in machine
    # shows what Play starts.
    machine = _lifecycle_machine()
    deployment.extra[env.LIFECYCLE_STATE_MACHINE_ARN] = machine
    site = Site(deployment)
    token = site.login()["access_token"]
    pid = site.call("POST", "/pipelines", token=token, body=timer_pipeline("Ticks")).json()["id"]
    play = site.call("POST", f"/pipelines/{pid}/execute", token=token)
    assert play.status == 202, play.text
    run = play.json()
    assert (run["pipeline_id"], run["revision"], run["status"]) == (pid, 1, "starting")
    sfn = boto3.client("stepfunctions", region_name=REGION)
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions] == [run["id"]]
    started = json.loads(
        sfn.describe_execution(executionArn=executions[0]["executionArn"])["input"]
    )
    assert (started["run_id"], started["pipeline_id"], started["revision"]) == (run["id"], pid, 1)


def test_media_are_read_from_and_uploaded_to_s3(site: Site) -> None:
    """Snapshots in the media bucket are served by the media route; a connector's upload
    (with the run's upload grant) lands in the bucket under the same key."""
    token = site.login()["access_token"]
    services = site.deployment.services()
    run = services.store.runs.create(Run(pipeline_id="pl_1", revision=1, status=RunStatus.RUNNING))
    s3 = boto3.client("s3", region_name=REGION)
    bucket = site.deployment.bucket
    s3.put_object(Bucket=bucket, Key=media_key(run.id, "snapshots", "ev_1.jpg"), Body=JPEG)
    got = site.call("GET", f"/runs/{run.id}/media/snapshots/ev_1.jpg", token=token)
    assert got.status == 200, got.text
    assert got.headers["content-type"] == "image/jpeg"
    assert got.raw["isBase64Encoded"] is True
    assert base64.b64decode(got.raw["body"]) == JPEG
    missing = site.call("GET", f"/runs/{run.id}/media/snapshots/ev_2.jpg", token=token)
    assert missing.status == 404
    # upload with the run's grant
    grant = issue_upload_grant(
        load_jwt_secret(services.settings),
        run_id=run.id,
        connector_id="conn-1",
        issuer=services.settings.jwt_issuer,
        now=datetime.now(UTC),
    )
    path = f"/runs/{run.id}/media/snapshots/ev_3.jpg"
    headers = {"Content-Type": "image/jpeg"}
    up = site.call("PUT", path, token=grant, binary=JPEG, headers=headers)
    assert up.status == 201, up.text
    key = media_key(run.id, "snapshots", "ev_3.jpg")
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == JPEG and stored["ContentType"] == "image/jpeg"
    again = site.call("PUT", path, token=grant, binary=JPEG, headers=headers)
    assert again.status == 200, again.text  # same bytes: nothing written
    assert site.call("GET", path, token=token).status == 200
    # an access token is not an upload grant
    assert site.call("PUT", path, token=token, binary=JPEG, headers=headers).status == 401


def test_integration_secrets_live_in_secrets_manager(site: Site) -> None:
    """A secret set from the console is a Secrets Manager secret under the stage's prefix;
    the API shows it masked and never returns the value; it is not in the DataTable."""
    token = site.login()["access_token"]
    res = site.call(
        "PUT", "/integrations/telegram_bot_token", token=token, body={"value": TOKEN_VALUE}
    )
    assert res.status == 200, res.text
    assert TOKEN_VALUE not in res.text
    shown = res.json()
    assert (shown["set"], shown["source"], shown["hint"]) == (True, "store", "ZXCV")
    assert shown["masked"].endswith("ZXCV") and shown["updated_by"] == "admin"
    prefix = site.deployment.environment("ApiFunction")[env.INTEGRATION_SECRET_PREFIX]
    sm = boto3.client("secretsmanager", region_name=REGION)
    value = sm.get_secret_value(SecretId=f"{prefix}telegram_bot_token")["SecretString"]
    assert value == TOKEN_VALUE
    listed = site.call("GET", "/integrations", token=token)
    assert listed.status == 200 and TOKEN_VALUE not in listed.text
    item = next(i for i in listed.json()["items"] if i["name"] == "telegram_bot_token")
    assert (item["set"], item["stored"], item["hint"]) == (True, True, "ZXCV")
    # the DataTable holds no copy of it (nor does the audit log)
    ddb = boto3.client("dynamodb", region_name=REGION)
    items = ddb.scan(TableName=site.deployment.table)["Items"]
    assert items and TOKEN_VALUE not in json.dumps(items)
    # the pipelines' nodes read it through the store's secrets
    assert site.deployment.services().store.secrets.get("telegram_bot_token") == TOKEN_VALUE
    # cleared: gone from Secrets Manager
    assert site.call("DELETE", "/integrations/telegram_bot_token", token=token).status == 204
    names = [s["Name"] for s in sm.list_secrets()["SecretList"]]
    assert f"{prefix}telegram_bot_token" not in names
    assert site.call("DELETE", "/integrations/telegram_bot_token", token=token).status == 404
