"""``aios/analytics@1`` — count, rate, min, max and mean over a sliding time window.

Per group (a key rendered from a template; default one group per ``source_id``), the node
keeps the recent events as samples ``[time, value, id]`` in
:attr:`aios.events.task.TaskServices.state` (namespace ``analytics/<pipeline>/<node id>``,
key = the group), updated atomically (:meth:`aios.events.state.StateStore.update`) so
concurrent executions do not lose samples.

Times are the events' own ``time`` (ISO 8601; without a UTC offset, UTC), never the wall
clock, so replays and delayed deliveries give the statistics of when things happened. An
event's window is ``(time - window_seconds, time]``; every event in it is counted, and
``min``/``max``/``mean`` are taken over the numeric values of ``field`` among them (events
without a number there are counted but carry no value; ``value_count`` says how many had
one). ``rate_per_minute = count × 60 / window_seconds``, i.e. the mean rate over the whole
window (it reads low until one window has passed since the first event).

Written into the event at ``result_field`` (default ``data.analytics``)::

    {"window_seconds": 60, "count": 5, "rate_per_minute": 5.0, "min": 1.2, "max": 9.0,
     "mean": 4.1, "value_count": 5, "group": "cam-1"}

Bounds: samples older than the newest sample's time minus the window are pruned, and at
most ``max_samples`` (≤ 5000) of the newest are kept per group. A sample takes about 35
bytes, so a group's state stays under DynamoDB's 400 KB item limit; above ``max_samples``
events per window, ``count`` and ``rate_per_minute`` saturate at the bound. An event is
counted once even when its task is retried (samples carry a hash of ``event_id``). A late
event older than the kept window is counted in its own statistics only.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
from datetime import UTC, datetime
from statistics import fmean
from typing import Any

from pydantic import Field

from aios.catalog.base import (
    Category,
    EventRole,
    NodeConfig,
    NodeManifest,
    NodeType,
    PortKind,
    PortSpec,
    Tier,
)
from aios.events.actions import Template, render
from aios.events.task import Event, PermanentError, TaskRequest, TaskServices
from aios.nodes.transform import FieldPath, get_field, set_field

MAX_SAMPLES_LIMIT = 5_000
"""Largest ``max_samples``: keeps one group's state under DynamoDB's 400 KB item size."""

Sample = list[Any]
"""``[time (s since the epoch, UTC), value or None, event id hash]``."""


class AnalyticsConfig(NodeConfig):
    """Statistics over a sliding window of recent events."""

    field: FieldPath | None = Field(
        default=None,
        title="Value field",
        description="Numeric event field for min, max and mean, dotted for nested ones: "
        "'dwell_seconds', 'confidence', 'data.temperature'. Unset: only count and rate.",
    )
    window_seconds: float = Field(
        default=60.0,
        ge=1.0,
        le=7 * 86_400,
        title="Window (s)",
        description="Length of the sliding window in seconds, ending at each event's time.",
    )
    group_by: Template = Field(
        default="{{ event.source_id }}",
        min_length=1,
        max_length=500,
        title="Group by",
        description="Template of the group key: '{{ event.source_id }}' (per camera or "
        "device), '{{ event.zone }}' (per zone), 'all' (one group).",
    )
    max_samples: int = Field(
        default=1_000,
        ge=10,
        le=MAX_SAMPLES_LIMIT,
        title="Events kept per group",
        description="At most this many recent events are kept per group; above this many "
        "events per window, count and rate stop growing.",
    )
    result_field: FieldPath = Field(
        default="data.analytics",
        title="Result field",
        description="Where the statistics are written in the event.",
    )


MANIFEST = NodeManifest(
    type="aios/analytics@1",
    category=Category.PROCESSING,
    tier=Tier.EVENT,
    title="Analytics",
    description="Counts events and computes their rate, min, max and mean over a sliding "
    "time window, per camera, zone or any key, and adds the figures to each event.",
    icon="chart-line",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="Events to measure.",
            multiple=True,
        ),
    ),
    outputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="The events with the statistics under the result field.",
        ),
    ),
)


def event_time(event: Event, services: TaskServices) -> datetime:
    """Return the event's ``time`` as an aware UTC datetime (``services.now()`` if absent).

    Raises:
        PermanentError: ``time`` is present but not an ISO 8601 timestamp.
    """
    raw = event.get("time")
    if raw is None or raw == "":
        return services.now()
    try:
        when = datetime.fromisoformat(str(raw))
    except ValueError as err:
        raise PermanentError(
            f"the event's time {raw!r} is not an ISO 8601 timestamp (e.g. '2026-01-05T09:00:00Z')"
        ) from err
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


class AnalyticsNode:
    """Adds each event to its group's window and writes the window's statistics."""

    def __init__(self, config: AnalyticsConfig, services: TaskServices) -> None:
        self.config = config
        self.services = services

    def run(self, request: TaskRequest) -> Event:
        """Return the event with the statistics of its group's window at ``result_field``.

        Raises:
            PermanentError: the group key renders empty or the event's time is invalid.
        """
        cfg = self.config
        group = render(cfg.group_by, request).strip()
        if not group:
            raise PermanentError(
                f"the group_by template {cfg.group_by!r} rendered empty for this event; use "
                "fields the event has, e.g. '{{ event.source_id }}'"
            )
        t = round(event_time(request.event, self.services).timestamp(), 3)
        value = None if cfg.field is None else _number(get_field(request.event, cfg.field))
        event_id = str(request.event.get("event_id") or "")
        tag = hashlib.sha256(event_id.encode()).hexdigest()[:12] if event_id else ""
        window = cfg.window_seconds
        stats: dict[str, Any] = {}

        def apply(old: Any | None) -> list[Sample]:
            samples: list[Sample] = list(old) if isinstance(old, list) else []
            if not tag or all(s[2] != tag for s in samples):
                times = [s[0] for s in samples]
                samples.insert(bisect.bisect_right(times, t), [t, value, tag])
            in_window = [s for s in samples if t - window < s[0] <= t][-cfg.max_samples :]
            values = [s[1] for s in in_window if s[1] is not None]
            stats.update(
                window_seconds=window,
                count=len(in_window),
                rate_per_minute=len(in_window) * 60.0 / window,
                min=min(values) if values else None,
                max=max(values) if values else None,
                mean=fmean(values) if values else None,
                value_count=len(values),
                group=group,
            )
            newest = samples[-1][0]
            kept = [s for s in samples if s[0] > newest - window]
            return kept[-cfg.max_samples :]

        self.services.state.update(
            f"analytics/{request.pipeline}/{request.node_id}",
            group,
            apply,
            ttl_seconds=2 * window + 60,
        )
        event = copy.deepcopy(request.event)
        set_field(event, cfg.result_field, stats)
        return event


NODE = NodeType(
    manifest=MANIFEST,
    config_model=AnalyticsConfig,
    implementation=AnalyticsNode,
    event_role=EventRole.PROCESSOR,
)
