"""Events, requests, a settable clock and services for action-node tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from aios.events.secrets import DictSecretStore
from aios.events.state import MemoryStateStore
from aios.events.task import FolderBlobStore, TaskRequest, TaskServices

START = datetime(2026, 1, 5, 9, 0, 12, tzinfo=UTC)


@dataclass
class Clock:
    """A settable clock serving both the state store (epoch seconds) and ``services.now``."""

    at: datetime = START

    def now(self) -> datetime:
        return self.at

    def epoch(self) -> float:
        return self.at.timestamp()

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@dataclass
class Sleeps:
    """Records the waits a task asks for instead of sleeping."""

    seconds: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def make_services(
    secrets: dict[str, str], clock: Clock, sleeps: Sleeps, blobs: Path | None = None
) -> TaskServices:
    """Return services with the given secrets, an in-memory state store on ``clock``."""
    return TaskServices(
        secrets=DictSecretStore(secrets),
        state=MemoryStateStore(clock=clock.epoch),
        blobs=FolderBlobStore(blobs or Path.cwd()),
        now=clock.now,
        sleep=sleeps,
    )


def make_event(event_id: str = "evt-1", **fields: Any) -> dict[str, Any]:
    """Return a loitering event from camera ``cam1`` with ``fields`` added or replaced."""
    event: dict[str, Any] = {
        "event_id": event_id,
        "event_type": "loitering",
        "time": START.isoformat(),
        "source_id": "cam1",
        "zone": "dock",
        "track_id": 7,
        "class_name": "person",
        "confidence": 0.91,
        "dwell_seconds": 12.34,
        "data": {"count": 2},
    }
    event.update(fields)
    return event


def make_request(event: dict[str, Any], node_id: str = "notify") -> TaskRequest:
    """Return the task request of ``event`` in pipeline ``Intrusion``."""
    return TaskRequest(
        node_id=node_id,
        event=event,
        context={
            "pipeline": "Intrusion",
            "entry": "loitering",
            "execution": f"exec-{event['event_id']}",
            "site": {
                "timezone": "UTC",
                "date": "2026-01-05",
                "time": "09:00:12",
                "weekday": 1,
                "hour": 9,
            },
        },
    )


def write_jpeg(path: Path, width: int = 64, height: int = 48) -> bytes:
    """Write a small real JPEG (a gradient) to ``path`` and return its bytes."""
    row = np.linspace(0, 255, width, dtype=np.uint8)
    image = np.dstack([np.tile(row, (height, 1))] * 3)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    data = encoded.tobytes()
    path.write_bytes(data)
    return data
