"""The OpenAPI document, the offline interactive docs, the Lambda entry point, and a
schemathesis run over every operation finding no server error."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import schemathesis
from api_client import ApiClient, proxy_event
from api_support import JWT_SECRET, Account
from hypothesis import HealthCheck, Phase, settings
from schemathesis.generation.hypothesis.builder import (
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)

from aios.api import app as app_module
from aios.api.app import ApiResolver
from aios.api.permissions import permission_for

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def test_openapi_document(api: ApiClient) -> None:
    """/openapi.json and /docs?format=json serve the same OpenAPI 3.1 document, with the
    bearer scheme on every route but sign-in, and error-free pagination parameters."""
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] == "AIOS API"
    assert api.get("/docs", query={"format": "json"}).json()["paths"] == doc["paths"]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    login = doc["paths"]["/api/v1/auth/login"]["post"]
    assert "security" not in login
    devices = doc["paths"]["/api/v1/devices"]["get"]
    assert devices["security"] == [{"bearer": []}]
    limit = next(p for p in devices["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"], limit["schema"]["default"]) == (
        1,
        1000,
        50,
    )
    user_out = doc["components"]["schemas"]["UserOut"]["properties"]
    assert not [name for name in user_out if "password" in name or "hash" in name]


def test_interactive_docs_work_offline(api: ApiClient) -> None:
    """The Swagger UI page inlines its script and styles: no CDN is needed."""
    res = api.get("/docs", headers={"Accept-Encoding": "gzip"})
    assert res.status == 200
    assert res.headers["content-type"].startswith("text/html")
    assert res.headers.get("content-encoding") == "gzip"
    html = res.text
    assert "SwaggerUIBundle" in html
    assert "<script src=" not in html and "<link rel='stylesheet'" not in html
    assert "https://" not in html.split("<script>")[0]


def test_host_header_must_be_allowed(api: ApiClient, viewer: Account) -> None:
    """Requests for another host name are refused before anything else."""
    res = api.get("/api/v1/auth/me", token=viewer.token, headers={"Host": "evil.example"})
    assert res.status == 400 and res.error["code"] == "host_not_allowed"
    ok = api.get("/api/v1/auth/me", token=viewer.token, headers={"Host": "localhost:8080"})
    assert ok.status == 200


def test_cors_for_configured_origins_only(api: ApiClient, viewer: Account) -> None:
    """Preflight and responses carry CORS headers for the configured origin only."""
    pre = api.call(
        "OPTIONS",
        "/api/v1/devices",
        headers={"Origin": "https://console.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status == 204
    assert pre.headers["access-control-allow-origin"] == "https://console.example.com"
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    res = api.get("/api/v1/auth/me", token=viewer.token, headers={"Origin": "https://evil.example"})
    assert res.status == 200 and "access-control-allow-origin" not in res.headers


def test_unknown_route_and_request_ids(api: ApiClient) -> None:
    """404 in the error shape; every response has the request id."""
    res = api.get("/api/v1/nothing-here")
    assert res.status == 404 and res.error["code"] == "route_not_found"
    assert res.headers["x-request-id"] == res.error["request_id"]


def test_unexpected_errors_are_500_without_details(
    api: ApiClient, viewer: Account, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing store answers 500 with a request id; the traceback is only in the log."""
    store = api.app.services.store

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("disk on fire at /secret/path")

    store.events.list = broken  # type: ignore[method-assign]
    res = api.get("/api/v1/events", token=viewer.token)
    assert res.status == 500
    assert res.error["code"] == "internal_error"
    assert "disk on fire" not in res.text and "Traceback" not in res.text
    assert res.error["request_id"] in res.error["message"]
    assert any("disk on fire" in (r.exc_text or "") for r in caplog.records) or any(
        r.exc_info and "disk on fire" in str(r.exc_info[1]) for r in caplog.records
    )


def test_lambda_handler_builds_services_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Lambda entry reads AIOS_* once (cold start) and answers proxy events."""
    monkeypatch.setenv("AIOS_DATA_DIR", str(tmp_path / "lambda"))
    monkeypatch.setenv("AIOS_JWT_SECRET", JWT_SECRET)
    monkeypatch.setenv("AIOS_DATABASE_URL", f"sqlite:///{tmp_path / 'lambda.db'}")
    app_module._app_from_environment.cache_clear()
    try:
        res = app_module.handler(proxy_event("GET", "/api/v1/auth/me"), None)
        assert res["statusCode"] == 401
        first = app_module._app_from_environment()
        app_module.handler(proxy_event("GET", "/api/v1/nodes"), None)
        assert app_module._app_from_environment() is first
        login = app_module.handler(
            proxy_event("POST", "/api/v1/auth/login", body={"username": "nobody", "password": "x"}),
            None,
        )
        assert login["statusCode"] == 401
    finally:
        first_app = app_module._app_from_environment()
        app_module._app_from_environment.cache_clear()
        first_app.services.store.close()


def wsgi_adapter(
    resolver: ApiResolver,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI application that turns each request into an API Gateway proxy event, as
    API Gateway does: a body that is not UTF-8 is passed base64-encoded."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        query = {
            k: v
            for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()
        }
        event = proxy_event(
            environ["REQUEST_METHOD"],
            environ.get("PATH_INFO") or "/",
            headers=headers,
            query=query,  # type: ignore[arg-type]
        )
        if raw:
            try:
                event["body"] = raw.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(raw).decode("ascii")
                event["isBase64Encoded"] = True
        result = resolver.resolve(event, None)
        out_headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
        for key, values in (result.get("multiValueHeaders") or {}).items():
            out_headers.extend((key, str(v)) for v in values)
        status = int(result["statusCode"])
        start_response(f"{status} STATUS", out_headers)
        payload = result.get("body") or ""
        if result.get("isBase64Encoded"):
            return [base64.b64decode(payload)]
        return [payload.encode()]

    return application


ACCEPTED_503 = {"device_unreachable", "runs_unavailable"}
"""503s that are answers, not failures: this process has no device link or run launcher."""

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
NOT_FUZZED = {("POST", "/api/v1/cameras/snapshot")}
"""Operations left out of fuzzing: this one connects to the URL it is given (generated
URLs would reach hosts off this machine); test_cameras.py tests it on loopback and files."""
FUZZ_EXAMPLES = {"write": 25, "read": 6}
"""Generated cases per operation (after the examples and coverage cases), within the CI
budget; a local run with thousands of cases uses the schemathesis CLI."""


def seed_records(api: ApiClient, token: str) -> dict[str, list[str]]:
    """Records for generated requests to hit: path values by parameter name."""
    for body in (
        {"id": "gw-1", "name": "Gateway", "kind": "connector"},
        {"id": "cam-1", "name": "Gate", "kind": "camera"},
        {"id": "plc-1", "name": "PLC", "kind": "plc", "parent_id": "gw-1"},
    ):
        assert api.post("/api/v1/devices", body, token=token).status == 201
    document = {
        "name": "Ticks",
        "nodes": [{"id": "tick", "type": "aios/timer@1", "config": {"interval_seconds": 60}}],
    }
    pipeline = api.post("/api/v1/pipelines", document, token=token).json()["id"]
    rule = api.post("/api/v1/devices/cam-1/alert-rules", {"kind": "offline"}, token=token).json()[
        "id"
    ]
    return {
        "device_id": ["cam-1", "plc-1", "gw-1"],
        "pipeline_id": [pipeline],
        "rule_id": [rule],
    }


def fuzz_config(known: dict[str, list[str]]) -> schemathesis.Config:
    """Positive and negative data; path parameters are a known record's id half of the
    time (otherwise most requests would stop at a 404)."""
    return schemathesis.Config.from_dict(
        {
            "generation": {"mode": "all"},
            "dictionaries": {name: {"values": values} for name, values in known.items()},
            "parameters": {
                f"path.{name}": {"dictionary": name, "probability": 0.5} for name in known
            },
        }
    )


@pytest.mark.timeout(240)
def test_schemathesis_finds_no_server_errors(api: ApiClient, admin: Account) -> None:
    """Every operation answers < 500 to its examples, schemathesis' coverage cases (bounds,
    wrong types, missing and unexpected fields, other content types, other methods) and
    generated positive and negative data — as an admin, so requests pass the gate."""
    known = seed_records(api, admin.token)
    schema = schemathesis.openapi.from_wsgi(
        "/openapi.json", wsgi_adapter(api.app), config=fuzz_config(known)
    )
    auth = {"Authorization": f"Bearer {admin.token}"}
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        if (operation.method.upper(), operation.path) in NOT_FUZZED:
            continue

        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=auth)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code < 500:
                return
            try:
                code = response.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                code = None
            if response.status_code == 503 and code in ACCEPTED_503:
                return
            failures.append(
                f"{case.method} {case.formatted_path} query={case.query} "
                f"headers={case.headers} body={case.body!r:.300}"
                f" → {response.status_code} {response.text[:300]}"
            )

        kind = "write" if operation.method.upper() in WRITE_METHODS else "read"
        test = create_test(
            operation=operation,
            test_func=check,
            config=HypothesisTestConfig(
                project=schema.config,
                modes=[
                    HypothesisTestMode.EXAMPLES,
                    HypothesisTestMode.COVERAGE,
                    HypothesisTestMode.FUZZING,
                ],
                settings=settings(
                    max_examples=FUZZ_EXAMPLES[kind],
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                ),
            ),
        )
        test()
    elapsed = time.monotonic() - started
    assert operations >= 45
    assert failures == [], f"{len(failures)} server errors:\n" + "\n".join(failures[:20])
    # AND the requests reached the routes and every kind of refusal
    assert {200, 201, 204, 400, 404, 405, 409, 415, 422} <= set(statuses), statuses
    assert sum(statuses.values()) >= 2000, statuses
    assert elapsed < 150


MALFORMED_BODIES = [
    (b"\xff\xfe{}", "application/json", 400),
    (b'{"name": "x",', "application/json", 400),
    (b'{"name": NaN}', "application/json", 400),
    (b"[" * 2000 + b"]" * 2000, "application/json", 422),
    (b"name=x", "application/x-www-form-urlencoded", 415),
    (b"{}", "multipart/form-data", 415),
    (b"{}", "text/plain", 415),
    (b'{"name": "x"}', None, 415),
]
"""Bodies no endpoint can read, their Content-Type (None: no header) and the status."""


def test_malformed_bodies_are_refused_by_every_write_operation(
    api: ApiClient, admin: Account
) -> None:
    """Whatever the write operation, a body that is not UTF-8 JSON sent as
    application/json gets its 4xx in the error shape before the route runs (routes that
    take a grant take a file as their body, not JSON: tests/integration/runs/test_edge_*)."""
    doc = api.get("/openapi.json").json()
    checked = 0
    for path, item in doc["paths"].items():
        for method in item:
            if method.upper() not in WRITE_METHODS:
                continue
            permission = permission_for(method, path)
            if permission is not None and permission.grant is not None:
                continue
            url = re.sub(r"\{\w+\}", "x", path)
            for body, content_type, status in MALFORMED_BODIES:
                res = api.send_bytes(
                    method.upper(), url, body, token=admin.token, content_type=content_type
                )
                assert res.status == status, (method, path, content_type, res.text)
                assert set(res.error) == {"code", "message", "details", "request_id"}
                checked += 1
    assert checked >= 20 * len(MALFORMED_BODIES)
