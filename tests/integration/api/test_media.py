"""GET /api/v1/runs/{run_id}/media/{kind}/{name}: a run's snapshots and clips, confined to
the run's media folder, base64 in the proxy response, bounded in size."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from api_client import proxy_event
from api_support import Account
from starlette.applications import Starlette
from starlette.routing import Route

from aios.api.app import ApiResolver
from aios.domain import PipelineRecord, Run, RunStatus
from aios.runs.media import (
    MAX_MEDIA_BYTES,
    FolderMediaStore,
    MediaNotFound,
    MediaTooLarge,
    media_url,
)
from aios.up.adapter import ApiGatewayAdapter

EVENT_ID = "0f3c9a1b2d4e5f60718293a4b5c6d7e8"


def jpeg_bytes() -> bytes:
    """A small real JPEG: a 64×48 gradient with a white square."""
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    image[:, :, 1] = np.linspace(0, 255, 64, dtype=np.uint8)
    image[10:30, 20:40] = 255
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return bytes(encoded.tobytes())


def media_folder(app: ApiResolver, run_id: str, kind: str = "snapshots") -> Path:
    folder = app.services.settings.data_dir / "runs" / run_id / "media" / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def run(app: ApiResolver) -> Run:
    """A stored run (of a stored pipeline)."""
    store = app.services.store
    record = store.pipelines.create(PipelineRecord(name="Courtyard"), {"name": "Courtyard"})
    return store.runs.create(
        Run(
            pipeline_id=record.id,
            revision=1,
            status=RunStatus.SUCCEEDED,
            started_at=app.services.clock(),
        )
    )


@pytest.fixture
def snapshot(app: ApiResolver, run: Run) -> bytes:
    """A JPEG snapshot written in the run's media folder as ``<EVENT_ID>.jpg``."""
    data = jpeg_bytes()
    (media_folder(app, run.id) / f"{EVENT_ID}.jpg").write_bytes(data)
    return data


def fetch(app: ApiResolver, path: str, token: str | None = None) -> dict[str, Any]:
    """The raw proxy response of GET ``path``."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return app.resolve(proxy_event("GET", path, headers=headers), None)


def body_bytes(raw: dict[str, Any]) -> bytes:
    assert raw["isBase64Encoded"] is True, raw
    return base64.b64decode(raw["body"])


def headers_of(raw: dict[str, Any]) -> dict[str, str]:
    out = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
    for key, values in (raw.get("multiValueHeaders") or {}).items():
        out.setdefault(key.lower(), ",".join(values))
    return out


def error_code(raw: dict[str, Any]) -> str:
    return str(json.loads(raw["body"])["error"]["code"])


def test_viewer_downloads_a_snapshot_byte_for_byte(
    app: ApiResolver, run: Run, snapshot: bytes, viewer: Account
) -> None:
    """A viewer gets the JPEG, base64 in the proxy response, cacheable privately."""
    # WHEN a viewer asks for the snapshot at its URL
    raw = fetch(app, media_url(run.id, "snapshots", f"{EVENT_ID}.jpg"), viewer.token)
    # THEN it is the file, byte for byte, as a JPEG
    assert raw["statusCode"] == 200, raw
    assert body_bytes(raw) == snapshot
    headers = headers_of(raw)
    assert headers["content-type"] == "image/jpeg"
    assert headers["cache-control"] == "private, max-age=3600"
    decoded = cv2.imdecode(np.frombuffer(body_bytes(raw), np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == (48, 64, 3)


def test_clip_is_served_as_mp4(app: ApiResolver, run: Run, viewer: Account) -> None:
    """Clips come back as video/mp4."""
    data = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4
    (media_folder(app, run.id, "clips") / f"{EVENT_ID}.mp4").write_bytes(data)
    raw = fetch(app, media_url(run.id, "clips", f"{EVENT_ID}.mp4"), viewer.token)
    assert raw["statusCode"] == 200, raw
    assert headers_of(raw)["content-type"] == "video/mp4"
    assert body_bytes(raw) == data


def test_without_a_token_is_401(app: ApiResolver, run: Run, snapshot: bytes) -> None:
    raw = fetch(app, media_url(run.id, "snapshots", f"{EVENT_ID}.jpg"))
    assert raw["statusCode"] == 401
    assert error_code(raw) == "unauthenticated"
    assert "isBase64Encoded" not in raw or raw["isBase64Encoded"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/runs/run_0000000000000000/media/snapshots/{event}.jpg",  # unknown run
        "/api/v1/runs/{run}/media/snapshots/ffffffffffffffffffffffffffffffff.jpg",
        "/api/v1/runs/{run}/media/clips/{event}.mp4",  # no such clip
        "/api/v1/runs/{run}/media/clips/{event}.jpg",  # a clip is not a .jpg
        "/api/v1/runs/{run}/media/snapshots/{event}.mp4",
    ],
)
def test_unknown_run_or_file_is_404(
    app: ApiResolver, run: Run, snapshot: bytes, viewer: Account, path: str
) -> None:
    raw = fetch(app, path.format(run=run.id, event=EVENT_ID), viewer.token)
    assert raw["statusCode"] == 404, raw
    assert error_code(raw) == "not_found"


def test_traversal_attempts_are_refused(
    app: ApiResolver, run: Run, snapshot: bytes, viewer: Account, tmp_path: Path
) -> None:
    """``..`` (plain or encoded), encoded slashes and bad kinds never leave the folder."""
    # GIVEN a JPEG outside the run's media folder, next to it and outside the data folder
    secret = b"\xff\xd8secret-outside\xff\xd9"
    data_dir = app.services.settings.data_dir
    (data_dir / "runs" / run.id / "media" / "outside.jpg").write_bytes(secret)
    (data_dir / "outside.jpg").write_bytes(secret)
    (tmp_path / "outside.jpg").write_bytes(secret)
    base = f"/api/v1/runs/{run.id}/media"
    attempts = [
        f"{base}/snapshots/..%2Foutside.jpg",
        f"{base}/snapshots/..%2F..%2F..%2F..%2Foutside.jpg",
        f"{base}/snapshots/%2E%2E%2Foutside.jpg",
        f"{base}/snapshots/../outside.jpg",
        f"{base}/snapshots/..%5Coutside.jpg",
        f"{base}/..%2Fmedia/outside.jpg",
        f"{base}/snapshots%2F..%2F/outside.jpg",
        f"{base}/%2E%2E/outside.jpg",
        f"{base}/snapshots/..",
        f"{base}/snapshots/.jpg",
        "/api/v1/runs/..%2F..%2F/media/snapshots/outside.jpg",
        f"/api/v1/runs/../media/snapshots/{EVENT_ID}.jpg",
    ]
    for path in attempts:
        # WHEN a viewer asks for it by a path that climbs out
        raw = fetch(app, path, viewer.token)
        # THEN it is refused and the outside file is never sent
        assert raw["statusCode"] in (404, 422), (path, raw)
        assert not raw.get("isBase64Encoded"), path
        assert b"secret-outside" not in str(raw["body"]).encode(), path


def test_symlinks_out_of_the_folder_are_refused(
    app: ApiResolver, run: Run, snapshot: bytes, viewer: Account, tmp_path: Path
) -> None:
    """A symbolic link in the media folder (to a file, or as the folder) is not followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.jpg").write_bytes(b"\xff\xd8secret-outside\xff\xd9")
    folder = media_folder(app, run.id)
    # GIVEN a link to an outside file, and a link to the run's own snapshot
    (folder / "leak.jpg").symlink_to(outside / "leak.jpg")
    (folder / "alias.jpg").symlink_to(folder / f"{EVENT_ID}.jpg")
    for name in ("leak.jpg", "alias.jpg"):
        raw = fetch(app, media_url(run.id, "snapshots", name), viewer.token)
        assert raw["statusCode"] == 404, (name, raw)
    # AND a run whose clips folder is a link to an outside folder
    clips = media_folder(app, run.id, "clips")
    clips.rmdir()
    clips.symlink_to(outside, target_is_directory=True)
    (outside / "leak.mp4").write_bytes(b"secret-outside-video")
    raw = fetch(app, media_url(run.id, "clips", "leak.mp4"), viewer.token)
    assert raw["statusCode"] == 404, raw
    # while the real file is still served
    real = fetch(app, media_url(run.id, "snapshots", f"{EVENT_ID}.jpg"), viewer.token)
    assert real["statusCode"] == 200 and body_bytes(real) == snapshot


def test_oversize_file_is_413(app: ApiResolver, run: Run, viewer: Account) -> None:
    """A file a Lambda response cannot carry is refused with a clear message."""
    # GIVEN a clip one byte over the limit, and one exactly at it
    folder = media_folder(app, run.id, "clips")
    (folder / "big.mp4").write_bytes(b"\x00" * (MAX_MEDIA_BYTES + 1))
    (folder / "limit.mp4").write_bytes(b"\x01" * MAX_MEDIA_BYTES)
    # WHEN they are downloaded
    big = fetch(app, media_url(run.id, "clips", "big.mp4"), viewer.token)
    limit = fetch(app, media_url(run.id, "clips", "limit.mp4"), viewer.token)
    # THEN the larger one is a 413 naming the sizes; the other fits a Lambda response
    assert big["statusCode"] == 413, big
    assert error_code(big) == "media_too_large"
    message = json.loads(big["body"])["error"]["message"]
    assert str(MAX_MEDIA_BYTES + 1) in message and str(MAX_MEDIA_BYTES) in message
    assert limit["statusCode"] == 200
    assert len(body_bytes(limit)) == MAX_MEDIA_BYTES
    assert len(json.dumps(limit)) < 6 * 1024 * 1024  # Lambda's response payload quota


def test_openapi_documents_the_media_route(app: ApiResolver) -> None:
    raw = app.resolve(proxy_event("GET", "/openapi.json"), None)
    spec = json.loads(raw["body"])
    operation = spec["paths"]["/api/v1/runs/{run_id}/media/{kind}/{name}"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {"image/jpeg", "video/mp4"}
    assert {"401", "403", "404", "413"} <= set(operation["responses"])


class _Server:
    """The API behind the local HTTP adapter, served by uvicorn on 127.0.0.1:<free port>."""

    def __init__(self, app: ApiResolver) -> None:
        self.adapter = ApiGatewayAdapter(app)
        asgi = Starlette(routes=[Route("/{path:path}", self.adapter.endpoint, methods=["GET"])])
        self.server = uvicorn.Server(uvicorn.Config(asgi, log_config=None, access_log=False))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self.sock])), daemon=True
        )

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.adapter.close()
        self.sock.close()


@pytest.fixture
def http(app: ApiResolver) -> Iterator[str]:
    with _Server(app) as server:
        yield f"http://127.0.0.1:{server.port}"


def test_snapshot_over_real_http(http: str, run: Run, snapshot: bytes, viewer: Account) -> None:
    """Through ``aios up``'s HTTP adapter the body arrives as the JPEG's bytes."""
    url = http + media_url(run.id, "snapshots", f"{EVENT_ID}.jpg")
    r = httpx.get(
        url, headers={"Authorization": f"Bearer {viewer.token}", "Host": "localhost"}, timeout=10
    )
    assert r.status_code == 200, r.text
    assert r.content == snapshot
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "private, max-age=3600"
    # an encoded traversal over the wire is refused too
    bad = httpx.get(
        f"{http}/api/v1/runs/{run.id}/media/snapshots/..%2F..%2F..%2Faios.db",
        headers={"Authorization": f"Bearer {viewer.token}", "Host": "localhost"},
        timeout=10,
    )
    assert bad.status_code in (404, 422), bad.text


def test_folder_store_refuses_climbing_names_by_itself(
    app: ApiResolver, run: Run, snapshot: bytes
) -> None:
    """Whatever the route lets through, the folder store itself stays in the folder."""
    data_dir = app.services.settings.data_dir
    (data_dir / "runs" / run.id / "media" / "outside.jpg").write_bytes(b"secret-outside")
    files = FolderMediaStore(data_dir)
    for run_id, kind, name in [
        (run.id, "snapshots", "../outside.jpg"),
        (run.id, "snapshots", "..\\outside.jpg"),
        (run.id, "..", "outside.jpg"),
        ("..", "snapshots", f"{EVENT_ID}.jpg"),
        (f"{run.id}/media", "snapshots", f"{EVENT_ID}.jpg"),
        (run.id, "snapshots", ".."),
    ]:
        with pytest.raises(MediaNotFound):
            files.read(run_id, kind, name, max_bytes=MAX_MEDIA_BYTES)
    assert files.read(run.id, "snapshots", f"{EVENT_ID}.jpg", max_bytes=10_000) == snapshot
    with pytest.raises(MediaTooLarge) as too_large:
        files.read(run.id, "snapshots", f"{EVENT_ID}.jpg", max_bytes=10)
    assert (too_large.value.size, too_large.value.limit) == (len(snapshot), 10)
