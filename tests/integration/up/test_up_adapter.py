"""The local HTTP adapter: real HTTP in, API Gateway REST proxy events to a Powertools
resolver, its responses back out — with a small resolver of the test's own."""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from starlette.applications import Starlette
from starlette.routing import Route
from up_support import ServerThread

from aios.up.adapter import (
    MAX_BODY_BYTES,
    UNMATCHED_ROUTE,
    ApiGatewayAdapter,
    build_event,
    build_response,
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
    assert r.json()["error"]["code"] == "payload_too_large"

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
