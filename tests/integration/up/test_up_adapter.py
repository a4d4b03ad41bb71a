"""The local HTTP adapter: real HTTP in, API Gateway REST proxy events to a Powertools
resolver, its responses back out — with a small resolver of the test's own."""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from up_support import ServerThread

from aios.api.app import create_app
from aios.config import Settings
from aios.services import Services
from aios.store.sqlite import SqliteStore
from aios.up.adapter import (
    MAX_BODY_BYTES,
    UNMATCHED_ROUTE,
    ApiGatewayAdapter,
    HostCheckMiddleware,
    build_event,
    build_response,
    peer_address,
)

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary"


def make_resolver() -> APIGatewayRestResolver:
    """A resolver whose routes echo what they were given."""
    app = APIGatewayRestResolver()

    @app.get("/api/echo")
    def echo() -> dict[str, Any]:
        event = app.current_event
        return {
            "path": event.path,
            "method": event.http_method,
            "query": event.query_string_parameters,
            "multi_query": event.multi_value_query_string_parameters,
            "header": event.headers.get("x-probe"),
            "multi_header": event.multi_value_headers.get("x-multi"),
            "source_ip": event.request_context.identity.source_ip,
            "user_agent": event.request_context.identity.user_agent,
            "request_id": event.request_context.request_id,
            "stage": event.request_context.stage,
            "resource": event.resource,
            "proxy": event.path_parameters.get("proxy"),
        }

    @app.post("/api/items")
    def create_item() -> Response[str]:
        item = app.current_event.json_body
        return Response(
            status_code=201,
            content_type="application/json",
            body=json.dumps({"created": item}),
            headers={"Location": f"/api/items/{item['id']}", "X-Multi": ["a", "b"]},
            cookies=[],
        )

    @app.get("/api/items/<item_id>")
    def get_item(item_id: str) -> dict[str, Any]:
        delay = float(app.current_event.query_string_parameters.get("delay", "0"))
        time.sleep(delay)
        return {"id": item_id}

    @app.post("/api/upload")
    def upload() -> dict[str, Any]:
        event = app.current_event
        raw = base64.b64decode(event.body or "") if event.is_base64_encoded else b""
        return {"base64": event.is_base64_encoded, "size": len(raw), "same": raw == PNG_BYTES}

    @app.get("/api/image")
    def image() -> Response[bytes]:
        return Response(status_code=200, content_type="image/png", body=PNG_BYTES)

    @app.get("/api/big", compress=True)
    def big() -> Response[str]:
        return Response(status_code=200, content_type="text/plain", body="x" * 100_000)

    @app.get("/api/boom")
    def boom() -> dict[str, Any]:
        raise RuntimeError("route failed")

    return app


class Observed:
    """Collects what the adapter reports per request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int, float]] = []

    def __call__(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.append((method, route, status, seconds))


@pytest.fixture
def observed() -> Observed:
    return Observed()


@pytest.fixture
def server(observed: Observed) -> Iterator[ServerThread]:
    """The adapter in front of the test resolver, served on loopback."""
    adapter = ApiGatewayAdapter(make_resolver(), max_body_bytes=64 * 1024, observe=observed)
    app = Starlette(
        routes=[Route("/{path:path}", adapter.endpoint, methods=["GET", "POST", "PUT", "DELETE"])]
    )
    with ServerThread(app) as running:
        yield running
    adapter.close()


def test_event_carries_path_query_headers_and_identity(server: ServerThread) -> None:
    """A GET's query (repeated keys too), headers and caller reach the resolver."""
    # GIVEN a request with a repeated query key, a repeated header and a user agent
    headers = [("X-Probe", "one"), ("X-Multi", "m1"), ("X-Multi", "m2"), ("User-Agent", "t/1")]
    # WHEN it is sent through the adapter
    r = httpx.get(f"{server.url}/api/echo?a=1&a=2&b=&c=x%20y", headers=headers)
    # THEN the route sees it as API Gateway would give it
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == "/api/echo"
    assert body["method"] == "GET"
    assert body["query"] == {"a": "2", "b": "", "c": "x y"}
    assert body["multi_query"] == {"a": ["1", "2"], "b": [""], "c": ["x y"]}
    assert body["header"] == "one"
    assert body["multi_header"] == ["m1", "m2"]
    assert body["source_ip"] == "127.0.0.1"
    assert body["user_agent"] == "t/1"
    assert body["stage"] == "local"
    assert body["resource"] == "/{proxy+}"
    assert body["proxy"] == "api/echo"
    assert len(body["request_id"]) == 36


def test_json_body_status_and_repeated_response_headers(server: ServerThread) -> None:
    """A POST's JSON body reaches the route; its status and headers come back."""
    r = httpx.post(f"{server.url}/api/items", json={"id": "i-1", "name": "café"})
    assert r.status_code == 201
    assert r.json() == {"created": {"id": "i-1", "name": "café"}}
    assert r.headers["location"] == "/api/items/i-1"
    assert r.headers.get_list("x-multi") == ["a", "b"]
    assert r.headers["content-type"] == "application/json"


def test_binary_bodies_travel_base64(server: ServerThread) -> None:
    """A body that is not UTF-8 goes in base64-encoded; a bytes response comes out raw."""
    r = httpx.post(
        f"{server.url}/api/upload",
        content=PNG_BYTES,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.json() == {"base64": True, "size": len(PNG_BYTES), "same": True}
    r = httpx.get(f"{server.url}/api/image")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.content == PNG_BYTES


def test_compressed_response_is_passed_through(server: ServerThread) -> None:
    """Powertools' gzip (base64 in the proxy response) arrives as gzip content-encoding."""
    with httpx.Client() as client:
        r = client.get(f"{server.url}/api/big", headers={"accept-encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert int(r.headers["content-length"]) < 2000
    assert r.text == "x" * 100_000


def test_oversized_body_is_refused_with_413(server: ServerThread) -> None:
    """Over the limit: 413 whether the length is declared or the body is streamed."""
    big = b"{" + b" " * (64 * 1024) + b"}"
    r = httpx.post(f"{server.url}/api/items", content=big)
    assert r.status_code == 413
    error = r.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert (error["code"], error["details"]) == ("payload_too_large", [])
    assert error["request_id"] == r.headers["x-request-id"]

    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b" " * 1024

    r = httpx.post(f"{server.url}/api/items", content=chunks())
    assert r.status_code == 413
    assert MAX_BODY_BYTES == 10 * 1024 * 1024


def test_route_templates_and_statuses_are_reported(
    server: ServerThread, observed: Observed
) -> None:
    """Metrics see route templates, not raw paths; unknown paths are 'unmatched'."""
    assert httpx.get(f"{server.url}/api/items/abc").status_code == 200
    assert httpx.get(f"{server.url}/nowhere/123").status_code == 404
    assert [(m, route, s) for m, route, s, _ in observed.requests] == [
        ("GET", "/api/items/{item_id}", 200),
        ("GET", UNMATCHED_ROUTE, 404),
    ]
    assert all(seconds > 0 for *_, seconds in observed.requests)


def test_handler_failure_is_a_json_500(server: ServerThread, observed: Observed) -> None:
    """An exception escaping the resolver becomes a 500 with an error code, no trace."""
    r = httpx.get(f"{server.url}/api/boom")
    assert r.status_code == 500
    error = r.json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == "internal_error"
    assert "route failed" not in r.text
    assert observed.requests[-1][1:3] == ("/api/boom", 500)


def test_concurrent_requests_each_get_their_own_answer(server: ServerThread) -> None:
    """Requests overlapping in time are answered each with its own event."""
    ids = [f"item-{i}" for i in range(12)]

    def fetch(item_id: str) -> str:
        r = httpx.get(f"{server.url}/api/items/{item_id}?delay=0.01", timeout=20)
        return str(r.json()["id"])

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        assert list(pool.map(fetch, ids)) == ids


def test_build_event_and_response_without_a_server() -> None:
    """The event and response conversions, directly."""
    event = build_event(
        method="delete",
        path="/api/items/7",
        raw_query="",
        headers=[("Host", "localhost:8080")],
        body=b"",
        source_ip="10.0.0.9",
        request_id="rid-1",
    )
    assert event["httpMethod"] == "DELETE"
    assert event["body"] is None
    assert event["isBase64Encoded"] is False
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["requestContext"]["requestId"] == "rid-1"
    assert event["requestContext"]["identity"]["sourceIp"] == "10.0.0.9"
    assert event["requestContext"]["domainName"] == "localhost:8080"
    assert isinstance(event["requestContext"]["requestTimeEpoch"], int)

    response = build_response(
        {
            "statusCode": 200,
            "headers": {"Content-Type": "text/plain", "X-One": "1"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-One": ["2"]},
            "body": base64.b64encode(gzip.compress(b"hi")).decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.status_code == 200
    assert gzip.decompress(response.body) == b"hi"
    assert response.headers.getlist("set-cookie") == ["a=1", "b=2"]
    assert response.headers.getlist("x-one") == ["2"]
    with pytest.raises(ValueError, match="statusCode"):
        build_response({"body": "no status"})


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[ServerThread, SqliteStore]]:
    """The real API (3 sign-in attempts a minute per address) behind the adapter, served
    by uvicorn with its default settings (which rewrite the client address from
    X-Forwarded-For for connections from 127.0.0.1)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path / "data",
        jwt_secret=SecretStr("adapter-test-secret-" + "k" * 40),
        allowed_hosts=["127.0.0.1", "localhost"],
        login_rate_per_minute=3,
    )
    store = SqliteStore(tmp_path / "aios.db")
    adapter = ApiGatewayAdapter(create_app(Services(store=store, settings=settings)))
    app = Starlette(
        routes=[Route("/{path:path}", adapter.endpoint, methods=["GET", "POST", "PUT", "DELETE"])]
    )
    try:
        with ServerThread(app) as running:
            yield running, store
    finally:
        adapter.close()
        store.close()


def test_forwarded_for_cannot_dodge_the_login_rate_limit(
    api_server: tuple[ServerThread, SqliteStore],
) -> None:
    """The caller's address is the TCP peer: a new X-Forwarded-For on every attempt still
    counts against one limit, and no claimed address reaches the audit log."""
    server, store = api_server
    statuses = []
    for attempt in range(5):
        r = httpx.post(
            f"{server.url}/api/v1/auth/login",
            json={"username": "nobody", "password": "not-the-password"},
            headers={"X-Forwarded-For": f"198.51.100.{attempt}"},
            timeout=20,
        )
        statuses.append(r.status_code)
    assert statuses == [401, 401, 401, 429, 429]
    sources = {entry.source_ip for entry in store.audit.list(limit=20).items}
    assert sources and not any(ip and ip.startswith("198.51.100.") for ip in sources)


def test_unreadable_bodies_through_the_adapter_are_client_errors(
    api_server: tuple[ServerThread, SqliteStore],
) -> None:
    """Bytes that are not UTF-8 travel base64 to the API, which answers 400; a
    multipart type without boundary is 415 — both in the API's error shape."""
    server, _store = api_server
    url = f"{server.url}/api/v1/auth/login"
    binary = httpx.post(
        url, content=b"\xff\xfe{}", headers={"content-type": "application/json"}, timeout=20
    )
    assert binary.status_code == 400 and binary.json()["error"]["code"] == "invalid_json"
    multipart = httpx.post(
        url, content=b"{}", headers={"content-type": "multipart/form-data"}, timeout=20
    )
    assert multipart.status_code == 415
    assert set(multipart.json()["error"]) == {"code", "message", "details", "request_id"}


def test_peer_address_ignores_claimed_addresses() -> None:
    """An address taken from X-Forwarded-For (as uvicorn's proxy headers do: the entry's
    host and port, 0 without one) is not the peer's: it is unknown then; otherwise the
    socket's address is kept, also when a client names itself in the header."""

    def scope(client: tuple[str, int] | None, *forwarded: str) -> dict[str, Any]:
        headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
        return {"type": "http", "client": client, "headers": headers}

    assert peer_address(scope(("10.0.0.9", 51000))) == "10.0.0.9"
    assert peer_address(scope(("10.0.0.9", 51000), "198.51.100.1")) == "10.0.0.9"
    assert peer_address(scope(("10.0.0.9", 51000), "10.0.0.9")) == "10.0.0.9"
    assert peer_address(scope(("198.51.100.1", 0), "203.0.113.5, 198.51.100.1")) is None
    assert peer_address(scope(("198.51.100.1", 80), "198.51.100.1:80")) is None
    assert peer_address(scope(("2001:db8::1", 443), "[2001:db8::1]:443")) is None
    assert peer_address(scope(("2001:db8::1", 0), "2001:db8::1")) is None
    assert peer_address(scope(None)) is None
    event = build_event(method="GET", path="/", raw_query="", headers=[], body=b"", source_ip=None)
    assert event["requestContext"]["identity"]["sourceIp"] is None


def _websocket_handshake(server: ServerThread, host: str) -> tuple[int, bytes]:
    """Send a WebSocket handshake with ``Host: host``; return the status and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ).encode()
        )
        reader = sock.makefile("rb")
        status = int(reader.readline().split(b" ", 2)[1])
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, reader.read(length)


def test_host_check_answers_json_for_http_and_websockets() -> None:
    """A Host outside the allowed list gets the API's JSON error (HTTP and WebSocket
    handshakes alike); allowed hosts, with or without a port, pass."""

    async def hello(_request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def feed(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    app = Starlette(
        routes=[Route("/hello", hello), WebSocketRoute("/ws", feed)],
        middleware=[Middleware(HostCheckMiddleware, allowed_hosts=["127.0.0.1", "*.example.com"])],
    )
    with ServerThread(app) as server:
        assert httpx.get(f"{server.url}/hello").text == "hello"
        other = httpx.get(f"{server.url}/hello", headers={"host": "api.example.com"})
        assert other.status_code == 200
        refused = httpx.get(f"{server.url}/hello", headers={"host": "evil.example"})
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/json"
        error = refused.json()["error"]
        assert set(error) == {"code", "message", "details", "request_id"}
        assert error["code"] == "host_not_allowed" and "AIOS_ALLOWED_HOSTS" in error["message"]
        assert _websocket_handshake(server, f"127.0.0.1:{server.port}")[0] == 101
        status, body = _websocket_handshake(server, "evil.example")
        assert status == 400
        assert json.loads(body)["error"]["code"] == "host_not_allowed"
