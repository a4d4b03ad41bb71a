"""A local HTTP front for an API Gateway REST handler.

Each HTTP request becomes the event API Gateway sends a Lambda proxy integration (payload
format 1.0, the REST API's: ``resource``, ``path``, ``httpMethod``, ``headers``,
``multiValueHeaders``, ``queryStringParameters``, ``multiValueQueryStringParameters``,
``pathParameters``, ``requestContext``, ``body``, ``isBase64Encoded``), the handler (a
Powertools ``APIGatewayRestResolver``) resolves it, and its response dict (``statusCode``,
``headers``, ``multiValueHeaders``, ``body``, ``isBase64Encoded``) becomes the HTTP response.
Reference: "Input format of a Lambda function for proxy integration" and "Output format of a
Lambda function for proxy integration", Amazon API Gateway developer guide.

As behind API Gateway, the resource is a greedy proxy (``/{proxy+}``), the request body is
limited (10 MB, API Gateway's payload quota) and a body that is not UTF-8 text is passed
base64-encoded. The caller's address (``requestContext.identity.sourceIp``) is the TCP peer,
never a client-supplied header such as ``X-Forwarded-For`` (see :func:`peer_address`).

Errors the adapter answers itself (413, a failing handler) and those of
:class:`HostCheckMiddleware` have the API's JSON shape
``{"error": {"code", "message", "details", "request_id"}}`` and an ``X-Request-Id`` header.

Powertools keeps the request being resolved in a class attribute, so the handler runs on
one worker thread at a time, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from aios.api.hosts import HOST_NOT_ALLOWED, host_allowed

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
"""API Gateway REST's maximum payload size, 10 MB (API Gateway quotas)."""

UNMATCHED_ROUTE = "unmatched"
"""Route label of requests no route of the handler matched."""

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te"}
)


class ProxyHandler(Protocol):
    """What serves proxy events: ``APIGatewayRestResolver`` fits."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]: ...


RequestObserver = Callable[[str, str, int, float], None]
"""Called after every request with (method, route template, status code, seconds)."""


@dataclass
class LocalLambdaContext:
    """The parts of a Lambda context object handlers and Powertools read."""

    aws_request_id: str
    function_name: str = "aios-api"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:aios-api"
    memory_limit_in_mb: int = 1024
    log_group_name: str = "/aws/lambda/aios-api"
    log_stream_name: str = "local"
    timeout_seconds: float = 29.0
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left of API Gateway's 29 s integration timeout."""
        left = self.timeout_seconds - (time.monotonic() - self.started)
        return max(0, int(left * 1000))


class BodyTooLarge(Exception):
    """The request body is over the adapter's limit."""


class _HandlerFailed(Exception):
    """The handler raised (the cause) while answering a request of ``route``."""

    def __init__(self, route: str) -> None:
        super().__init__(route)
        self.route = route


def build_event(
    *,
    method: str,
    path: str,
    raw_query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str | None,
    stage: str = "local",
    request_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Build the API Gateway REST proxy event (payload 1.0) of one HTTP request.

    ``path`` is the decoded request path (``/api/v1/devices/cam-1``), ``raw_query`` the
    query string as sent (``a=1&a=2&b=``), ``headers`` the header (name, value) pairs in
    order. Single-value maps keep the last value of a repeated name, as API Gateway does.
    ``source_ip`` is the TCP peer's address (``None``: unknown).
    """
    now = now or datetime.now(UTC)
    request_id = request_id or str(uuid.uuid4())
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    query_pairs = parse_qsl(raw_query, keep_blank_values=True)
    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in query_pairs:
        single_query[name] = value
        multi_query.setdefault(name, []).append(value)
    text_body: str | None
    is_base64 = False
    if not body:
        text_body = None
    else:
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:
            text_body = base64.b64encode(body).decode("ascii")
            is_base64 = True
    lower = {k.lower(): v for k, v in single_headers.items()}
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method.upper(),
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": "/{proxy+}",
            "httpMethod": method.upper(),
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": path,
            "accountId": "000000000000",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": lower.get("host", "localhost").split(":")[0].split(".")[0],
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": lower.get("user-agent"),
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "user": None,
            },
            "domainName": lower.get("host", "localhost"),
            "apiId": "local",
        },
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


def build_response(result: Mapping[str, Any]) -> Response:
    """Turn a proxy integration's response dict into an HTTP response.

    Headers from ``headers`` and ``multiValueHeaders`` are merged (a name in both is sent
    with the multi-value list); ``body`` is base64-decoded when ``isBase64Encoded``.

    Raises:
        ValueError: the dict is not a proxy response (no integer ``statusCode``).
    """
    status = result.get("statusCode")
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"handler returned no valid statusCode: {status!r}")
    body = result.get("body")
    if body is None:
        content = b""
    elif result.get("isBase64Encoded"):
        content = base64.b64decode(body)
    else:
        content = str(body).encode("utf-8")
    response = Response(content=content, status_code=status)
    multi: Mapping[str, list[str]] = result.get("multiValueHeaders") or {}
    single: Mapping[str, str] = result.get("headers") or {}
    multi_lower = {name.lower() for name in multi}
    pairs = [(n, v) for n, values in multi.items() for v in values]
    pairs += [(n, v) for n, v in single.items() if n.lower() not in multi_lower]
    for name, value in pairs:
        if name.lower() in _HOP_BY_HOP or value is None:
            continue
        response.headers.append(name, str(value))
    return response


_RESOLVE_LOCK = threading.Lock()
"""Powertools keeps the event being resolved in a class attribute (``BaseRouter.current_event``),
shared by every resolver of the process: resolution is serialised process-wide."""


def route_template(handler: Any, method: str, path: str) -> str:
    """The template of the handler's route matching ``method path``
    (``/api/v1/devices/{device_id}``), or :data:`UNMATCHED_ROUTE`.

    Matches as Powertools does (its compiled route rules, static routes first); a handler
    that is not a Powertools resolver gives :data:`UNMATCHED_ROUTE`.
    """
    routes = list(getattr(handler, "_static_routes", ())) + list(
        getattr(handler, "_dynamic_routes", ())
    )
    for route in routes:
        if route.method == method.upper() and route.rule.match(path):
            return str(getattr(route, "openapi_path", None) or route.path)
    return UNMATCHED_ROUTE


class ApiGatewayAdapter:
    """Serves HTTP requests with a proxy handler run on a worker thread.

    The event loop stays free for other requests and WebSockets while the (synchronous)
    handler runs; handler calls are serialised (see :data:`_RESOLVE_LOCK`). Use
    :meth:`endpoint` as a Starlette route endpoint and :meth:`close` at shutdown (it waits
    for requests in progress). ``observe`` is told every request's method, route template
    (``/api/v1/devices/{device_id}``, or ``unmatched``), status and duration in seconds.
    """

    def __init__(
        self,
        handler: ProxyHandler,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        stage: str = "local",
        observe: RequestObserver | None = None,
    ) -> None:
        self._handler = handler
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="api")
        self.max_body_bytes = max_body_bytes
        self.stage = stage
        self._observe = observe

    def _resolve(self, event: dict[str, Any]) -> tuple[dict[str, Any], str]:
        context = LocalLambdaContext(aws_request_id=event["requestContext"]["requestId"])
        with _RESOLVE_LOCK:
            route = route_template(self._handler, event["httpMethod"], event["path"])
            try:
                return self._handler.resolve(event, context), route
            except Exception as err:
                raise _HandlerFailed(route) from err

    # ------------------------------------------------------------------ HTTP side

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def endpoint(self, request: Request) -> Response:
        """Serve one request through a handler (a Starlette endpoint)."""
        started = time.perf_counter()
        method = request.method
        route = UNMATCHED_ROUTE
        status = 500
        try:
            try:
                body = await self._read_body(request)
            except BodyTooLarge:
                status = 413
                return _error(
                    413,
                    "payload_too_large",
                    f"the request body is over {self.max_body_bytes} bytes; send less",
                )
            except ClientDisconnect:
                status = 499
                return Response(status_code=400)
            event = build_event(
                method=method,
                path=request.url.path,
                raw_query=request.url.query,
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                body=body,
                source_ip=peer_address(request.scope),
                stage=self.stage,
            )
            loop = asyncio.get_running_loop()
            try:
                result, route = await loop.run_in_executor(self._executor, self._resolve, event)
                response = build_response(result)
            except Exception as err:
                if isinstance(err, _HandlerFailed):
                    route = err.route
                request_id = event["requestContext"]["requestId"]
                log.exception(
                    "the API handler failed",
                    extra={"method": method, "route": route, "request_id": request_id},
                )
                return _error(500, "internal_error", "the server failed; see its log", request_id)
            status = response.status_code
            return response
        finally:
            seconds = time.perf_counter() - started
            if self._observe is not None:
                self._observe(method, route, status, seconds)
            # answered requests are counted in /metrics; the log keeps the refused and failed
            log.log(
                logging.DEBUG if status < 400 else logging.INFO,
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )

    def close(self) -> None:
        """Wait for requests in progress, then stop the worker threads."""
        self._executor.shutdown(wait=True)


def _error(status: int, code: str, message: str, request_id: str | None = None) -> JSONResponse:
    """An error in the API's shape: ``{"error": {"code", "message", "details",
    "request_id"}}`` (a new request id when none is given), also in ``X-Request-Id``."""
    request_id = request_id or str(uuid.uuid4())
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "details": [],
        "request_id": request_id,
    }
    return JSONResponse({"error": error}, status_code=status, headers={"X-Request-Id": request_id})


def _forwarded_addresses(headers: Headers) -> set[tuple[str, int]]:
    """The (host, port) pairs named in ``X-Forwarded-For`` headers, port 0 when none is
    given — as an ASGI server taking the client address from them would set it."""
    addresses: set[tuple[str, int]] = set()
    for value in headers.getlist("x-forwarded-for"):
        for item in value.split(","):
            entry = item.strip()
            port = ""
            if entry.startswith("["):  # "[2001:db8::1]:443"
                entry, _, rest = entry[1:].partition("]")
                port = rest.removeprefix(":")
            elif entry.count(":") == 1:  # "198.51.100.1:80"
                entry, _, port = entry.partition(":")
            if entry:
                addresses.add((entry.lower(), int(port) if port.isdigit() else 0))
    return addresses


def peer_address(scope: Scope) -> str | None:
    """The TCP peer's address of an ASGI connection, never one a client claims.

    ASGI servers may replace ``scope["client"]`` with an ``X-Forwarded-For`` entry (uvicorn
    does unless ``proxy_headers=False``, by default for connections from 127.0.0.1 and
    ::1). Any client can send that header, so a client address equal to one of its entries
    — host and port, port 0 for an entry without one, which no TCP peer has — is not
    taken: the peer is then unknown (``None``), and such callers share one login rate
    limit instead of choosing their own.
    """
    client = scope.get("client")
    if not client:
        return None
    host, port = str(client[0]), int(client[1] or 0)
    if (host.lower(), port) in _forwarded_addresses(Headers(scope=scope)):
        return None
    return host


class HostCheckMiddleware:
    """Refuse HTTP requests and WebSocket handshakes whose ``Host`` is not allowed, with
    the API's JSON error (400 ``host_not_allowed``), matching hosts as the API does
    (:func:`aios.api.hosts.host_allowed`; ``["*"]`` allows every host)."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts) or ["*"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not host_allowed(
            Headers(scope=scope).get("host"), self.allowed_hosts
        ):
            response = _error(400, "host_not_allowed", HOST_NOT_ALLOWED)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
