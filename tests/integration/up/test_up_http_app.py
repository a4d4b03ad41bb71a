"""The HTTP application of ``aios up``: console files, index, health, metrics, hosts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from up_support import ServerThread

from aios.up.adapter import ApiGatewayAdapter
from aios.up.feed import WebSocketFeed
from aios.up.metrics import IngestCounts, Metrics, Sources
from aios.up.server import HealthCheck, Scheduler, build_http_app, explained


def tiny_api() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver()

    @app.get("/api/v1/ping")
    def ping() -> dict[str, Any]:
        return {"pong": True}

    @app.get("/docs")
    def docs() -> dict[str, Any]:
        return {"docs": True}

    return app


class Probe:
    """A health probe the test switches."""

    def __init__(self) -> None:
        self.ok = True

    def __call__(self) -> bool:
        if self.ok is None:
            raise ConnectionError("down")
        return self.ok


@pytest.fixture
def web_dir(tmp_path: Path) -> Path:
    web = tmp_path / "dist"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>AIOS</title>", encoding="utf-8")
    (web / "assets" / "app.js").write_text("console.log('aios')", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("outside", encoding="utf-8")
    return web


def make_app(web: Path | None, probe: Probe) -> tuple[Any, Metrics]:
    metrics = Metrics(
        Sources(
            websocket_clients=lambda: {"devices": 2, "pipelines/p1": 1, "pipelines/p2": 1},
            websocket_dropped=lambda: (3, 1),
            ingest=lambda: IngestCounts(ingested=7, refused={"bad_json": 2, "unknown_device": 1}),
            active_runs=lambda: 1,
            devices_by_status=lambda: {"online": 4, "offline": 1},
        )
    )
    app = build_http_app(
        adapter=ApiGatewayAdapter(tiny_api(), observe=metrics.observe_request),
        feed=WebSocketFeed(lambda _t: None),
        metrics=metrics,
        health=HealthCheck({"store": probe, "broker": lambda: True}),
        allowed_hosts=["127.0.0.1", "aios.example.com"],
        web_dir=web,
    )
    return app, metrics


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def with_console(web_dir: Path, probe: Probe) -> Iterator[ServerThread]:
    app, _ = make_app(web_dir, probe)
    with ServerThread(app) as server:
        yield server


@pytest.fixture
def without_console(probe: Probe) -> Iterator[ServerThread]:
    app, _ = make_app(None, probe)
    with ServerThread(app) as server:
        yield server


def test_console_files_and_spa_fallback(with_console: ServerThread) -> None:
    """Files are served; the console's own routes get index.html; the API still works."""
    base = with_console.url
    assert "<title>AIOS</title>" in httpx.get(f"{base}/").text
    asset = httpx.get(f"{base}/assets/app.js")
    assert asset.status_code == 200
    assert asset.text == "console.log('aios')"
    route = httpx.get(f"{base}/devices/cam-1")
    assert route.status_code == 200
    assert "<title>AIOS</title>" in route.text
    assert route.headers["cache-control"] == "no-cache"
    assert httpx.get(f"{base}/assets/missing.js").status_code == 404
    assert httpx.get(f"{base}/api/v1/ping").json() == {"pong": True}
    assert httpx.get(f"{base}/docs").json() == {"docs": True}


def test_paths_cannot_leave_the_console_folder(with_console: ServerThread) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"):
        r = httpx.get(with_console.url + path)
        assert "outside" not in r.text


def test_without_console_the_root_is_a_json_index(without_console: ServerThread) -> None:
    base = without_console.url
    index = httpx.get(f"{base}/").json()
    assert index["docs"] == "/docs"
    assert index["api"] == "/api/v1"
    unknown = httpx.get(f"{base}/nothing-here")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/json")


def test_health_is_503_when_a_probe_fails(without_console: ServerThread, probe: Probe) -> None:
    base = without_console.url
    assert httpx.get(f"{base}/healthz").json() == {
        "status": "ok",
        "checks": {"store": {"ok": True}, "broker": {"ok": True}},
    }
    probe.ok = False
    r = httpx.get(f"{base}/healthz")
    assert r.status_code == 503
    assert r.json()["checks"]["store"] == {"ok": False}
    probe.ok = None  # type: ignore[assignment]
    r = httpx.get(f"{base}/healthz")
    assert r.status_code == 503
    assert r.json()["checks"]["store"] == {"ok": False, "error": "ConnectionError"}


def test_metrics_exposition(without_console: ServerThread) -> None:
    base = without_console.url
    httpx.get(f"{base}/api/v1/ping")
    r = httpx.get(f"{base}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for line in (
        'aios_http_requests_total{method="GET",route="/api/v1/ping",status="200"} 1.0',
        'aios_http_request_duration_seconds_count{method="GET",route="/api/v1/ping"} 1.0',
        'aios_websocket_clients{channel="devices"} 2.0',
        'aios_websocket_clients{channel="pipelines"} 2.0',
        'aios_websocket_clients{channel="notifications"} 0.0',
        "aios_websocket_messages_dropped_total 3.0",
        "aios_websocket_clients_dropped_total 1.0",
        "aios_mqtt_messages_ingested_total 7.0",
        'aios_mqtt_messages_refused_total{reason="bad_json"} 2.0',
        "aios_runs_active 1.0",
        'aios_devices{status="online"} 4.0',
        'aios_devices{status="warning"} 0.0',
        'aios_devices{status="offline"} 1.0',
    ):
        assert line in text, line


def test_unknown_host_names_are_refused(without_console: ServerThread) -> None:
    base = without_console.url
    assert httpx.get(f"{base}/healthz", headers={"Host": "aios.example.com"}).status_code == 200
    refused = httpx.get(f"{base}/healthz", headers={"Host": "evil.example"})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "host_not_allowed"
    assert httpx.get(f"{base}/api/v1/ping", headers={"Host": "evil.example"}).status_code == 400


def test_scheduler_runs_jobs_and_survives_failures() -> None:
    """Jobs run every interval; one that raises does not stop the others."""
    import threading

    calls: list[str] = []
    ticked = threading.Event()

    def failing() -> None:
        calls.append("failing")
        raise RuntimeError("job failed")

    def counting() -> None:
        calls.append("counting")
        if calls.count("counting") >= 3:
            ticked.set()

    scheduler = Scheduler([("failing", failing), ("counting", counting)], interval=0.01)
    scheduler.start()
    assert ticked.wait(5)
    scheduler.stop()
    assert calls[:4] == ["failing", "counting", "failing", "counting"]


def test_keep_alive_requests_are_not_held_by_delayed_acks(without_console: ServerThread) -> None:
    """Answers on a kept-alive connection take milliseconds, not the ~40 ms that Nagle's
    algorithm and delayed ACKs cost when TCP_NODELAY is missing."""
    import statistics
    import time

    durations = []
    with httpx.Client() as client:
        client.get(f"{without_console.url}/")
        for _ in range(21):
            started = time.perf_counter()
            assert client.get(f"{without_console.url}/").status_code == 200
            durations.append(time.perf_counter() - started)
    assert statistics.median(durations) < 0.025, durations


def test_health_says_why_a_part_fails() -> None:
    connected = False
    check = HealthCheck(
        {"broker": explained(lambda: connected, "not connected to mqtt://127.0.0.1:1883")}
    )
    assert check.run() == (
        False,
        {"broker": {"ok": False, "error": "not connected to mqtt://127.0.0.1:1883"}},
    )
    connected = True
    assert check.run() == (True, {"broker": {"ok": True}})
