"""Helpers of the fleet tests: a controllable clock, a recording feed and device link, and
a FleetService over a real SQLite store in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aios.config import Settings
from aios.domain import Device, DeviceKind
from aios.fleet.service import FleetService
from aios.services import Services
from aios.store.sqlite import SqliteStore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Clock:
    """A clock that moves only when told."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move forward ``seconds`` and return the new time."""
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class RecordingFeed:
    """Keeps what was published, per channel."""

    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.messages.append((channel, message))

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for _, m in self.messages if m.get("type") == type_]


@dataclass
class RecordingLink:
    """Keeps what was published to devices; fails when ``fail`` is set."""

    published: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)
    fail: bool = False

    def publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.published.append((topic, payload, retain))


@dataclass
class Env:
    fleet: FleetService
    store: SqliteStore
    clock: Clock
    feed: RecordingFeed
    link: RecordingLink
    services: Services


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A fleet over SQLite, with a link to devices."""
    clock = Clock()
    store = SqliteStore(tmp_path / "aios.db")
    feed = RecordingFeed()
    link = RecordingLink()
    services = Services(
        store=store,
        settings=Settings(_env_file=None, data_dir=tmp_path),  # type: ignore[call-arg]
        clock=clock,
        feed=feed,
        link=link,
    )
    yield Env(FleetService(services), store, clock, feed, link, services)
    store.close()


def device(device_id: str, kind: DeviceKind = DeviceKind.CONNECTOR, **fields: Any) -> Device:
    """A device record to register."""
    return Device(id=device_id, name=fields.pop("name", device_id.title()), kind=kind, **fields)
