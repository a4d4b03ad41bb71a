"""Live feeds over WebSocket: ``/ws/devices``, ``/ws/notifications``, ``/ws/pipelines/{id}``.

:class:`WebSocketFeed` is the local :class:`~aios.services.Feed`. ``publish`` may be called
from any thread (API workers, run threads, the MQTT ingester): it serialises the message
and hands it to the event loop without waiting. Every client has a queue bounded in bytes;
a client whose unsent messages would exceed ``max_queue_bytes`` is disconnected with close
code 1013 ("try again later", IANA WebSocket close code registry) and counted, so a slow
console never slows the publishers or the other consoles (nor grows the process). The
console reconnects and reloads what it shows.

Each frame sent is one JSON object: the published message with ``"channel"`` added
(``{"channel": "devices", "type": "device.status", ...}``).

Authentication: the access token (the JWT the API's login returns), either as the query
parameter ``?token=<jwt>`` or, since browsers cannot set headers on a WebSocket, as the
subprotocol pair ``new WebSocket(url, ["bearer", token])`` (the server answers with the
``bearer`` subprotocol). Without a valid token the handshake is refused with HTTP 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from aios.up.encoding import json_default

log = logging.getLogger(__name__)

BEARER_SUBPROTOCOL = "bearer"
CLOSE_TOO_SLOW = 1013
"""RFC 6455 close code "Try Again Later": the client fell too far behind."""
CLOSE_GOING_AWAY = 1001
DEFAULT_MAX_QUEUE_BYTES = 4 * 1024 * 1024
"""4 MiB: some ten thousand device messages of a few hundred bytes."""

TokenVerifier = Callable[[str], str | None]
"""Returns who the access token belongs to (a user id), or None if it is not valid."""


@dataclass
class FeedStats:
    """Counters of the feed since it started."""

    messages_published: int = 0
    messages_sent: int = 0
    messages_dropped: int = 0
    clients_dropped: int = 0
    clients_refused: int = 0


@dataclass(eq=False)
class _Client:
    channel: str
    subject: str
    queue: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    queued_bytes: int = 0
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int = 1000


def channel_of(path_channel: str, pipeline_id: str | None = None) -> str:
    """The feed channel of a WebSocket path: ``devices``, ``notifications`` or
    ``pipelines/{pipeline_id}``."""
    return f"pipelines/{pipeline_id}" if pipeline_id is not None else path_channel


class WebSocketFeed:
    """The WebSocket feed; see the module docstring.

    ``verify_token(token)`` authenticates clients. ``max_queue_bytes`` is how much a client
    may lag (unsent messages, bytes of JSON) before it is disconnected. :meth:`attach` binds
    the feed to the server's event loop (messages published before that, or with nobody
    listening, are discarded).
    """

    def __init__(
        self, verify_token: TokenVerifier, *, max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    ) -> None:
        if max_queue_bytes < 1:
            raise ValueError("max_queue_bytes must be at least 1")
        self.verify_token = verify_token
        self.max_queue_bytes = max_queue_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[str, set[_Client]] = {}
        # Channels with listeners, replaced (never mutated) so publishers read it lock-free.
        self._listened: frozenset[str] = frozenset()
        self._stats_lock = threading.Lock()
        self.stats = FeedStats()

    # ------------------------------------------------------------------ publishing

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver through ``loop`` (the server's event loop) from now on."""
        self._loop = loop

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to the channel's clients; never blocks, from any thread.

        Raises:
            TypeError: the message is not JSON-serialisable (datetimes are sent as ISO 8601).
        """
        loop = self._loop
        if loop is None or channel not in self._listened or loop.is_closed():
            return
        text = json.dumps({"channel": channel, **message}, default=json_default)
        with self._stats_lock:
            self.stats.messages_published += 1
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody listens
            loop.call_soon_threadsafe(self._dispatch, channel, text)

    def _dispatch(self, channel: str, text: str) -> None:
        for client in list(self._clients.get(channel, ())):
            if client.closing.is_set():
                continue
            if client.queued_bytes + len(text) <= self.max_queue_bytes:
                client.queued_bytes += len(text)
                client.queue.put_nowait(text)
            else:
                with self._stats_lock:
                    self.stats.messages_dropped += 1
                    self.stats.clients_dropped += 1
                log.warning(
                    "websocket client too slow, disconnected",
                    extra={
                        "channel": channel,
                        "subject": client.subject,
                        "queued_messages": client.queue.qsize(),
                        "queued_bytes": client.queued_bytes,
                    },
                )
                client.close_code = CLOSE_TOO_SLOW
                client.closing.set()

    # ------------------------------------------------------------------ clients

    def client_counts(self) -> dict[str, int]:
        """Connected clients by channel."""
        return {channel: len(clients) for channel, clients in self._clients.items() if clients}

    def _register(self, client: _Client) -> None:
        self._clients.setdefault(client.channel, set()).add(client)
        self._listened = frozenset(c for c, members in self._clients.items() if members)

    def _unregister(self, client: _Client) -> None:
        members = self._clients.get(client.channel)
        if members is not None:
            members.discard(client)
            if not members:
                del self._clients[client.channel]
        self._listened = frozenset(c for c, members in self._clients.items() if members)

    @staticmethod
    def _token_of(websocket: WebSocket) -> tuple[str | None, str | None]:
        """The token offered and the subprotocol to answer with."""
        token = websocket.query_params.get("token")
        if token:
            return token, None
        offered = [
            p.strip()
            for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
            if p.strip()
        ]
        if BEARER_SUBPROTOCOL in offered:
            others = [p for p in offered if p != BEARER_SUBPROTOCOL]
            if others:
                return others[0], BEARER_SUBPROTOCOL
        return None, None

    async def serve(self, websocket: WebSocket) -> None:
        """Serve one client (the endpoint of every feed route)."""
        pipeline_id = websocket.path_params.get("pipeline_id")
        channel = channel_of(websocket.url.path.rsplit("/", 1)[-1], pipeline_id)
        token, subprotocol = self._token_of(websocket)
        subject = await asyncio.to_thread(self.verify_token, token) if token else None
        if subject is None:
            with self._stats_lock:
                self.stats.clients_refused += 1
            log.info("websocket refused: no valid access token", extra={"channel": channel})
            await websocket.close(code=1008)  # before accept: the handshake gets HTTP 403
            return
        await websocket.accept(subprotocol=subprotocol)
        client = _Client(channel=channel, subject=subject)
        self._register(client)
        log.info("websocket connected", extra={"channel": channel, "subject": subject})
        sender = asyncio.create_task(self._send_loop(websocket, client))
        receiver = asyncio.create_task(self._receive_loop(websocket, client))
        try:
            await client.closing.wait()
        finally:
            self._unregister(client)
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
            if client.close_code != 0:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(websocket.close(code=client.close_code), 2.0)
            log.info(
                "websocket disconnected",
                extra={"channel": channel, "subject": subject, "code": client.close_code},
            )

    async def _send_loop(self, websocket: WebSocket, client: _Client) -> None:
        try:
            while True:
                text = await client.queue.get()
                await websocket.send_text(text)
                client.queued_bytes -= len(text)
                with self._stats_lock:
                    self.stats.messages_sent += 1
        except (WebSocketDisconnect, RuntimeError, OSError):
            client.close_code = 0
            client.closing.set()

    async def _receive_loop(self, websocket: WebSocket, client: _Client) -> None:
        """Read (and ignore) what the client sends, to notice when it goes away."""
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        client.close_code = 0
        client.closing.set()

    async def close(self) -> None:
        """Disconnect every client (close code 1001, going away)."""
        for members in list(self._clients.values()):
            for client in list(members):
                client.close_code = CLOSE_GOING_AWAY
                client.closing.set()

    def routes(self) -> list[WebSocketRoute]:
        """The Starlette routes of the three feeds."""
        return [
            WebSocketRoute("/ws/devices", self.serve),
            WebSocketRoute("/ws/notifications", self.serve),
            WebSocketRoute("/ws/pipelines/{pipeline_id}", self.serve),
        ]
