"""The media upload route of runs at the edge, over real HTTP through ``aios up``'s adapter:
only a run's upload grant opens it, for that run, while it is active."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from aios.api.app import create_app
from aios.api.auth import Authenticator, issue_upload_grant
from aios.config import Settings
from aios.domain import Role, Run, RunStatus, User, utcnow
from aios.services import Services
from aios.store.sqlite import SqliteStore
from aios.up.adapter import ApiGatewayAdapter

SECRET = b"edge-upload-test-secret-" + b"k" * 24
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00" + b"\x00" * 64


@dataclass
class Server:
    url: str
    store: SqliteStore
    settings: Settings
    auth: Authenticator

    def grant(self, run_id: str, *, lifetime: int = 3600, now_offset: float = 0) -> str:
        return issue_upload_grant(
            SECRET,
            run_id=run_id,
            connector_id="site-gw",
            issuer=self.settings.jwt_issuer,
            now=utcnow() + timedelta(seconds=now_offset),
            lifetime_seconds=lifetime,
        )

    def put(
        self, run_id: str, kind: str, name: str, body: bytes, token: str | None
    ) -> httpx.Response:
        headers = {"Content-Type": "image/jpeg" if kind == "snapshots" else "video/mp4"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.put(
            f"{self.url}/api/v1/runs/{run_id}/media/{kind}/{name}",
            content=body,
            headers=headers,
            timeout=30,
        )


def _free_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """The API of one machine behind the aios up adapter, on a free loopback port, with
    two active runs (run_a, run_b) and a stopped one (run_c)."""
    settings = Settings(data_dir=tmp_path / "data")
    settings.data_dir.mkdir()
    store = SqliteStore(settings.data_dir / "aios.db")
    services = Services(store=store, settings=settings)
    auth = Authenticator(services, SECRET)
    for run_id, status in (
        ("run_a", RunStatus.RUNNING),
        ("run_b", RunStatus.STARTING),
        ("run_c", RunStatus.STOPPED),
    ):
        store.runs.create(Run(id=run_id, pipeline_id="pl_1", revision=1, status=status))
    adapter = ApiGatewayAdapter(create_app(services, authenticator=auth))
    app = Starlette(routes=[Route("/{path:path}", adapter.endpoint, methods=["GET", "PUT"])])
    sock = _free_socket()
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(uv.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{sock.getsockname()[1]}", store, settings, auth)
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()
        adapter.close()
        store.close()


def test_a_grant_uploads_its_runs_media_atomically_and_idempotently(server: Server) -> None:
    """201 when written, 200 for the same bytes again, the file served by the GET route."""
    grant = server.grant("run_a")
    # WHEN a connector uploads a snapshot and a clip of run_a with its grant
    first = server.put("run_a", "snapshots", "evt1.jpg", JPEG, grant)
    clip = server.put("run_a", "clips", "evt1.mp4", MP4, grant)
    again = server.put("run_a", "snapshots", "evt1.jpg", JPEG, grant)
    # THEN written once, the repeat acknowledged without change
    assert (first.status_code, clip.status_code, again.status_code) == (201, 201, 200)
    assert first.json() == {
        "run_id": "run_a",
        "kind": "snapshots",
        "name": "evt1.jpg",
        "bytes": len(JPEG),
    }
    folder = server.settings.data_dir / "runs" / "run_a" / "media"
    assert (folder / "snapshots" / "evt1.jpg").read_bytes() == JPEG
    assert sorted(p.name for p in (folder / "snapshots").iterdir()) == ["evt1.jpg"]
    # AND a user can download it with an access token
    user = User(username="vera", role=Role.VIEWER, password_hash="x")
    server.store.users.create(user)
    token, _ = server.auth.issue_access_token(user)
    res = httpx.get(
        f"{server.url}/api/v1/runs/run_a/media/snapshots/evt1.jpg",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert (res.status_code, res.content) == (200, JPEG)


def test_a_grant_for_one_run_cannot_upload_to_another(server: Server) -> None:
    """run_a's grant is refused for run_b (403), and nothing is written."""
    res = server.put("run_b", "snapshots", "evt1.jpg", JPEG, server.grant("run_a"))
    assert res.status_code == 403, res.text
    assert res.json()["error"]["code"] == "forbidden"
    assert not (server.settings.data_dir / "runs" / "run_b").exists()
    # AND with its own grant run_b accepts it
    assert (
        server.put("run_b", "snapshots", "evt1.jpg", JPEG, server.grant("run_b")).status_code == 201
    )


def test_expired_foreign_user_and_missing_tokens_are_refused(server: Server) -> None:
    """An expired grant, a grant of another key, a user's access token (even an admin's)
    and no token at all are 401; a grant is no access token either."""
    expired = server.grant("run_a", lifetime=60, now_offset=-3600)
    res = server.put("run_a", "snapshots", "e.jpg", JPEG, expired)
    assert (res.status_code, res.json()["error"]["code"]) == (401, "token_expired")
    foreign = issue_upload_grant(
        b"another-key-" + b"z" * 40,
        run_id="run_a",
        connector_id="site-gw",
        issuer=server.settings.jwt_issuer,
        now=utcnow(),
    )
    admin = User(username="ada", role=Role.ADMIN, password_hash="x")
    server.store.users.create(admin)
    access, _ = server.auth.issue_access_token(admin)
    for token, code in (
        (foreign, "invalid_token"),
        (access, "invalid_token"),
        (None, "unauthenticated"),
    ):
        res = server.put("run_a", "snapshots", "e.jpg", JPEG, token)
        assert (res.status_code, res.json()["error"]["code"]) == (401, code), res.text
    assert not (server.settings.data_dir / "runs" / "run_a").exists()
    # AND a grant does not sign anyone in
    res = httpx.get(
        f"{server.url}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {server.grant('run_a')}"},
    )
    assert res.status_code == 401


def test_uploads_are_refused_for_ended_or_unknown_runs_and_bad_files(server: Server) -> None:
    """A stopped run (409), an unknown run (404), a name that is not a media name (422),
    a body that is not the kind's format (415), an empty body (422), one over the limit
    (413): nothing written, never a server error."""
    cases = [
        ("run_c", "snapshots", "e.jpg", JPEG, 409),
        ("run_zz", "snapshots", "e.jpg", JPEG, 404),
        ("run_a", "snapshots", "e.mp4", JPEG, 422),
        ("run_a", "snapshots", "bad name.jpg", JPEG, 422),
        ("run_a", "thumbnails", "e.jpg", JPEG, 422),
        ("run_a", "snapshots", "e.jpg", b"GIF89a not a jpeg", 415),
        ("run_a", "clips", "e.mp4", JPEG, 415),
        ("run_a", "snapshots", "e.jpg", b"", 422),
    ]
    for run_id, kind, name, body, status in cases:
        res = server.put(run_id, kind, name, body, server.grant(run_id))
        assert res.status_code == status, (run_id, kind, name, res.status_code, res.text)
    big = JPEG + b"\x00" * (10 * 1024 * 1024)
    res = server.put("run_a", "snapshots", "big.jpg", big, server.grant("run_a"))
    assert res.status_code == 413, res.text
    media = server.settings.data_dir / "runs" / "run_a"
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))
