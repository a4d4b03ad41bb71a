"""Provisioning a connector in moto's IoT: thing, active certificate, the connector policy
attached to it, the thing attached, streams, files and a connector.yaml that the connector
accepts; a second run changes nothing; and the policy IoT now holds keeps each connector to
its own topics."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.iot.models import IoTBackend
from typer.testing import CliRunner

from aios.cloud.cli import app as cloud_app
from aios.cloud.iot_policy import check
from aios.cloud.provisioning import ProvisioningError, provision_connector
from connector.config import load_config

REGION = "us-east-1"
POLICY = "aios-test-connector"
ALIAS = "aios-test-kvs"


@pytest.fixture
def stable_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """An account has one IoT endpoint per type (DescribeEndpoint answers the same address
    every time); moto makes a new random one per call: keep the first per type."""
    original = IoTBackend.describe_endpoint

    def describe_endpoint(self: IoTBackend, endpoint_type: str) -> Any:
        cache = self.__dict__.setdefault("_stable_endpoints", {})
        if endpoint_type not in cache:
            cache[endpoint_type] = original(self, endpoint_type)
        return cache[endpoint_type]

    monkeypatch.setattr(IoTBackend, "describe_endpoint", describe_endpoint)


@pytest.fixture
def role_alias(moto: None, stable_endpoints: None) -> str:
    """The video upload role and its IoT role alias, as the stack makes them."""
    iam = boto3.client("iam")
    role = iam.create_role(
        RoleName="aios-test-kvs-upload",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "credentials.iot.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]
    boto3.client("iot").create_role_alias(roleAlias=ALIAS, roleArn=role["Arn"])
    return ALIAS


def provision(out: Path, **kwargs: Any) -> Any:
    values: dict[str, Any] = {
        "policy_name": POLICY,
        "role_alias": ALIAS,
        "stage": "test",
        "cameras": ["cam-gate"],
    }
    values.update(kwargs)
    return provision_connector("site1-gw", out, **values)


def test_provisioning_creates_thing_certificate_policy_streams_and_config(
    role_alias: str, tmp_path: Path
) -> None:
    out = tmp_path / "site1-gw"
    result = provision(out)
    iot = boto3.client("iot")

    thing = iot.describe_thing(thingName="site1-gw")
    assert thing["attributes"] == {"aios_kind": "connector", "aios_stage": "test"}
    cert = iot.describe_certificate(certificateId=result.certificate_id)["certificateDescription"]
    assert cert["status"] == "ACTIVE"
    attached = iot.list_attached_policies(target=result.certificate_arn)["policies"]
    assert [p["policyName"] for p in attached] == [POLICY]
    assert iot.list_thing_principals(thingName="site1-gw")["principals"] == [result.certificate_arn]
    stream = boto3.client("kinesisvideo").describe_stream(StreamName="aios-test-site1-gw.cam-gate")
    assert stream["StreamInfo"]["MediaType"] == "video/h264"
    assert result.streams == ["aios-test-site1-gw.cam-gate"]

    # the files: certificate, private key (0600), the Amazon root, the configuration
    assert (out / "site1-gw.cert.pem").read_text() == cert["certificatePem"]
    key = out / "site1-gw.private.key"
    assert key.read_text().startswith("-----BEGIN")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "BEGIN CERTIFICATE" in (out / "AmazonRootCA1.pem").read_text()

    config = load_config(out / "connector.yaml")
    endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert config.connector.id == "site1-gw"
    assert config.platform.mqtt_url == f"mqtts://{endpoint}:8883"
    assert config.platform.client_id == "site1-gw"
    assert config.platform.tls is not None
    assert config.platform.tls.cert_file == out / "site1-gw.cert.pem"
    assert config.platform.tls.key_file == key
    assert config.platform.tls.ca_file == out / "AmazonRootCA1.pem"
    assert config.kvs is not None
    assert (config.kvs.region, config.kvs.role_alias, config.kvs.stage) == (REGION, ALIAS, "test")
    assert config.kvs.credentials_endpoint == result.credentials_endpoint
    assert result.notes == [
        "camera cam-gate has a stream but is not in connector.yaml: add it (vendor, host or "
        "url) with kvs_upload: true"
    ]

    # the policy IoT holds for this certificate keeps the connector to its own topics
    document = json.loads(iot.get_policy(policyName=POLICY)["policyDocument"])
    account = boto3.client("sts").get_caller_identity()["Account"]

    def allowed(action: Any, target: str, client_id: str = "site1-gw") -> bool:
        return check(
            document,
            action,
            target,
            client_id=client_id,
            attached_things=["site1-gw"],
            region=REGION,
            account=account,
        ).allowed

    assert allowed("connect", "site1-gw")
    assert allowed("publish", "dt/aios/site1-gw/events")
    assert allowed("subscribe", "cmd/aios/site1-gw/req")
    assert allowed("assume-role", ALIAS)
    assert not allowed("connect", "site2-gw", client_id="site2-gw")
    assert not allowed("publish", "dt/aios/site2-gw/events")
    assert not allowed("subscribe", "dt/aios/+/events")


def test_provisioning_again_changes_nothing(role_alias: str, tmp_path: Path) -> None:
    out = tmp_path / "gw"
    first = provision(out)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    again = provision(out)
    assert again.created == []
    assert (again.certificate_id, again.certificate_arn) == (
        first.certificate_id,
        first.certificate_arn,
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    iot = boto3.client("iot")
    assert len(iot.list_certificates()["certificates"]) == 1
    assert len(iot.list_policy_versions(policyName=POLICY)["policyVersions"]) == 1
    assert len(boto3.client("kinesisvideo").list_streams()["StreamInfoList"]) == 1


def test_existing_configuration_is_kept_and_cameras_enabled(
    role_alias: str, tmp_path: Path
) -> None:
    out = tmp_path / "gw"
    out.mkdir()
    (out / "connector.yaml").write_text(
        "connector: {id: site1-gw, name: Gate house}\n"
        "heartbeat_seconds: 15\n"
        "cameras:\n"
        "  - {id: cam-gate, vendor: hikvision, host: 10.0.0.21, stream: sub}\n"
        "  - {id: cam-yard, url: yard.mp4}\n"
    )
    provision(out)
    config = load_config(out / "connector.yaml")
    assert config.connector.name == "Gate house" and config.heartbeat_seconds == 15
    assert [(c.id, c.kvs_upload) for c in config.cameras] == [
        ("cam-gate", True),
        ("cam-yard", False),
    ]
    assert config.platform.client_id == "site1-gw"


def test_clear_errors(role_alias: str, tmp_path: Path) -> None:
    with pytest.raises(ProvisioningError, match=r"no '\.'"):
        provision_connector("site1.gw", tmp_path, policy_name=POLICY, role_alias=ALIAS)
    provision(tmp_path / "a")
    # the thing has a certificate whose key is elsewhere
    with pytest.raises(ProvisioningError, match="already has 1 certificate"):
        provision(tmp_path / "b")
    renewed = provision(tmp_path / "b", new_certificate=True)
    assert len(boto3.client("iot").list_thing_principals(thingName="site1-gw")["principals"]) == 2
    assert renewed.certificate_id in (tmp_path / "b" / "site1-gw.cert.json").read_text()
    # a policy of the same name with another document is not silently replaced
    with pytest.raises(ProvisioningError, match="exists with another document"):
        provision(tmp_path / "b", role_alias="another-alias", cameras=[])
    # a missing role alias, when video upload is asked for
    with pytest.raises(ProvisioningError, match="role alias missing-alias does not exist"):
        provision(tmp_path / "b", role_alias="missing-alias", update_policy=True)


def test_cli_provisions_and_checks_the_policy(role_alias: str, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["provision-connector", "site1-gw", "--out", str(tmp_path / "gw")]
    args += ["--policy-name", POLICY, "--role-alias", ALIAS, "--stage", "test", "--json"]
    result = runner.invoke(cloud_app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["thing_name"] == "site1-gw"
    again = runner.invoke(cloud_app, args[:-1])
    assert again.exit_code == 0 and "nothing to change" in again.output

    base = ["check-policy", "--thing", "site1-gw", "--action", "publish"]
    ok = runner.invoke(cloud_app, [*base, "--target", "dt/aios/site1-gw/events"])
    assert ok.exit_code == 0 and ok.output.startswith("ALLOW")
    denied = runner.invoke(cloud_app, [*base, "--target", "dt/aios/site2-gw/events"])
    assert denied.exit_code == 1 and denied.output.startswith("DENY")
    bad = runner.invoke(cloud_app, [*base[:-1], "fly", "--target", "x"])
    assert bad.exit_code == 2


def aws_is_untouched() -> None:
    iot = boto3.client("iot")
    assert iot.list_things()["things"] == []
    assert iot.list_certificates()["certificates"] == []
    assert boto3.client("kinesisvideo").list_streams()["StreamInfoList"] == []


def refused(args: list[str]) -> str:
    """Run the CLI, expect exit 2 and exactly one ``error:`` line; that line."""
    result = CliRunner().invoke(cloud_app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_bad_inputs_are_refused_before_aws_is_changed(role_alias: str, tmp_path: Path) -> None:
    base = ["provision-connector", "site1-gw", "--policy-name", POLICY, "--role-alias", ALIAS]
    base += ["--stage", "test"]
    # a folder of another connector: nothing created, no key written into it
    other = tmp_path / "other"
    other.mkdir()
    (other / "connector.yaml").write_text("connector: {id: site2-gw}\n")
    line = refused([*base, "--out", str(other), "--camera", "cam-gate"])
    assert "connector 'site2-gw', not 'site1-gw'" in line and "another folder" in line
    assert sorted(p.name for p in other.iterdir()) == ["connector.yaml"]
    aws_is_untouched()
    # a camera id that cannot name a stream
    line = refused([*base, "--out", str(tmp_path / "gw"), "--camera", "cam/1"])
    assert "camera 'cam/1'" in line
    aws_is_untouched()
    # --out is a file, or under one
    (tmp_path / "file").write_text("x")
    assert "is a file" in refused([*base, "--out", str(tmp_path / "file")])
    assert "is a file" in refused([*base, "--out", str(tmp_path / "file" / "gw")])
    aws_is_untouched()
    # a connector id with ':' cannot start its streams' names
    colon = ["provision-connector", "site:gw", *base[2:], "--out", str(tmp_path / "gw")]
    assert "':'" in refused([*colon, "--camera", "cam-gate"])
    aws_is_untouched()
    assert not (tmp_path / "gw").exists()


def test_a_thing_of_another_stage_is_refused(role_alias: str, tmp_path: Path) -> None:
    iot = boto3.client("iot")
    attributes = {"aios_kind": "connector", "aios_stage": "prod"}
    iot.create_thing(thingName="site1-gw", attributePayload={"attributes": attributes})
    with pytest.raises(ProvisioningError, match="two stages in one account must not share"):
        provision(tmp_path / "gw")
    assert iot.describe_thing(thingName="site1-gw")["attributes"] == attributes
    assert iot.list_certificates()["certificates"] == []
    assert iot.list_policies()["policies"] == []
    assert not (tmp_path / "gw").exists()


def test_cli_prints_each_stream_once_and_the_real_start_command(
    role_alias: str, tmp_path: Path
) -> None:
    out = tmp_path / "gw"
    args = ["provision-connector", "site1-gw", "--out", str(out), "--policy-name", POLICY]
    args += ["--role-alias", ALIAS, "--stage", "test", "--camera", "cam-gate"]
    from aios.cloud.kvs_media import kvs_stream_name

    stream = kvs_stream_name("aios", "test", "site1-gw", "cam-gate")
    for _ in range(2):  # creating, then finding it all in place
        result = CliRunner().invoke(cloud_app, args)
        assert result.exit_code == 0, result.output
        assert result.output.count(stream) == 1, result.output
        config = out / "connector.yaml"
        assert f"start it with: aios-connector --config {config}\n" in result.output
        assert "aios-connector run" not in result.output


def test_check_policy_refuses_an_invalid_thing_name() -> None:
    args = ["check-policy", "--thing", "a/b", "--action", "publish", "--target", "dt/aios/a/b"]
    assert "'a/b' cannot be both a connector id and an IoT thing name" in refused(args)
