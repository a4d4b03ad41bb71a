"""Events produced by the stream tier, and where they are written.

Every event is a versioned pydantic model with an idempotency key (``event_id``) and a
UTC timestamp, as every message in AIOS is. The key is derived from what happened
(pipeline, node, source, frame, event type, track), so processing the same input twice
gives the same keys and a receiver can drop duplicates.
"""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["zone.enter", "zone.exit", "line.cross", "loitering", "count.changed"]


class StreamEvent(BaseModel):
    """One discrete occurrence detected in a video stream.

    Coordinates in ``bbox`` are pixels of the frame (``frame_width`` × ``frame_height``);
    times are UTC; durations are seconds.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    event_id: str = Field(description="Idempotency key: same input, same key.")
    time: datetime = Field(description="UTC time the frame was captured.")
    media_time_seconds: float = Field(description="Position in the source, seconds.")
    frame_index: int = Field(ge=0)
    pipeline: str
    node_id: str
    node_type: str
    source_id: str
    event_type: EventType
    track_id: int | None = None
    class_name: str | None = None
    confidence: float | None = None
    zone: str | None = None
    line: str | None = None
    direction: Literal["in", "out"] | None = None
    dwell_seconds: float | None = None
    bbox: tuple[float, float, float, float] | None = None
    frame_width: int | None = None
    frame_height: int | None = None
    snapshot: str | None = Field(default=None, description="Path of the snapshot JPEG.")
    clip: str | None = Field(default=None, description="Path of the MP4 clip (written later).")
    data: dict[str, Any] = Field(default_factory=dict)
    outputs: list[str] = Field(
        default_factory=list, description="Ids of the output nodes the event reached."
    )


def event_key(*parts: object) -> str:
    """Return a stable 32-hex-digit idempotency key from the parts (SHA-256, truncated)."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class EventSink(Protocol):
    """Where events that reached an output node go."""

    def write(self, event: StreamEvent) -> None:
        """Record one event."""

    def close(self) -> None:
        """Flush and release resources."""


class JsonLinesSink:
    """Writes one JSON object per line; thread-safe; flushed after each event.

    A sink opened on a path creates (truncates) the file only when the first event
    arrives, so a run that fails while starting leaves an earlier file untouched.
    """

    def __init__(self, stream: IO[str] | None = None, *, path: Path | None = None) -> None:
        """Write to ``stream``, or to the file at ``path`` (opened, and closed, by the sink)."""
        if (stream is None) == (path is None):
            raise ValueError("give a stream or a path")
        self._stream = stream
        self._path = path
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> JsonLinesSink:
        """Return a sink that will create (truncate) ``path`` on the first event."""
        return cls(path=path)

    def write(self, event: StreamEvent) -> None:
        """Append the event as one JSON line."""
        self.write_json(event.model_dump(mode="json"))

    def write_json(self, record: dict[str, Any]) -> None:
        """Append any JSON object as one line (events that are not stream events)."""
        line = json.dumps(record, ensure_ascii=False)
        with self._lock:
            if self._stream is None:
                assert self._path is not None
                self._path.parent.mkdir(parents=True, exist_ok=True)
                self._stream = self._path.open("w", encoding="utf-8")
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        """Close the file if this sink opened it."""
        with self._lock:
            if self._path is not None and self._stream is not None:
                self._stream.close()


class MemorySink:
    """Keeps events in a list (tests, API previews)."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self.records: list[dict[str, Any]] = []

    def write(self, event: StreamEvent) -> None:
        """Keep the event."""
        self.events.append(event)

    def write_json(self, record: dict[str, Any]) -> None:
        """Keep a recorded event that is not a stream event."""
        self.records.append(record)

    def close(self) -> None:
        """Nothing to release."""
