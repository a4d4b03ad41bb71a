"""What the service side's code is given to work with, built once per process.

In ``aios up`` every port has its local adapter (SQLite store, embedded MQTT broker, local
ASL engine, WebSocket feed); in a Lambda the cloud ones (DynamoDB, IoT Core, Step
Functions). Domain code (fleet, API, runs) only ever sees :class:`Services`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from aios.config import Settings
from aios.domain import Run, utcnow
from aios.store.port import Store

if TYPE_CHECKING:
    from aios.messages import DeviceEventItem

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware UTC (tests pass a controllable one)."""


class Feed(Protocol):
    """Live messages to consoles (local: WebSocket; cloud: API Gateway WebSocket/IoT).

    Channels: ``devices`` (status changes, heartbeats summarised), ``notifications``
    (alerts raised/cleared/acknowledged), ``pipelines/{pipeline_id}`` (run status, counters,
    events of its runs). ``message`` is JSON-serialisable with a ``type`` key.
    """

    def publish(self, channel: str, message: dict[str, Any]) -> None: ...


class DeviceLink(Protocol):
    """Messages to devices over MQTT (local broker or AWS IoT Core), QoS 1."""

    def publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None: ...


class RunLauncher(Protocol):
    """Starts and stops the workers of a pipeline run (local threads, or the lifecycle
    state machine in the cloud). Both return quickly; progress is written to the run
    record (``store.runs``) and published on ``pipelines/{pipeline_id}``."""

    def start(self, run: Run, document: dict[str, Any]) -> None: ...

    def stop(self, run_id: str) -> None: ...


class InputUnavailable(LookupError):
    """The run cannot take events from that input now (not running, no event tier fed by
    the node, not deployed yet); the message says which."""


@runtime_checkable
class EventInputs(Protocol):
    """A run launcher that can also hand an event of an event-tier input (a webhook's
    accepted body, …) to an active run: in the cloud, an execution of the run's event state
    machine (:class:`aios.cloud.dispatch.CloudRunInputs`). Launchers without it (``aios
    up``: its webhook nodes listen on their own HTTP servers) are not :class:`EventInputs`.
    """

    def deliver(
        self,
        run_id: str,
        node_id: str,
        event: dict[str, Any],
        *,
        remember_seconds: float = 0.0,
    ) -> str | None:
        """Start the processing of ``event`` (:data:`aios.events.task.Event`) entering the
        event tier of run ``run_id`` at node ``node_id``.

        ``remember_seconds`` > 0: the same ``event_id`` delivered to the node again within
        that many seconds is a duplicate.

        Returns:
            The id of the execution started (an ARN in the cloud), or ``None`` for a
            duplicate.

        Raises:
            InputUnavailable: the run cannot take the event now.
        """
        ...


DeviceEventsHook = Callable[[str, "list[DeviceEventItem]"], None]
"""Called by :meth:`aios.fleet.service.FleetService.record_events` after it stored a
message's events, with the device they are about and the items (in message order). In
``aios up`` the run launcher hands the events of pipelines running at the edge to their
runs this way (:mod:`aios.runs.edge`). It runs on the ingesting thread: it must be quick;
what it raises is logged, never fails the ingestion."""


class NullFeed:
    """A feed nobody listens to (batch jobs, Lambda functions without a live channel)."""

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        return None


@dataclass
class Services:
    """The ports of one process. ``link``/``launcher`` are ``None`` where the process
    cannot reach devices or start runs (the API then answers 503 for those endpoints).
    ``device_event_hooks``: see :data:`DeviceEventsHook`."""

    store: Store
    settings: Settings
    clock: Clock = utcnow
    feed: Feed = field(default_factory=NullFeed)
    link: DeviceLink | None = None
    launcher: RunLauncher | None = None
    device_event_hooks: list[DeviceEventsHook] = field(default_factory=list)
