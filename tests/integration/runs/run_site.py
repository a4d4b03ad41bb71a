"""The service side of one machine for pipeline-run tests: a SQLite store, a feed that
records what it is given, the local launcher and the runs service."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import httpx
from pipeline_builders import detect_zone_dashboard_edges, edge

from aios import assets
from aios.config import Settings
from aios.domain import EventRecord, PipelineRecord, Run, RunStatus
from aios.events.webhooks import sign
from aios.runs.local import LocalRunLauncher
from aios.runs.service import PipelineRuns
from aios.services import Services
from aios.store.port import EventQuery
from aios.store.sqlite import SqliteStore

WAIT = 120.0
"""Longest a test waits for a run to reach a state: the first run of a process imports the
video and ASL runtimes and loads the model (≈10 s on 2 idle cores, far more when busy)."""

WEBHOOK_SECRET = "whsec-runs-5d1c0a"
TERMINAL = (RunStatus.SUCCEEDED, RunStatus.STOPPED, RunStatus.FAILED)
CLIP_FRAMES = 20


class RecordingFeed:
    """A :class:`aios.services.Feed` that keeps every message published, by channel."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Keep the message (after a JSON round trip: it must be serialisable)."""
        copy = json.loads(json.dumps(message))
        with self._lock:
            self.messages.append((channel, copy))

    def on(self, channel: str, kind: str | None = None) -> list[dict[str, Any]]:
        """Return the messages published on ``channel`` (of ``type`` ``kind``), in order."""
        with self._lock:
            return [
                m for c, m in self.messages if c == channel and (kind is None or m["type"] == kind)
            ]


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, what: str = "") -> Any:
    """Poll ``condition`` every 50 ms until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.05)


class Site:
    """One machine's service side: store, feed, launcher and the runs service."""

    def __init__(self, root: Path, *, max_concurrent: int = 4) -> None:
        secrets = root / "secrets.json"
        secrets.write_text(json.dumps({"door_secret": WEBHOOK_SECRET}))
        secrets.chmod(0o600)
        self.settings = Settings(data_dir=root / "data", secrets_file=secrets)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = SqliteStore(self.settings.data_dir / "aios.db")
        self.feed = RecordingFeed()
        self.services = Services(store=self.store, settings=self.settings, feed=self.feed)
        self.launcher = LocalRunLauncher(
            self.services,
            data_dir=self.settings.data_dir,
            max_concurrent=max_concurrent,
            counters_interval=0.25,
        )
        self.services.launcher = self.launcher
        self.runs = PipelineRuns(self.services)

    def add_pipeline(self, document: dict[str, Any], pipeline_id: str | None = None) -> str:
        """Store ``document`` as a new pipeline; return its id."""
        record = PipelineRecord(name=document["name"])
        if pipeline_id is not None:
            record = record.model_copy(update={"id": pipeline_id})
        return self.store.pipelines.create(record, document).id

    def run(self, run_id: str) -> Run:
        """Return the stored run."""
        run = self.store.runs.get(run_id)
        assert run is not None
        return run

    def wait_status(self, run_id: str, *statuses: RunStatus, timeout: float = WAIT) -> Run:
        """Wait until the stored run has one of ``statuses``; return it."""
        deadline = time.monotonic() + timeout
        while (run := self.run(run_id)).status not in statuses:
            if time.monotonic() > deadline:
                wanted = ", ".join(s.value for s in statuses)
                raise AssertionError(
                    f"run {run_id} is {run.status.value} ({run.error}), not {wanted}, "
                    f"after {timeout} s"
                )
            time.sleep(0.05)
        return run

    def close(self) -> None:
        """Stop every run and close the store."""
        self.launcher.shutdown(timeout=WAIT)
        self.store.close()


def cut_clip(path: Path, frames: int = CLIP_FRAMES) -> Path:
    """Write the first ``frames`` frames of vtest.avi (people walking; 768×576, 10 fps) to
    ``path`` as MJPEG AVI; return ``path``."""
    source = cv2.VideoCapture(str(assets.path("vtest.avi")))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    try:
        for _ in range(frames):
            ok, frame = source.read()
            assert ok, "vtest.avi ended early"
            writer.write(frame)
    finally:
        writer.release()
        source.release()
    return path


def video_pipeline(
    path: Path, *, realtime: bool = False, loop: bool = False, clip_post_seconds: float = 1.0
) -> dict[str, Any]:
    """A file → people detection → whole-frame zone (snapshots, clips) → dashboard pipeline."""
    return {
        "schemaVersion": 1,
        "name": "Courtyard watch",
        "nodes": [
            {
                "id": "camera",
                "type": "aios/file.input@1",
                "config": {
                    "path": str(path),
                    "realtime": realtime,
                    "loop": loop,
                    "start_time": "2026-01-05T09:00:00Z",
                },
            },
            {
                "id": "detect",
                "type": "aios/object_detection@1",
                "config": {"classes": ["person"], "min_confidence": 0.3, "input_size": 320},
            },
            {
                "id": "area",
                "type": "aios/zone@1",
                "config": {
                    "name": "courtyard",
                    "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                    "classes": ["person"],
                    "evidence": {
                        "snapshot": True,
                        "clip": True,
                        "clip_pre_seconds": 0.5,
                        "clip_post_seconds": clip_post_seconds,
                    },
                },
            },
            {
                "id": "dashboard",
                "type": "aios/dashboard@1",
                "config": {"panel": "Courtyard", "severity": "warning"},
            },
        ],
        "edges": detect_zone_dashboard_edges("camera", "detect", "area", "dashboard"),
    }


def webhook_pipeline(
    path: str = "/hooks/door", *, secret_name: str = "door_secret"
) -> dict[str, Any]:
    """A webhook → 'state is open' → dashboard (critical) pipeline, listening on a free port."""
    return {
        "schemaVersion": 1,
        "name": "Door alarms",
        "nodes": [
            {
                "id": "door",
                "type": "aios/webhook@1",
                "config": {"path": path, "secret_name": secret_name, "port": 0},
            },
            {
                "id": "is_open",
                "type": "aios/conditional@1",
                "config": {
                    "match": "all",
                    "conditions": [{"field": "data.state", "operator": "eq", "value": "open"}],
                },
            },
            {
                "id": "dashboard",
                "type": "aios/dashboard@1",
                "config": {"panel": "Doors", "severity": "critical"},
            },
        ],
        "edges": [
            edge("door", "events", "is_open", "events"),
            edge("is_open", "true", "dashboard", "events"),
        ],
    }


def webhook_action_pipeline(action: dict[str, Any]) -> dict[str, Any]:
    """A webhook → ``action`` pipeline (the action node's id must be 'act')."""
    return {
        "schemaVersion": 1,
        "name": "Door actions",
        "nodes": [
            {
                "id": "door",
                "type": "aios/webhook@1",
                "config": {"path": "/hooks/door", "secret_name": "door_secret", "port": 0},
            },
            action,
        ],
        "edges": [edge("door", "events", "act", "events")],
    }


def stored_events(site: Site, run_id: str) -> list[EventRecord]:
    """Return the run's stored events."""
    return site.store.events.list(EventQuery(run_id=run_id), limit=1000).items


def statuses(site: Site, pipeline_id: str, run_id: str) -> list[str]:
    """Return the statuses published for the run, in order."""
    channel = f"pipelines/{pipeline_id}"
    return [m["status"] for m in site.feed.on(channel, "run.status") if m["run_id"] == run_id]


def post(url: str, body: dict[str, Any], secret: str = WEBHOOK_SECRET) -> httpx.Response:
    """POST ``body`` to a webhook with a valid HMAC signature."""
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-AIOS-Signature": sign(secret, raw)}
    return httpx.post(url, content=raw, headers=headers, timeout=5)


def webhook_url(site: Site, run: Run) -> str:
    """Wait until the run listens; return the URL of its webhook node 'door'."""
    site.wait_status(run.id, RunStatus.RUNNING)
    handle = site.launcher.handle(run.id)
    assert handle is not None
    url: str = wait_until(lambda: handle.webhook_urls().get("door"), what="the webhook URL")
    return url


def api_get(site: Site, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` from the site's API as a viewer, the way ``aios up`` serves it: the
    HTTP adapter's proxy event, the resolver, the adapter's HTTP response. Returns
    (status, headers with lower-case names, body bytes)."""
    from aios.api.app import create_app
    from aios.domain import Role, User
    from aios.up.adapter import build_event, build_response

    app = create_app(site.services)
    now = site.services.clock()
    user = site.store.users.get_by_username("viewer-api") or site.store.users.create(
        User(
            username="viewer-api",
            role=Role.VIEWER,
            password_hash="$argon2id$unused",
            created_at=now,
            updated_at=now,
        )
    )
    token = app.auth.issue_tokens(user).access_token
    event = build_event(
        method="GET",
        path=path,
        raw_query="",
        headers=[("Host", "localhost"), ("Authorization", f"Bearer {token}")],
        body=b"",
        source_ip="127.0.0.1",
    )
    response = build_response(app.resolve(event, None))
    headers = {k.lower(): v for k, v in response.headers.items()}
    return response.status_code, headers, bytes(response.body)
