"""What an event-tier node implements, and what it gets to work with.

Every event-tier node with work to do (an action, a transform, storage...) is a *task*:
the compiled state machine calls it with a :class:`TaskRequest` — the event, the
execution context and the node's id — and it returns JSON. In the cloud the call is a
Lambda invocation; locally the engine calls the node in-process. The same implementation
serves both; what differs is the :class:`TaskServices` it is built with.

Errors a task raises are ASL errors (``Retry`` and ``Catch`` match their names):

* ``Aios.Transient`` (:class:`TransientError`) — worth retrying: timeouts, connection
  refused, 5xx, a service asking to retry later.
* ``Aios.Permanent`` (:class:`PermanentError`) — retrying cannot help: rejected request,
  bad credentials, a value the device refuses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aios.events.secrets import EnvSecretStore, SecretStore
from aios.events.state import MemoryStateStore, StateStore

TRANSIENT = "Aios.Transient"
PERMANENT = "Aios.Permanent"

Event = dict[str, Any]
"""An event as JSON: ``event_id``, ``event_type``, ``time`` (ISO 8601 UTC), ``source_id``,
the producer's fields (see :class:`aios.runtime.events.StreamEvent`) and ``data``."""


class TaskError(Exception):
    """Base of errors a task raises on purpose; ``error`` is the ASL error name."""

    error = "Aios.TaskError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TransientError(TaskError):
    """A failure that may pass: the state machine's ``Retry`` tries again."""

    error = TRANSIENT


class PermanentError(TaskError):
    """A failure that retrying cannot fix: goes straight to ``Catch``."""

    error = PERMANENT


@dataclass(frozen=True)
class TaskRequest:
    """One call of a task by the state machine.

    Attributes:
        node_id: the pipeline node being run.
        event: the event as it reached this node (after transforms upstream).
        context: the execution context (``pipeline``, ``entry`` node, ``site`` local time,
            ``execution`` id); see :func:`aios.events.envelope.make_input`.
    """

    node_id: str
    event: Event
    context: dict[str, Any]

    @property
    def pipeline(self) -> str:
        """The pipeline's name."""
        return str(self.context.get("pipeline", ""))

    @property
    def source_id(self) -> str:
        """The device (camera, sensor, endpoint) the event came from."""
        return str(self.event.get("source_id", ""))


class BlobStore(Protocol):
    """Where snapshots, clips and derived images are kept (a folder here, S3 in the cloud)."""

    def read(self, ref: str) -> bytes:
        """Return the bytes of a stored blob; raise ``FileNotFoundError`` if absent."""
        ...

    def write(self, name: str, data: bytes) -> str:
        """Store ``data`` under a name and return its reference."""
        ...


class FolderBlobStore:
    """Blobs as files; references are paths (absolute, or relative to the folder)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, ref: str) -> Path:
        path = Path(ref)
        return path if path.is_absolute() else self.root / path

    def read(self, ref: str) -> bytes:
        """Return the file's bytes."""
        return self._path(ref).read_bytes()

    def write(self, name: str, data: bytes) -> str:
        """Write ``root/name`` and return its path."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)


class EventRecorder(Protocol):
    """Where the dashboard node records events (events file here, the events table later)."""

    def record(self, event: Event, *, node_id: str, panel: str, severity: str) -> None:
        """Record one event for the dashboard."""
        ...


class MemoryRecorder:
    """Keeps recorded events in a list (tests)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, event: Event, *, node_id: str, panel: str, severity: str) -> None:
        """Keep the event with its dashboard tags."""
        with self._lock:
            self.records.append(
                {"event": event, "node_id": node_id, "panel": panel, "severity": severity}
            )


@dataclass(frozen=True)
class CommandAnswer:
    """A device's answer to a command that succeeded.

    Attributes:
        request_id: the command's id (``cmd/aios/{device_id}/req``), as in the device's
            command history.
        response: what the device answered (e.g. a PLC's value read back).
    """

    request_id: str
    response: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class DeviceCommands(Protocol):
    """Commands to fleet devices, answered while the task waits (the fleet's command path:
    ``cmd/aios/{connector}/req`` → the device's connector → ``.../res``)."""

    def send(
        self,
        device_id: str,
        name: str,
        params: dict[str, Any],
        timeout_seconds: float,
        *,
        actor: str | None = None,
    ) -> CommandAnswer:
        """Send command ``name`` with ``params`` to ``device_id``; wait at most
        ``timeout_seconds`` for its answer; return it when the device succeeded.

        ``actor``: who asked, kept in the device's command history.

        Raises:
            PermanentError: the device answered with a failure (its reason), or the command
                is refused (no such device, invalid parameters).
            TransientError: no answer in time, or the device cannot be reached now.
        """
        ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class TaskServices:
    """What task implementations are built with: stores, secrets, clock, logger.

    Attributes:
        secrets: secret values by name.
        state: keyed values kept between executions.
        blobs: snapshots and derived images.
        recorder: the dashboard's event store.
        now: current UTC time (injectable for tests).
        sleep: waits (injectable for tests; pulses and in-task retries use it).
        logger: base logger; nodes log under ``aios.node.<id>``.
        device_commands: commands to fleet devices through their connector (``None``
            where there is no fleet: ``aios run``).
    """

    secrets: SecretStore = field(default_factory=EnvSecretStore)
    state: StateStore = field(default_factory=MemoryStateStore)
    blobs: BlobStore = field(default_factory=lambda: FolderBlobStore(Path.cwd()))
    recorder: EventRecorder = field(default_factory=MemoryRecorder)
    now: Callable[[], datetime] = _utcnow
    sleep: Callable[[float], None] = time.sleep
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("aios.events"))
    device_commands: DeviceCommands | None = None


@runtime_checkable
class EventTask(Protocol):
    """An event-tier node with work to do; built as ``implementation(config, services)``."""

    def run(self, request: TaskRequest) -> Any:
        """Do the work; return JSON (an action's result, or the new event).

        Raises:
            TaskError: with the ASL error name that ``Retry``/``Catch`` match.
        """
        ...


Emit = Callable[[Event], None]
"""Hands one event from an event-tier input to the pipeline's state machine."""


@runtime_checkable
class EventSource(Protocol):
    """An event-tier input (sensor data, webhook, timer); built as
    ``implementation(config, services)``."""

    def start(self, emit: Emit) -> None:
        """Begin delivering events to ``emit`` (from any thread); return promptly."""
        ...

    def stop(self) -> None:
        """Stop delivering events and release resources; safe to call twice."""
        ...
