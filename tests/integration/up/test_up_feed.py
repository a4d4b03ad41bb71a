"""The WebSocket feed over real WebSocket connections on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from up_support import ServerThread, wait_until
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from aios.up.feed import WebSocketFeed

GOOD_TOKEN = "good-token"


def verify(token: str) -> str | None:
    """The test's tokens: one valid token, of user 'usr_test'."""
    return "usr_test" if token == GOOD_TOKEN else None


def serve_feed(feed: WebSocketFeed) -> ServerThread:
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> Any:
        feed.attach(asyncio.get_running_loop())
        yield
        await feed.close()

    return ServerThread(Starlette(routes=feed.routes(), lifespan=lifespan))


@pytest.fixture
def feed() -> WebSocketFeed:
    return WebSocketFeed(verify, max_queue_bytes=1024 * 1024)


@pytest.fixture
def server(feed: WebSocketFeed) -> Iterator[ServerThread]:
    with serve_feed(feed) as running:
        yield running


def subscribed(feed: WebSocketFeed, channel: str, count: int = 1) -> None:
    wait_until(lambda: feed.client_counts().get(channel, 0) >= count, what=f"{channel} client")


def publish_from_thread(feed: WebSocketFeed, channel: str, messages: list[dict[str, Any]]) -> None:
    thread = threading.Thread(
        target=lambda: [feed.publish(channel, m) for m in messages], name="publisher"
    )
    thread.start()
    thread.join(10)


def test_publish_from_another_thread_reaches_the_client(
    feed: WebSocketFeed, server: ServerThread
) -> None:
    """A message published by a non-loop thread arrives, with its channel, in order."""
    # GIVEN a console connected to /ws/devices with the token as query parameter
    with connect(f"{server.ws_url}/ws/devices?token={GOOD_TOKEN}") as ws:
        subscribed(feed, "devices")
        # WHEN another thread publishes two messages
        publish_from_thread(
            feed,
            "devices",
            [
                {"type": "device.status", "device_id": "cam-1", "status": "online"},
                {"type": "device.status", "device_id": "cam-1", "status": "offline"},
            ],
        )
        # THEN the console receives both, in order, tagged with the channel
        first = json.loads(ws.recv(timeout=5))
        second = json.loads(ws.recv(timeout=5))
    assert first == {
        "channel": "devices",
        "type": "device.status",
        "device_id": "cam-1",
        "status": "online",
    }
    assert second["status"] == "offline"
    assert feed.stats.messages_sent >= 2


def test_bearer_subprotocol_authenticates_and_channels_are_separate(
    feed: WebSocketFeed, server: ServerThread
) -> None:
    """A browser-style client (token as subprotocol) gets its pipeline's messages only."""
    with connect(
        f"{server.ws_url}/ws/pipelines/pl_1",
        subprotocols=["bearer", GOOD_TOKEN],  # type: ignore[list-item]
    ) as ws:
        assert ws.subprotocol == "bearer"
        subscribed(feed, "pipelines/pl_1")
        feed.publish("pipelines/pl_2", {"type": "run.status", "status": "running"})
        feed.publish("notifications", {"type": "alert.raised"})
        feed.publish("pipelines/pl_1", {"type": "run.status", "status": "stopped"})
        message = json.loads(ws.recv(timeout=5))
    assert message == {"channel": "pipelines/pl_1", "type": "run.status", "status": "stopped"}


@pytest.mark.parametrize(
    ("query", "subprotocols"),
    [("", None), ("?token=forged", None), ("", ["bearer", "forged"]), ("", ["bearer"])],
)
def test_unauthenticated_clients_are_refused(
    feed: WebSocketFeed, server: ServerThread, query: str, subprotocols: list[str] | None
) -> None:
    """No token, a bad one, or the bearer protocol without a token: HTTP 403."""
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/ws/notifications{query}", subprotocols=subprotocols)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    assert feed.client_counts() == {}
    assert feed.stats.clients_refused == 1


def raw_stalled_client(port: int, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def drain(ws: ClientConnection, count: int, into: list[dict[str, Any]]) -> None:
    for _ in range(count):
        into.append(json.loads(ws.recv(timeout=20)))


def test_a_stalled_client_is_dropped_without_slowing_publishers_or_others(
    feed: WebSocketFeed, server: ServerThread
) -> None:
    """A client that stops reading is disconnected once its backlog passes the bound;
    publishing never waits and the other client receives everything."""
    # GIVEN a client that never reads, and a normal one
    stalled = raw_stalled_client(server.port, f"/ws/devices?token={GOOD_TOKEN}")
    with connect(f"{server.ws_url}/ws/devices?token={GOOD_TOKEN}", max_size=None) as fast:
        subscribed(feed, "devices", 2)
        received: list[dict[str, Any]] = []
        reader = threading.Thread(target=drain, args=(fast, 640, received))
        reader.start()
        # WHEN 640 messages of 16 KiB (10 MiB: more than the kernel buffers and the
        # stalled client's 1 MiB allowance) are published, at the pace of the normal
        # client (never more than 32 messages, 512 KiB, ahead of it)
        payload = "x" * 16 * 1024
        slowest = 0.0
        for i in range(640):
            wait_until(lambda i=i: len(received) >= i - 32, timeout=20, what="normal client")
            started = time.perf_counter()
            feed.publish("devices", {"type": "device.heartbeat", "seq": i, "pad": payload})
            slowest = max(slowest, time.perf_counter() - started)
        reader.join(30)
        # THEN no publish call waited on a client
        assert slowest < 0.05
        # AND the normal client got every message, in order
        assert [m["seq"] for m in received] == list(range(640))
        # AND the stalled one was disconnected and counted
        wait_until(lambda: feed.stats.clients_dropped == 1, what="stalled client dropped")
        wait_until(lambda: feed.client_counts() == {"devices": 1}, what="one client left")
        assert feed.stats.messages_dropped >= 1
    stalled.close()


def test_publish_without_listeners_or_loop_is_a_no_op() -> None:
    """Nobody listening (or no server yet): publish returns at once and sends nothing."""
    feed = WebSocketFeed(verify)
    feed.publish("devices", {"type": "device.status"})
    assert feed.stats.messages_published == 0
    with pytest.raises(ValueError, match="max_queue_bytes"):
        WebSocketFeed(verify, max_queue_bytes=0)
