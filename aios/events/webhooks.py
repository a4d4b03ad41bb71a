"""An HTTP server that receives webhooks: JSON posted to a path, checked with a shared secret.

Webhook nodes register an :class:`Endpoint` (a path, how senders prove they hold the
secret, a body limit, and what to do with an accepted body) on a :class:`WebhookServer`.
One server is shared by every endpoint on the same host and port (:func:`register`); it
starts with the first endpoint and stops when the last one leaves (:func:`unregister`).
The server is the standard library's ``ThreadingHTTPServer`` in a background thread.

A request is checked in this order; the first failing check answers:

====  ==========================================================================
404   no endpoint has that path
405   the method is not POST (``Allow: POST``)
415   ``Content-Type`` is not ``application/json``
411   no ``Content-Length`` (chunked bodies are not accepted)
413   the body is larger than the endpoint's limit
401   the shared-secret check failed (see :data:`TOKEN_HEADER`, :data:`SIGNATURE_HEADER`)
400   the body is not UTF-8 JSON, not a JSON object, or an idempotency key is invalid
500   an unexpected failure while handling the request (logged)
503   the endpoint could not take the event (the sender should retry)
202   accepted: ``{"accepted": true, "event_id": "..."}``
====  ==========================================================================

Every answer is JSON; a refusal is ``{"accepted": false, "error": "<what is wrong>"}``. The
error texts never contain the secret or the body.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

AuthMode = Literal["token", "hmac_sha256"]
"""How a sender proves it holds the shared secret.

* ``token`` — the secret itself in the :data:`TOKEN_HEADER` header (use with HTTPS in
  front of the server, e.g. a reverse proxy).
* ``hmac_sha256`` — ``sha256=<hex>`` in :data:`SIGNATURE_HEADER`, the HMAC-SHA256 of the
  raw body keyed with the secret (RFC 2104), as GitHub's ``X-Hub-Signature-256`` does; the
  secret never travels.
"""

TOKEN_HEADER = "X-AIOS-Token"
SIGNATURE_HEADER = "X-AIOS-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_PREFIX = "sha256="
MAX_IDEMPOTENCY_KEY_LENGTH = 255
DRAIN_LIMIT_BYTES = 4 * 1_048_576
"""A refused body up to this size is read and dropped so the client can read the answer
(closing a socket with unread data makes the kernel reset the connection)."""
READ_TIMEOUT_SECONDS = 10.0
"""Longest wait for a slow client's request line, headers or body."""


def sign(secret: str, body: bytes) -> str:
    """Return the :data:`SIGNATURE_HEADER` value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookError(Exception):
    """A request refused with an HTTP status and a message saying what is wrong."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


AcceptHandler = Callable[[dict[str, Any], str | None], dict[str, Any]]
"""Called with an accepted body (a JSON object) and the sender's idempotency key (header
``Idempotency-Key``, else the body's ``event_id``, else ``None``); returns the 202 answer's
fields (at least ``event_id``) or raises :class:`WebhookError`."""


@dataclass(frozen=True)
class Endpoint:
    """One webhook path and how requests to it are checked.

    Attributes:
        path: absolute URL path, e.g. ``/hooks/door``.
        auth: how the secret is proven (:data:`AuthMode`).
        secret: the shared secret's value (kept out of ``repr``).
        max_body_bytes: largest accepted body, in bytes.
        on_accept: what to do with an accepted body (:data:`AcceptHandler`).
    """

    path: str
    auth: AuthMode
    secret: str = field(repr=False)
    max_body_bytes: int
    on_accept: AcceptHandler

    def check_secret(self, headers: Message[str, str], body: bytes) -> None:
        """Raise :class:`WebhookError` (401) unless the request proves the secret."""
        if self.auth == "token":
            given = headers.get(TOKEN_HEADER)
            if not given:
                raise WebhookError(HTTPStatus.UNAUTHORIZED, f"missing {TOKEN_HEADER} header")
            if not hmac.compare_digest(given.encode(), self.secret.encode()):
                raise WebhookError(HTTPStatus.UNAUTHORIZED, f"wrong {TOKEN_HEADER}")
            return
        signature = headers.get(SIGNATURE_HEADER)
        if not signature:
            raise WebhookError(
                HTTPStatus.UNAUTHORIZED,
                f"missing {SIGNATURE_HEADER} header (sha256=<hex HMAC-SHA256 of the body>)",
            )
        if not hmac.compare_digest(
            signature.strip().lower().encode(), sign(self.secret, body).encode()
        ):
            raise WebhookError(
                HTTPStatus.UNAUTHORIZED,
                f"{SIGNATURE_HEADER} does not match the body (expected sha256=<hex HMAC-SHA256 "
                "of the raw body keyed with the shared secret>)",
            )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_body(body: bytes) -> dict[str, Any]:
    """Return the body as a JSON object; raise :class:`WebhookError` (400) otherwise."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        raise WebhookError(HTTPStatus.BAD_REQUEST, "body is not UTF-8 text") from err
    except json.JSONDecodeError as err:
        raise WebhookError(
            HTTPStatus.BAD_REQUEST,
            f"body is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}",
        ) from err
    except ValueError as err:
        raise WebhookError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {err}") from err
    except RecursionError as err:
        raise WebhookError(HTTPStatus.BAD_REQUEST, "body is nested too deeply") from err
    if not isinstance(value, dict):
        kind = "null" if value is None else type(value).__name__
        raise WebhookError(HTTPStatus.BAD_REQUEST, f"body must be a JSON object, got a JSON {kind}")
    return value


def idempotency_key(headers: Message[str, str], body: dict[str, Any]) -> str | None:
    """Return the sender's idempotency key: the header, else the body's ``event_id``.

    Raises:
        WebhookError: 400 when the key is empty, too long or not printable ASCII.
    """
    key = headers.get(IDEMPOTENCY_HEADER)
    where = f"{IDEMPOTENCY_HEADER} header"
    if key is None and "event_id" in body:
        key, where = body["event_id"], "body field event_id"
        if not isinstance(key, str):
            raise WebhookError(HTTPStatus.BAD_REQUEST, f"{where} must be a string")
    if key is None:
        return None
    if not (0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH) or not all(
        "\x21" <= c <= "\x7e" for c in key
    ):
        raise WebhookError(
            HTTPStatus.BAD_REQUEST,
            f"{where} must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters",
        )
    return key


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    timeout = READ_TIMEOUT_SECONDS
    server_version = "aios-webhooks"
    sys_version = ""
    _body_read = False

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("webhook %s: " + format, self.client_address[0], *args)

    def _answer(self, status: HTTPStatus, payload: dict[str, Any], **headers: str) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.close_connection = True

    def _refuse(self, err: WebhookError, **headers: str) -> None:
        self._drain()
        self._answer(err.status, {"accepted": False, "error": err.message}, **headers)

    def _content_length(self) -> int | None:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            raise WebhookError(HTTPStatus.BAD_REQUEST, "Content-Length must be a whole number")
        return length

    def _drain(self) -> None:
        """Read and drop an unread body (bounded) so the client can read the answer."""
        try:
            length = self._content_length()
        except WebhookError:
            return
        if length and length <= DRAIN_LIMIT_BYTES and not self._body_read:
            self._body_read = True
            try:
                while length > 0:
                    chunk = self.rfile.read(min(length, 65_536))
                    if not chunk:
                        break
                    length -= len(chunk)
            except OSError:
                pass

    def _endpoint(self) -> Endpoint:
        path = urlsplit(self.path).path
        endpoint = self.server.endpoints.get(path)
        if endpoint is None:
            raise WebhookError(HTTPStatus.NOT_FOUND, f"no webhook at {path}")
        return endpoint

    def do_POST(self) -> None:
        """Check the request, then hand the body to the endpoint; answer 202 or an error."""
        try:
            endpoint = self._endpoint()
            if self.headers.get_content_type() != "application/json":
                raise WebhookError(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"
                )
            length = self._content_length()
            if length is None:
                raise WebhookError(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
            if length > endpoint.max_body_bytes:
                raise WebhookError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"body of {length} bytes is larger than the limit of "
                    f"{endpoint.max_body_bytes} bytes",
                )
            body = self.rfile.read(length)
            self._body_read = True
            if len(body) != length:
                raise WebhookError(HTTPStatus.BAD_REQUEST, "body is shorter than Content-Length")
            endpoint.check_secret(self.headers, body)
            value = parse_body(body)
            key = idempotency_key(self.headers, value)
            answer = endpoint.on_accept(value, key)
        except WebhookError as err:
            self._refuse(err)
            return
        except (TimeoutError, ConnectionError) as err:
            log.debug("webhook: client went away: %s", err)
            self.close_connection = True
            return
        except Exception:  # the server boundary: answer, log, keep serving
            log.exception("webhook %s: failed while handling a request", self.path)
            self._refuse(WebhookError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error"))
            return
        self._answer(HTTPStatus.ACCEPTED, {"accepted": True, **answer})

    def _not_post(self) -> None:
        try:
            self._endpoint()
        except WebhookError as err:
            self._refuse(err)
            return
        self._refuse(
            WebhookError(HTTPStatus.METHOD_NOT_ALLOWED, f"use POST, not {self.command}"),
            Allow="POST",
        )

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _not_post  # noqa: N815


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        self.endpoints: dict[str, Endpoint] = {}
        super().__init__(address, _Handler)


class WebhookServer:
    """An HTTP server in a background thread dispatching POSTs to registered endpoints.

    Args:
        host: IP address to bind (``127.0.0.1`` listens on this machine only; ``0.0.0.0``
            or ``::`` on every interface).
        port: TCP port; 0 picks a free one (read it from :attr:`port`).

    Raises:
        OSError: from :meth:`start` when the address cannot be bound (port in use).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requested_port = port
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound TCP port (the requested one, or the one picked for port 0)."""
        if self._http is None:
            return self.requested_port
        return int(self._http.server_address[1])

    def url(self, path: str) -> str:
        """Return the URL of ``path`` on this server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    @property
    def paths(self) -> list[str]:
        """The registered paths."""
        with self._lock:
            return [] if self._http is None else sorted(self._http.endpoints)

    def start(self) -> None:
        """Bind and serve in a daemon thread; does nothing if already started."""
        with self._lock:
            if self._http is not None:
                return
            family = (
                socket.AF_INET6 if ipaddress.ip_address(self.host).version == 6 else socket.AF_INET
            )
            self._http = _HttpServer((self.host, self.requested_port), family)
            self._thread = threading.Thread(
                target=self._http.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"webhooks-{self.host}:{self.port}",
                daemon=True,
            )
            self._thread.start()
        log.info("webhooks: listening on %s", self.url("/"))

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread; safe to call twice."""
        with self._lock:
            http, thread = self._http, self._thread
            self._http = self._thread = None
        if http is None:
            return
        http.shutdown()
        http.server_close()
        if thread is not None:
            thread.join()

    def add(self, endpoint: Endpoint) -> None:
        """Serve ``endpoint``; raise ``ValueError`` if its path is taken."""
        with self._lock:
            if self._http is None:
                raise RuntimeError("start the webhook server before adding endpoints")
            if endpoint.path in self._http.endpoints:
                raise ValueError(f"another webhook already uses the path {endpoint.path}")
            self._http.endpoints[endpoint.path] = endpoint

    def remove(self, path: str) -> int:
        """Stop serving ``path``; return how many endpoints remain."""
        with self._lock:
            if self._http is None:
                return 0
            self._http.endpoints.pop(path, None)
            return len(self._http.endpoints)


_SHARED: dict[tuple[str, int], WebhookServer] = {}
_SHARED_LOCK = threading.Lock()


def register(host: str, port: int, endpoint: Endpoint) -> WebhookServer:
    """Add ``endpoint`` to the shared server on ``(host, port)``, starting it if needed.

    Endpoints asking for port 0 share one server on a port picked at its start.

    Raises:
        ValueError: the path is already registered on that server.
        OSError: the server could not bind (port in use, address not on this machine).
    """
    with _SHARED_LOCK:
        server = _SHARED.get((host, port))
        if server is None:
            server = WebhookServer(host, port)
            server.start()
            _SHARED[(host, port)] = server
        try:
            server.add(endpoint)
        except ValueError:
            if not server.paths:
                server.stop()
                del _SHARED[(host, port)]
            raise
        return server


def unregister(server: WebhookServer, path: str) -> None:
    """Remove ``path`` from a shared server; stop the server when it has no path left."""
    with _SHARED_LOCK:
        if server.remove(path) > 0:
            return
        for key, shared in list(_SHARED.items()):
            if shared is server:
                del _SHARED[key]
        server.stop()
