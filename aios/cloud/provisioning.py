"""Provisioning a connector on AWS IoT Core (and its cameras' Kinesis video streams).

:func:`provision_connector` makes everything a connector needs to reach the platform, and
can be run again at any time (idempotent: what exists is reused, nothing is duplicated):

1. the **thing** (name = the connector id; attributes ``aios_kind=connector``,
   ``aios_stage=<stage>`` and any given);
2. the **connector policy** (``infra/iot/connector-policy.json`` rendered for the account,
   :mod:`aios.cloud.iot_policy`): created if missing; a different document becomes a new
   default version only with ``update_policy`` (otherwise a clear error);
3. a **certificate** and key pair (``CreateKeysAndCertificate``, active), the policy
   attached to it and it attached to the thing. The private key exists only in the output
   folder (mode 0600): a thing that already has a certificate whose key is not there is an
   error, unless ``new_certificate`` issues another one;
4. optionally a **Kinesis video stream** per camera (named by
   :func:`aios.cloud.kvs_media.kvs_stream_name` from the name prefix, stage, connector and
   camera), tagged ``aios:connector=<thing>``;
5. the files of the connector, in the output folder: ``<thing>.cert.pem``,
   ``<thing>.private.key``, ``<thing>.cert.json`` (certificate id and ARN),
   ``AmazonRootCA1.pem`` (Amazon Trust Services' root, which signs IoT Core's ATS
   endpoints; copied from the certifi bundle when available, else the file says where to
   get it), and ``connector.yaml``: its link at ``mqtts://<iot:Data-ATS endpoint>:8883``
   with client id = thing name, mTLS with those files, and the ``kvs`` section for video
   upload when cameras are given. An existing ``connector.yaml`` keeps everything else
   (cameras, PLCs…); cameras given that it lists get ``kvs_upload: true``.

Everything that can be checked is checked before AWS is changed (names, the output folder,
the thing's stage, the policy, the role alias, the key of an existing certificate). Errors
(:class:`ProvisioningError`) say what to change, and for AWS the operation and error code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios.cloud.iot_policy import render_policy
from aios.domain import DEVICE_ID_PATTERN

log = logging.getLogger(__name__)

THING_NAME_PATTERN = r"^[a-zA-Z0-9:_-]{1,128}$"
"""IoT thing names (CreateThing API reference); a connector id must also be one."""

DATA_ENDPOINT_TYPE = "iot:Data-ATS"
CREDENTIALS_ENDPOINT_TYPE = "iot:CredentialProvider"
MQTT_PORT = 8883

AMAZON_ROOT_CA = "AmazonRootCA1.pem"
AMAZON_ROOT_CA_URL = "https://www.amazontrust.com/repository/AmazonRootCA1.pem"
"""Where Amazon Trust Services publishes the root that signs IoT Core's ATS endpoints
(AWS IoT Core developer guide, "CA certificates for server authentication")."""

CONFIG_FILE = "connector.yaml"
MAX_POLICY_VERSIONS = 5
"""IoT keeps at most five versions of a policy (CreatePolicyVersion API reference)."""


class ProvisioningError(RuntimeError):
    """Provisioning cannot go on; the message says why and what to do."""


@dataclass
class ProvisionResult:
    """What :func:`provision_connector` found or made.

    ``created`` lists what this run created or changed (empty on a re-run that found
    everything in place); ``notes`` what the operator should know.
    """

    thing_name: str
    thing_arn: str
    certificate_id: str
    certificate_arn: str
    policy_name: str
    endpoint: str
    credentials_endpoint: str | None
    config_path: Path
    streams: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _clients(region: str | None) -> tuple[Any, Any, Any]:
    import boto3
    from botocore.exceptions import BotoCoreError, NoRegionError

    try:
        session = boto3.session.Session(region_name=region)
        return session.client("iot"), session.client("kinesisvideo"), session.client("sts")
    except NoRegionError as err:
        raise ProvisioningError("no AWS region: set AWS_REGION or pass --region") from err
    except BotoCoreError as err:
        raise ProvisioningError(f"AWS configuration: {err}; check AWS_PROFILE") from err


def _code(err: Exception) -> str:
    response = getattr(err, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _fail(operation: str, err: Exception, hint: str = "") -> ProvisioningError:
    response = getattr(err, "response", None)
    message = (
        str(response.get("Error", {}).get("Message", ""))
        if isinstance(response, dict)
        else str(err)
    )
    text = f"{operation} failed: {_code(err) or type(err).__name__}: {message}".rstrip(": ")
    return ProvisioningError(text + (f"; {hint}" if hint else ""))


def _call(operation: str, fn: Any, hint: str = "", **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except ClientError as err:
        raise _fail(operation, err, hint) from err
    except BotoCoreError as err:
        raise _fail(operation, err, hint or "check the AWS credentials and region") from err


def _missing(fn: Any, **kwargs: Any) -> Any | None:
    """``fn(**kwargs)``, or ``None`` when the resource does not exist."""
    from botocore.exceptions import ClientError

    try:
        return fn(**kwargs)
    except ClientError as err:
        if _code(err) == "ResourceNotFoundException":
            return None
        raise _fail(getattr(fn, "__name__", "call"), err) from err


def _write(path: Path, data: str, *, private: bool = False) -> bool:
    """Write ``data`` if the file differs; ``True`` when written. Private files are
    created with mode 0600 (no moment with wider rights)."""
    if path.exists() and path.read_text(encoding="utf-8") == data:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(data)
    tmp.replace(path)
    return True


def amazon_root_ca() -> str | None:
    """The PEM of "Amazon Root CA 1" from certifi's Mozilla bundle, or ``None``."""
    try:
        import certifi
    except ImportError:
        return None
    text = Path(certifi.where()).read_text(encoding="utf-8")
    match = re.search(
        r'# Label: "Amazon Root CA 1"\n(?:#.*\n)*(-----BEGIN CERTIFICATE-----\n.*?'
        r"-----END CERTIFICATE-----\n)",
        text,
        re.DOTALL,
    )
    return match.group(1) if match else None


def check_thing_name(thing_name: str) -> None:
    """Refuse a name that is not both a connector id (:data:`aios.domain.DEVICE_ID_PATTERN`)
    and an IoT thing name (:data:`THING_NAME_PATTERN`).

    Raises:
        ProvisioningError: the name, and which characters to use.
    """
    if not re.fullmatch(THING_NAME_PATTERN, thing_name) or not re.fullmatch(
        DEVICE_ID_PATTERN, thing_name
    ):
        raise ProvisioningError(
            f"{thing_name!r} cannot be both a connector id and an IoT thing name: use 1 to "
            "128 of letters, digits, '_', '-' and ':' (no '.'), starting with a letter or a "
            "digit; the connector connects with its id as MQTT client id and thing name"
        )


def _load_config(path: Path) -> dict[str, Any]:
    """The mapping in an existing ``connector.yaml`` (empty when there is none)."""
    import yaml

    if not path.exists():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ProvisioningError(f"cannot read {path}: {err}") from err
    except yaml.YAMLError as err:
        raise ProvisioningError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(loaded, dict):
        raise ProvisioningError(f"{path} is not a YAML mapping")
    return loaded


def _check_output_dir(folder: Path, thing: str) -> None:
    """Refuse an output folder that cannot hold this connector's files: a file, under a
    file, not writable, or holding another connector's ``connector.yaml``."""
    if folder.exists() and not folder.is_dir():
        raise ProvisioningError(
            f"the output folder (--out) {folder} is a file: give a folder for the connector's "
            "files (it is created if missing)"
        )
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ProvisioningError(
            f"the output folder (--out) {folder} cannot be made: {existing} is a file"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ProvisioningError(
            f"cannot write into {existing}: give an output folder (--out) you may write to"
        )
    config = folder / CONFIG_FILE
    if config.is_dir():
        raise ProvisioningError(f"{config} is a folder: remove it or use another --out folder")
    owner = dict(_load_config(config).get("connector") or {}).get("id")
    if owner not in (None, thing):
        raise ProvisioningError(
            f"{config} is the configuration of connector {owner!r}, not {thing!r}: "
            "provision into another folder (--out)"
        )


def _stream_names(thing: str, cameras: Sequence[str], *, name_prefix: str, stage: str) -> list[str]:
    """The Kinesis video stream of each camera (:func:`aios.cloud.kvs_media.kvs_stream_name`);
    ProvisioningError when one cannot be named."""
    if not cameras:
        return []
    from aios.cloud.kvs_media import kvs_stream_name  # imports PyAV: only when needed

    names = []
    for camera in cameras:
        try:
            names.append(kvs_stream_name(name_prefix, stage, thing, camera))
        except ValueError as err:
            raise ProvisioningError(
                f"camera {camera!r} cannot have a Kinesis video stream: {err}; use camera ids "
                "of letters, digits, '_', '.' and '-' (and check --name-prefix and --stage)"
            ) from err
    return names


def _key_elsewhere(thing: str, count: int, folder: Path) -> ProvisioningError:
    return ProvisioningError(
        f"thing {thing} already has {count} certificate(s), but the private key "
        f"is not in {folder} ({thing}.private.key): copy the connector's files there, or pass "
        "new_certificate (--new-certificate) to issue another certificate (then revoke "
        "the old one)"
    )


def _has_certificate_files(folder: Path, thing: str) -> bool:
    return all(
        (folder / f"{thing}.{suffix}").exists()
        for suffix in ("cert.json", "cert.pem", "private.key")
    )


def _policy_differs(iot: Any, name: str, document: dict[str, Any]) -> bool:
    found = _missing(iot.get_policy, policyName=name)
    return found is not None and json.loads(found["policyDocument"]) != document


def _policy_conflict(name: str) -> ProvisioningError:
    return ProvisioningError(
        f"IoT policy {name} exists with another document (an older template, or another "
        "account or role alias): pass update_policy (--update-policy) to make this one its "
        "default version, or use another policy name"
    )


def _preflight(
    iot: Any,
    thing: str,
    *,
    stage: str,
    policy_name: str,
    document: dict[str, Any],
    update_policy: bool,
    role_alias: str | None,
    folder: Path,
    new_certificate: bool,
) -> None:
    """Read-only checks in AWS before anything is created: the thing is not another stage's,
    the policy would not be replaced silently, the role alias exists (``None``: no video),
    and a thing with a certificate has its key in the folder."""
    found = _missing(iot.describe_thing, thingName=thing)
    if found is not None:
        other = (found.get("attributes") or {}).get("aios_stage")
        if other not in (None, stage):
            raise ProvisioningError(
                f"thing {thing} belongs to stage {other!r} (its aios_stage attribute), not "
                f"{stage!r}: two stages in one account must not share a connector id; give "
                f"this connector another id, or pass --stage {other} to provision it for its "
                "own stage"
            )
    if not update_policy and _policy_differs(iot, policy_name, document):
        raise _policy_conflict(policy_name)
    if role_alias is not None and _missing(iot.describe_role_alias, roleAlias=role_alias) is None:
        raise ProvisioningError(
            f"IoT role alias {role_alias} does not exist: deploy the stack (it creates the "
            "video upload role alias) or pass the right --role-alias"
        )
    if found is not None and not new_certificate and not _has_certificate_files(folder, thing):
        principals = _call("ListThingPrincipals", iot.list_thing_principals, thingName=thing).get(
            "principals", []
        )
        if principals:
            raise _key_elsewhere(thing, len(principals), folder)


def _ensure_thing(
    iot: Any, name: str, attributes: Mapping[str, str], result: ProvisionResult
) -> str:
    found = _missing(iot.describe_thing, thingName=name)
    if found is None:
        made = _call(
            "CreateThing",
            iot.create_thing,
            thingName=name,
            attributePayload={"attributes": dict(attributes)},
        )
        result.created.append(f"thing {name}")
        return str(made["thingArn"])
    current = found.get("attributes", {}) or {}
    if any(current.get(k) != v for k, v in attributes.items()):
        _call(
            "UpdateThing",
            iot.update_thing,
            thingName=name,
            attributePayload={"attributes": dict(attributes), "merge": True},
        )
        result.created.append(f"thing {name} attributes")
    return str(found["thingArn"])


def _ensure_policy(
    iot: Any, name: str, document: dict[str, Any], update: bool, result: ProvisionResult
) -> None:
    found = _missing(iot.get_policy, policyName=name)
    text = json.dumps(document, indent=2)
    if found is None:
        _call("CreatePolicy", iot.create_policy, policyName=name, policyDocument=text)
        result.created.append(f"policy {name}")
        return
    if json.loads(found["policyDocument"]) == document:
        return
    if not update:
        raise _policy_conflict(name)
    versions = _call("ListPolicyVersions", iot.list_policy_versions, policyName=name)
    old = [v for v in versions.get("policyVersions", []) if not v.get("isDefaultVersion")]
    if len(versions.get("policyVersions", [])) >= MAX_POLICY_VERSIONS and old:
        oldest = min(old, key=lambda v: int(v["versionId"]))
        _call(
            "DeletePolicyVersion",
            iot.delete_policy_version,
            policyName=name,
            policyVersionId=oldest["versionId"],
        )
    _call(
        "CreatePolicyVersion",
        iot.create_policy_version,
        policyName=name,
        policyDocument=text,
        setAsDefault=True,
    )
    result.created.append(f"policy {name} new default version")


def _ensure_certificate(
    iot: Any,
    thing: str,
    *,
    policy: str,
    folder: Path,
    new_certificate: bool,
    result: ProvisionResult,
) -> tuple[str, str]:
    cert_file = folder / f"{thing}.cert.pem"
    key_file = folder / f"{thing}.private.key"
    record_file = folder / f"{thing}.cert.json"
    principals = _call("ListThingPrincipals", iot.list_thing_principals, thingName=thing).get(
        "principals", []
    )
    cert_id = cert_arn = None
    if _has_certificate_files(folder, thing) and not new_certificate:
        try:
            record = json.loads(record_file.read_text(encoding="utf-8"))
            cert_id, cert_arn = str(record["certificateId"]), str(record["certificateArn"])
        except (ValueError, KeyError, TypeError) as err:
            raise ProvisioningError(f"{record_file} is not a certificate record: {err}") from err
        found = _missing(iot.describe_certificate, certificateId=cert_id)
        status = found["certificateDescription"]["status"] if found else "missing"
        if status != "ACTIVE":
            raise ProvisioningError(
                f"the certificate {cert_id} in {folder} is {status} in IoT Core: pass "
                "new_certificate (--new-certificate) to issue another one"
            )
    elif principals and not new_certificate:
        raise _key_elsewhere(thing, len(principals), folder)
    else:
        made = _call("CreateKeysAndCertificate", iot.create_keys_and_certificate, setAsActive=True)
        cert_id, cert_arn = str(made["certificateId"]), str(made["certificateArn"])
        _write(key_file, made["keyPair"]["PrivateKey"], private=True)
        _write(cert_file, made["certificatePem"])
        _write(
            record_file,
            json.dumps({"certificateId": cert_id, "certificateArn": cert_arn}, indent=2) + "\n",
        )
        result.created.append(f"certificate {cert_id}")
    assert cert_id is not None and cert_arn is not None
    attached = _call("ListAttachedPolicies", iot.list_attached_policies, target=cert_arn)
    if policy not in {p["policyName"] for p in attached.get("policies", [])}:
        _call("AttachPolicy", iot.attach_policy, policyName=policy, target=cert_arn)
        result.created.append(f"policy {policy} attached to certificate {cert_id}")
    if cert_arn not in principals:
        _call(
            "AttachThingPrincipal", iot.attach_thing_principal, thingName=thing, principal=cert_arn
        )
        result.created.append(f"certificate {cert_id} attached to thing {thing}")
    return cert_id, cert_arn


def _ensure_streams(
    kvs: Any,
    thing: str,
    streams: Mapping[str, str],
    *,
    retention_hours: int,
    result: ProvisionResult,
) -> None:
    """Create the missing streams of ``streams`` (camera id → stream name)."""
    for camera, name in streams.items():
        result.streams.append(name)
        if _missing(kvs.describe_stream, StreamName=name) is not None:
            continue
        _call(
            "CreateStream",
            kvs.create_stream,
            hint="the caller needs kinesisvideo:CreateStream",
            StreamName=name,
            MediaType="video/h264",
            DataRetentionInHours=retention_hours,
            Tags={"aios:connector": thing, "aios:camera": camera},
        )
        result.created.append(f"stream {name}")


def _connector_config(
    path: Path,
    *,
    thing: str,
    endpoint: str,
    kvs: dict[str, Any] | None,
    cameras: Sequence[str],
    result: ProvisionResult,
) -> None:
    import yaml

    data = _load_config(path)
    connector = dict(data.get("connector") or {})
    if connector.get("id") not in (None, thing):
        raise ProvisioningError(
            f"{path} is the configuration of connector {connector.get('id')!r}, not {thing!r}: "
            "provision into another folder"
        )
    connector["id"] = thing
    data["connector"] = connector
    platform = dict(data.get("platform") or {})
    platform.update(
        {
            "mqtt_url": f"mqtts://{endpoint}:{MQTT_PORT}",
            "client_id": thing,
            "tls": {
                "ca_file": AMAZON_ROOT_CA,
                "cert_file": f"{thing}.cert.pem",
                "key_file": f"{thing}.private.key",
            },
        }
    )
    data["platform"] = platform
    if kvs is not None:
        data["kvs"] = {**dict(data.get("kvs") or {}), **kvs}
    listed = {c.get("id") for c in data.get("cameras") or [] if isinstance(c, dict)}
    for camera in data.get("cameras") or []:
        if isinstance(camera, dict) and camera.get("id") in cameras:
            camera["kvs_upload"] = True
    for camera_id in cameras:
        if camera_id not in listed:
            result.notes.append(
                f"camera {camera_id} has a stream but is not in {path.name}: add it (vendor, "
                "host or url) with kvs_upload: true"
            )
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    from connector.config import ConfigError, parse_config

    try:
        parse_config(text, name=path.name, base=path.parent)
    except ConfigError as err:
        raise ProvisioningError(f"the connector configuration would be invalid: {err}") from err
    if _write(path, text):
        result.created.append(f"configuration {path.name}")


def provision_connector(
    thing_name: str,
    output_dir: Path,
    *,
    policy_name: str,
    role_alias: str,
    stage: str = "dev",
    name_prefix: str = "aios",
    cameras: Sequence[str] = (),
    retention_hours: int = 24,
    attributes: Mapping[str, str] | None = None,
    update_policy: bool = False,
    new_certificate: bool = False,
    region: str | None = None,
    clients: tuple[Any, Any, Any] | None = None,
) -> ProvisionResult:
    """Provision connector ``thing_name`` (see the module doc) into ``output_dir``.

    Args:
        thing_name: the connector id (also its thing name and MQTT client id).
        output_dir: where the connector's files are written (created if needed).
        policy_name: the IoT policy of connectors (one for the fleet).
        role_alias: the IoT role alias of video upload (Kinesis Video credentials).
        stage, name_prefix: the deployment's; name the streams.
        cameras: camera ids to create Kinesis video streams for (and to enable upload of).
        retention_hours: the streams' retention (0: no archive).
        attributes: more thing attributes.
        update_policy: make the rendered policy the default version of an existing one.
        new_certificate: issue a new certificate even if the thing has one.
        region: the AWS region (default: the environment's).
        clients: ``(iot, kinesisvideo, sts)`` boto3 clients (default: made for ``region``).

    Inputs are checked before AWS is changed: the names (thing, every camera's stream),
    the output folder (a folder, writable, not another connector's), then in AWS by reads
    only: the thing is not another stage's (attribute ``aios_stage``), the policy, the role
    alias (with cameras) and the key of an existing certificate.

    Raises:
        ProvisioningError: an invalid name, an unusable output folder, a thing of another
            stage, a refused AWS call (operation, code, message), a certificate whose key is
            not at hand, a policy that differs, or a configuration that would not validate.
    """
    check_thing_name(thing_name)
    if not 0 <= retention_hours <= 87_600:
        raise ProvisioningError("retention_hours must be 0..87600 (10 years)")
    output_dir = Path(output_dir).expanduser()
    _check_output_dir(output_dir, thing_name)
    streams = dict(
        zip(
            cameras,
            _stream_names(thing_name, cameras, name_prefix=name_prefix, stage=stage),
            strict=True,
        )
    )
    iot, kvs, sts = clients or _clients(region)
    region = region or iot.meta.region_name
    if not region:
        raise ProvisioningError("no AWS region: set AWS_REGION or pass --region")
    account = str(_call("GetCallerIdentity", sts.get_caller_identity)["Account"])
    document = render_policy(region=region, account=account, role_alias=role_alias)
    _preflight(
        iot,
        thing_name,
        stage=stage,
        policy_name=policy_name,
        document=document,
        update_policy=update_policy,
        role_alias=role_alias if cameras else None,
        folder=output_dir,
        new_certificate=new_certificate,
    )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ProvisioningError(f"cannot make the output folder {output_dir}: {err}") from err
    result = ProvisionResult(
        thing_name=thing_name,
        thing_arn="",
        certificate_id="",
        certificate_arn="",
        policy_name=policy_name,
        endpoint="",
        credentials_endpoint=None,
        config_path=output_dir / CONFIG_FILE,
    )
    attrs = {"aios_kind": "connector", "aios_stage": stage, **(attributes or {})}
    result.thing_arn = _ensure_thing(iot, thing_name, attrs, result)
    _ensure_policy(iot, policy_name, document, update_policy, result)
    result.certificate_id, result.certificate_arn = _ensure_certificate(
        iot,
        thing_name,
        policy=policy_name,
        folder=output_dir,
        new_certificate=new_certificate,
        result=result,
    )
    result.endpoint = str(
        _call("DescribeEndpoint", iot.describe_endpoint, endpointType=DATA_ENDPOINT_TYPE)[
            "endpointAddress"
        ]
    )
    kvs_section: dict[str, Any] | None = None
    if cameras:
        result.credentials_endpoint = str(
            _call(
                "DescribeEndpoint",
                iot.describe_endpoint,
                endpointType=CREDENTIALS_ENDPOINT_TYPE,
            )["endpointAddress"]
        )
        _ensure_streams(kvs, thing_name, streams, retention_hours=retention_hours, result=result)
        kvs_section = {
            "region": region,
            "name_prefix": name_prefix,
            "stage": stage,
            "credentials": "iot",
            "credentials_endpoint": result.credentials_endpoint,
            "role_alias": role_alias,
        }
    ca = amazon_root_ca()
    ca_path = output_dir / AMAZON_ROOT_CA
    if ca is not None:
        if _write(ca_path, ca):
            result.created.append(AMAZON_ROOT_CA)
    elif not ca_path.exists():
        result.notes.append(
            f"download {AMAZON_ROOT_CA} from {AMAZON_ROOT_CA_URL} into {output_dir} "
            "(the root that signs IoT Core's ATS endpoint)"
        )
    _connector_config(
        result.config_path,
        thing=thing_name,
        endpoint=result.endpoint,
        kvs=kvs_section,
        cameras=cameras,
        result=result,
    )
    with contextlib.suppress(OSError):
        os.chmod(output_dir / f"{thing_name}.private.key", 0o600)
    return result
