"""The API, authorizer and ingest functions of ``template.yaml`` with their resources, in moto.

:func:`deploy` (inside an active ``mock_aws``) creates the stack with
:class:`cloud_stack.CloudStack` and returns a :class:`Deployment`: the resources' names and
:meth:`Deployment.invoke`, which calls a function's real handler under the function's own
environment, as its container would. While ``template.yaml`` is not in the repository, the
resources those functions use are created here with the contract's names instead
(:mod:`aios.cloud.env`), each function getting the same environment.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from cloud_stack import TEMPLATE, CloudStack, environment

from aios.cloud import env
from aios.store.dynamodb import create_table

REGION = "us-east-1"
STAGE = "test"
API_DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"
"""The API's execute-api domain name in the events API Gateway sends."""
IOT_DATA_ENDPOINT = "https://data-ats.iot.us-east-1.amazonaws.com"
"""An iot-data endpoint moto answers (it does not answer account-specific ones)."""

HANDLERS = {
    "ApiFunction": "functions.api.handler",
    "AuthorizerFunction": "functions.authorizer.handler",
    "HeartbeatIngestFunction": "functions.ingest.heartbeat",
    "TelemetryIngestFunction": "functions.ingest.telemetry",
    "EventsIngestFunction": "functions.ingest.events",
    "CommandResponseIngestFunction": "functions.ingest.command_responses",
}
"""Logical id → handler, as the template names them (used without the template)."""


@dataclass
class Deployment:
    """The stack (or its stand-in) in moto.

    Attributes:
        stack: the template's stack, ``None`` for the stand-in.
        common: the environment every function has (table, bucket, secret names…).
        extra: variables added to every function's environment (tests' settings).
        unset: variables removed from every function's environment.
    """

    stack: CloudStack | None
    common: dict[str, str]
    extra: dict[str, str] = field(default_factory=dict)
    unset: set[str] = field(default_factory=set)

    @property
    def table(self) -> str:
        """The DataTable's name."""
        return self.common[env.DATABASE_URL].removeprefix("dynamodb://")

    @property
    def bucket(self) -> str:
        """The media bucket's name."""
        return self.common[env.MEDIA_BUCKET]

    @property
    def idempotency_table(self) -> str:
        """The idempotency table's name."""
        return self.common[env.IDEMPOTENCY_TABLE]

    def environment(self, logical_id: str) -> dict[str, str]:
        """The function's environment (the template's, plus :attr:`extra`)."""
        base = self.stack.environment(logical_id) if self.stack is not None else self.common
        merged = {**base, **self.extra}
        return {k: v for k, v in merged.items() if k not in self.unset}

    @contextlib.contextmanager
    def environ(self, logical_id: str) -> Iterator[None]:
        """``os.environ`` set to the function's environment for the block."""
        with environment(self.environment(logical_id), frozenset(self.unset)):
            yield

    def services(self, logical_id: str | None = None) -> Any:
        """:func:`aios.cloud.services.cloud_services` in the environment of function
        ``logical_id`` (default: the first created)."""
        from aios.cloud.services import cloud_services

        if logical_id is None and self.stack is not None:
            logical_id = sorted(self.stack.functions)[0]
        with self.environ(logical_id or "ApiFunction"):
            return cloud_services(with_launcher=False)

    def invoke(self, logical_id: str, event: Any, context: Any = None) -> Any:
        """Call the function's real handler with ``event`` under its environment."""
        if self.stack is not None:
            spec = self.stack.functions[logical_id]
            handler_path = spec["handler"]
            if context is None:
                from cloud_stack import LambdaContext

                context = LambdaContext(spec)
        else:
            handler_path = HANDLERS[logical_id]
        module_name, _, attribute = handler_path.rpartition(".")
        handler = getattr(importlib.import_module(module_name.replace("/", ".")), attribute)
        with environment(self.environment(logical_id), frozenset(self.unset)):
            return handler(event, context)


RESOURCES = {"DataTable", "IdempotencyTable", "MediaBucket", "JwtSecret"}
"""What the API, authorizer and ingest functions use (besides IoT Core's data plane)."""


def _needed(functions: set[str], more: set[str]) -> set[str]:
    """The logical ids to create: ``functions``, their roles, ``more`` and :data:`RESOURCES`
    (creating the whole stack takes seconds; these, a fraction)."""
    from cloud_stack import _transformed

    cfn, _ = _transformed(str(TEMPLATE.resolve()), "{}")
    resources = cfn.get("Resources") or {}
    needed = set(RESOURCES) | set(functions) | set(more)
    for lid in list(needed):
        props = resources.get(lid, {}).get("Properties") or {}
        for role in (props.get("Role"), props.get("RoleArn")):
            if isinstance(role, dict) and "Fn::GetAtt" in role:
                needed.add(role["Fn::GetAtt"][0])
    return needed


def deploy(
    functions: set[str] | None = None,
    *,
    more: set[str] | None = None,
    extra: dict[str, str] | None = None,
    unset: set[str] | None = None,
) -> Deployment:
    """Create ``functions`` and their resources (plus the logical ids ``more``; ``None``:
    the whole stack) in the active ``mock_aws`` (see the module doc). ``extra``: variables
    added to every function's environment; ``unset``: variables removed from it. The IoT
    data endpoint is one moto answers."""
    settings = {
        "AIOS_ALLOWED_HOSTS": json.dumps(["*"]),
        env.IOT_DATA_ENDPOINT: IOT_DATA_ENDPOINT,
        **(extra or {}),
    }
    if TEMPLATE.exists():
        only = None if functions is None else _needed(functions, more or set())
        stack = CloudStack.create(only=only)
        common = stack.environment(sorted(functions or {"ApiFunction"})[0])
        return Deployment(stack, common, settings, set(unset or ()))
    suffix = secrets.token_hex(3)
    table = f"aios-{STAGE}-data-{suffix}"
    idempotency = f"aios-{STAGE}-idempotency-{suffix}"
    bucket = f"aios-{STAGE}-media-{suffix}"
    ddb = boto3.client("dynamodb", region_name=REGION)
    create_table(ddb, table)
    ddb.create_table(
        TableName=idempotency,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(
        TableName=idempotency,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"},
    )
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket)
    jwt_arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=f"aios/{STAGE}/jwt-{suffix}", SecretString=secrets.token_urlsafe(48)
    )["ARN"]
    common = {
        env.DATABASE_URL: f"dynamodb://{table}",
        env.IDEMPOTENCY_TABLE: idempotency,
        env.MEDIA_BUCKET: bucket,
        env.STAGE: STAGE,
        env.JWT_SECRET_ARN: jwt_arn,
        env.INTEGRATION_SECRET_PREFIX: f"aios/{STAGE}/integrations/",
    }
    return Deployment(None, common, settings, set(unset or ()))


def api_event(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
    binary: bytes | None = None,
) -> dict[str, Any]:
    """An API Gateway REST proxy event as the ``Api`` (``/{proxy+}``) sends it: ``body``
    as JSON, or ``binary`` base64-encoded."""
    import base64
    import uuid

    hdrs = {"Host": "abc123.execute-api.us-east-1.amazonaws.com", "User-Agent": "tests/1"}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    text: str | None = None
    if binary is not None:
        text = base64.b64encode(binary).decode()
    elif body is not None:
        text = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "domainName": API_DOMAIN,
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{STAGE}{path}",
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.9", "userAgent": "tests/1"},
        },
        "body": text,
        "isBase64Encoded": binary is not None,
    }


@dataclass
class Answer:
    """An API response (status, headers, body text; ``raw`` the proxy response)."""

    status: int
    headers: dict[str, str]
    text: str
    raw: dict[str, Any]

    def json(self) -> Any:
        return json.loads(self.text)


def answer(raw: dict[str, Any]) -> Answer:
    """The :class:`Answer` of a proxy response (base64 bodies decoded as Latin-1 text)."""
    import base64
    import gzip

    headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
    for key, values in (raw.get("multiValueHeaders") or {}).items():
        headers.setdefault(key.lower(), values[-1])
    body = raw.get("body") or ""
    if raw.get("isBase64Encoded"):
        data = base64.b64decode(body)
        if headers.get("content-encoding") == "gzip":
            data = gzip.decompress(data)
        text = data.decode("latin-1")
    else:
        text = body
    return Answer(int(raw["statusCode"]), headers, text, raw)
