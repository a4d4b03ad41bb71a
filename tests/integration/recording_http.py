"""A local HTTP server that records every request and answers with a test's handler.

Used as the stand-in for services unreachable from tests (Telegram Bot API, WhatsApp Cloud
API, webhook receivers): the real client libraries are pointed at it by base URL.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)

    def form(self) -> dict[str, str | bytes]:
        """Return form fields (urlencoded or multipart; file parts as bytes)."""
        ctype = self.headers.get("content-type", "")
        if ctype.startswith("application/x-www-form-urlencoded"):
            return dict(parse_qsl(self.body.decode(), keep_blank_values=True))
        if ctype.startswith("multipart/form-data"):
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + self.body
            )
            fields: dict[str, str | bytes] = {}
            for part in message.iter_parts():  # type: ignore[attr-defined]
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                fields[name] = payload if part.get_filename() else payload.decode()
            return fields
        raise ValueError(f"not a form body: {ctype!r}")


@dataclass
class Reply:
    """What the server answers: status, JSON (or raw bytes), headers, optional delay."""

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


Handler = Callable[[Recorded], Reply]


class RecordingServer:
    """``ThreadingHTTPServer`` on 127.0.0.1 (ephemeral port) that records and replies.

    Use as a context manager; ``url`` is ``http://127.0.0.1:<port>``. A delayed reply waits
    at most ``delay_seconds`` and is cut short when the server stops.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with outer._lock:
                    outer.requests.append(request)
                reply = outer.handler(request)
                if reply.delay_seconds:
                    outer._stopping.wait(reply.delay_seconds)
                payload = reply.body
                headers = dict(reply.headers)
                if reply.json is not None:
                    payload = json.dumps(reply.json).encode()
                    headers.setdefault("Content-Type", "application/json")
                try:
                    self.send_response(reply.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            do_POST = _serve  # noqa: N815 (http.server's method names)
            do_GET = _serve  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def paths(self) -> list[str]:
        """Return the paths requested so far, in order."""
        with self._lock:
            return [r.path for r in self.requests]

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(handler: Handler) -> Iterator[RecordingServer]:
    """Yield a running :class:`RecordingServer` (for fixtures)."""
    with RecordingServer(handler) as server:
        yield server
