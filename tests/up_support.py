"""Helpers of the ``aios up`` tests: a uvicorn server in a thread, free ports, waiting."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from aios.up.server import bind_socket

WAIT = 10.0


def free_port() -> int:
    """A TCP port nothing listens on now (bound to port 0, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached within {timeout} s: {what}"
        time.sleep(0.02)


class ServerThread:
    """An ASGI app served by uvicorn on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.sock = bind_socket("127.0.0.1", 0)  # as aios up binds its HTTP socket
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started, what="server started")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT)
        self.sock.close()
        assert not self.thread.is_alive(), "server thread did not stop"


def connected(device: dict[str, Any]) -> bool:
    """Online, or warning only because this shared machine's CPU is busy (the connector
    reports the whole machine's load)."""
    if device["status"] == "online":
        return True
    reasons = device.get("status_reasons") or []
    return (
        device["status"] == "warning"
        and bool(reasons)
        and all(r.startswith("cpu_percent ") for r in reasons)
    )
