"""Benchmark: what the service side adds on top of its stores.

Prints, for one run on this machine:

* heartbeats per second written straight to the SQLite store (``devices.touch``) — the
  baseline — and through the whole ingestion path (topic parsing, JSON, pydantic
  validation, duplicate check, store), on a database file (WAL, ``synchronous=FULL``: one
  fsync per acknowledged write) and in memory (no fsync), each as a ratio to the baseline;
* device-list requests per second (100 devices per page, status derived for each) through
  the API handler with API Gateway proxy events, against the store's own list call.

Run: ``.venv/bin/python tests/bench/bench_service.py [--devices N] [--messages N]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aios.api.app import create_app
from aios.api.auth import ensure_first_admin
from aios.config import Settings
from aios.domain import Device, DeviceKind
from aios.fleet.ingest import RecentMessages, handle_message
from aios.fleet.service import FleetService
from aios.services import Services
from aios.store.sqlite import MEMORY, SqliteStore


def _rate(count: int, fn: Callable[[int], Any]) -> float:
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - start)


def _services(path: Path | str) -> Services:
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), jwt_secret="b" * 48)
    return Services(store=SqliteStore(path), settings=settings)


def _register(services: Services, count: int) -> list[str]:
    ids = [f"dev-{i:05d}" for i in range(count)]
    for device_id in ids:
        services.store.devices.create(
            Device(id=device_id, name=f"Device {device_id}", kind=DeviceKind.SENSOR)
        )
    return ids


def _heartbeat(i: int) -> bytes:
    time_ = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(seconds=i)
    return json.dumps(
        {
            "message_id": uuid.uuid4().hex,
            "time": time_.isoformat(),
            "health": {"cpu_percent": 12.5, "memory_percent": 40.0, "temperature_c": 41.0},
            "firmware_version": "1.4.2",
        }
    ).encode()


def _ingestion_rates(
    label: str, where: Path | str, devices: int, messages: int
) -> list[tuple[str, float]]:
    services = _services(where)
    ids = _register(services, devices)
    now = datetime.now(UTC)
    fleet = FleetService(services)
    recent = RecentMessages()
    payloads = [_heartbeat(i) for i in range(messages)]

    def touch(i: int) -> None:
        services.store.devices.touch(
            ids[i % len(ids)], now + timedelta(microseconds=i), health={"cpu_percent": 1.0}
        )

    def ingest(i: int) -> None:
        topic = f"dt/aios/{ids[i % len(ids)]}/heartbeat"
        outcome = handle_message(fleet, topic, payloads[i], recent=recent)
        if not outcome.accepted:
            raise RuntimeError(f"heartbeat refused: {outcome}")

    rows = [
        (f"store touch, SQLite {label}", _rate(messages, touch)),
        (f"ingestion path, SQLite {label}", _rate(messages, ingest)),
    ]
    services.store.close()
    return rows


def bench_ingestion(devices: int, messages: int) -> None:
    folder = Path(tempfile.mkdtemp())
    rows = _ingestion_rates("file", folder / "aios.db", devices, messages)
    rows += _ingestion_rates("memory", MEMORY, devices, messages)
    baseline = rows[0][1]
    print(f"\nHeartbeats ({messages} over {devices} devices), baseline: store touch on a file")
    print(f"{'path':40} {'msg/s':>10} {'ratio':>8}")
    for label, rate in rows:
        print(f"{label:40} {rate:10.0f} {rate / baseline:7.2f}x")


def bench_api(devices: int, requests: int) -> None:
    folder = Path(tempfile.mkdtemp())
    services = _services(folder / "aios.db")
    _register(services, devices)
    password = ensure_first_admin(services)
    app = create_app(services)

    def call(method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Host": "localhost", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        event = {
            "resource": path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {"limit": "100"} if method == "GET" else None,
            "multiValueQueryStringParameters": {"limit": ["100"]} if method == "GET" else None,
            "pathParameters": None,
            "requestContext": {
                "requestId": uuid.uuid4().hex,
                "stage": "bench",
                "path": path,
                "httpMethod": method,
                "identity": {"sourceIp": "127.0.0.1", "userAgent": "bench"},
            },
            "body": json.dumps(body) if body is not None else None,
            "isBase64Encoded": False,
        }
        response = app.resolve(event, None)
        if response["statusCode"] >= 400:
            raise RuntimeError(f"{method} {path}: {response['statusCode']} {response['body']}")
        return json.loads(response["body"])

    token = call("POST", "/api/v1/auth/login", {"username": "admin", "password": password})[
        "access_token"
    ]
    store_rate = _rate(requests, lambda _i: services.store.devices.list(limit=100))
    api_rate = _rate(requests, lambda _i: call("GET", "/api/v1/devices", token=token))
    print(f"\nDevice list, 100 per page of {devices}, baseline: the store's list call")
    print(f"{'path':40} {'req/s':>10} {'ratio':>8}")
    print(f"{'store devices.list':40} {store_rate:10.0f} {1.0:7.2f}x")
    label = "API GET /api/v1/devices (handler)"
    print(f"{label:40} {api_rate:10.0f} {api_rate / store_rate:7.2f}x")
    services.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    bench_ingestion(args.devices, args.messages)
    bench_api(args.devices, args.requests)


if __name__ == "__main__":
    main()
