"""``/api/v1/analytics``: fleet availability, event counts, run performance.

Event counts are by *recorded time*: a stored event's ``time`` is when the service recorded
it (its own time — a camera's capture time, a file's media clock, a device's clock — is
``data.event_time``, see :mod:`aios.runs.local`). The window ``[since, until)`` and the
hourly buckets use the recorded time, so a replayed recording whose clock is years old
counts in the hours it was played, and a device with a wrong clock cannot hide events.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query

from aios import __version__
from aios.api.errors import NotFoundApi, Unprocessable
from aios.api.models import (
    AvailabilityHour,
    AvailabilityOut,
    EventAnalytics,
    HourCount,
    PerformanceOut,
    RunPerformance,
    SystemOut,
)
from aios.api.permissions import API_PREFIX
from aios.api.routes._common import as_utc
from aios.domain import AlertState, Device, DeviceStatus, Run
from aios.fleet.service import FleetService
from aios.store.port import EventQuery, Store

if TYPE_CHECKING:
    from aios.api.app import ApiResolver

EVENT_SCAN_LIMIT = 50_000
"""Events counted at most per analytics request (newest first); ``truncated`` beyond."""

DEFAULT_EVENT_WINDOW = timedelta(hours=24)

MAX_AVAILABILITY_WINDOW = timedelta(days=31)
"""Longest window of ``/analytics/availability`` (744 hourly points)."""

STATUS_SCAN_LIMIT = 5000
"""Device history entries read at most per device for the availability timeline."""

HOUR = timedelta(hours=1)

_STATUSES = frozenset(s.value for s in DeviceStatus)


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def status_timeline(
    store: Store, device: Device, since: datetime, until: datetime, current: DeviceStatus
) -> list[tuple[datetime, DeviceStatus]]:
    """The device's status over ``[since, until)`` as ``(from, status)`` steps, from its
    recorded transitions (``status.online|warning|offline`` history entries, with the
    status before each in ``data.previous``). Before its first recorded transition a
    device is taken to have been in that transition's previous status; a device with no
    transition at all, in ``current``."""
    newer: list[tuple[datetime, DeviceStatus, DeviceStatus | None]] = []
    before: DeviceStatus | None = None
    cursor: str | None = None
    scanned = 0
    while before is None and scanned < STATUS_SCAN_LIMIT:
        page = store.device_events.list(device.id, until=until, limit=1000, cursor=cursor)
        for entry in page.items:
            scanned += 1
            kind = entry.type.removeprefix("status.")
            if not entry.type.startswith("status.") or kind not in _STATUSES:
                continue
            previous = entry.data.get("previous")
            prior = (
                DeviceStatus(previous)
                if isinstance(previous, str) and previous in _STATUSES
                else None
            )
            if entry.time < since:
                before = DeviceStatus(kind)
                break
            newer.append((entry.time, DeviceStatus(kind), prior))
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    newer.reverse()  # oldest first
    if before is None:
        before = (newer[0][2] or DeviceStatus.OFFLINE) if newer else current
    steps = [(since, before)]
    steps += [(t, status) for t, status, _ in newer]
    return steps


def availability_hours(
    store: Store,
    devices: list[tuple[Device, DeviceStatus]],
    since: datetime,
    until: datetime,
) -> list[AvailabilityHour]:
    """Hourly shares of device-time online and not offline over ``[since, until)``."""
    first = _hour(since)
    count = int((until - first) / HOUR) + (1 if (until - first) % HOUR else 0)
    online = [0.0] * count
    available = [0.0] * count
    total = [0.0] * count
    present: list[set[str]] = [set() for _ in range(count)]
    for device, current in devices:
        start = max(since, device.created_at)
        if start >= until:
            continue
        steps = status_timeline(store, device, start, until, current)
        for i, (step_start, status) in enumerate(steps):
            end = steps[i + 1][0] if i + 1 < len(steps) else until
            begin = max(step_start, start)
            while begin < end:
                index = int((_hour(begin) - first) / HOUR)
                stop = min(end, _hour(begin) + HOUR)
                seconds = (stop - begin).total_seconds()
                total[index] += seconds
                present[index].add(device.id)
                if status is DeviceStatus.ONLINE:
                    online[index] += seconds
                if status is not DeviceStatus.OFFLINE:
                    available[index] += seconds
                begin = stop
    return [
        AvailabilityHour(
            hour=first + i * HOUR,
            devices=len(present[i]),
            online_ratio=round(online[i] / total[i], 4) if total[i] else 0.0,
            available_ratio=round(available[i] / total[i], 4) if total[i] else 0.0,
        )
        for i in range(count)
    ]


def _number(value: Any) -> float:
    """A counter as a number: a number as is, a dict's values summed, else 0."""
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return sum(_number(v) for v in value.values())
    return 0.0


def run_performance(run: Run, now: datetime) -> RunPerformance:
    """What a run processed, from its counters (``aios.runs.local`` writes them:
    ``frames``/``fps``/``dropped_frames`` per source, ``events`` per node, ``executions`` by
    status, ``events_stored``, ``elapsed_seconds``; an optional ``latency_ms``)."""
    counters = run.counters or {}
    elapsed: float | None = None
    if isinstance(counters.get("elapsed_seconds"), (int, float)):
        elapsed = float(counters["elapsed_seconds"])
    else:
        end = run.stopped_at or (now if run.status.active else None)
        if end is not None:
            elapsed = max(0.0, (end - run.started_at).total_seconds())
    frames = int(_number(counters.get("frames")))
    if run.status.active and "fps" in counters:
        fps: float | None = round(_number(counters.get("fps")), 3)
    elif elapsed:
        fps = round(frames / elapsed, 3) if frames else 0.0
    else:
        fps = None
    executions_raw = counters.get("executions")
    executions = (
        {str(k): int(_number(v)) for k, v in executions_raw.items()}
        if isinstance(executions_raw, dict)
        else {}
    )
    latency = counters.get("latency_ms")
    latency_ms: float | None = None
    if isinstance(latency, (int, float)) and not isinstance(latency, bool):
        latency_ms = float(latency)
    elif isinstance(latency, dict) and latency:
        values = [float(v) for v in latency.values() if isinstance(v, (int, float))]
        latency_ms = sum(values) / len(values) if values else None
    return RunPerformance(
        run_id=run.id,
        pipeline_id=run.pipeline_id,
        revision=run.revision,
        status=run.status.value,
        started_at=run.started_at,
        stopped_at=run.stopped_at,
        elapsed_seconds=elapsed,
        frames=frames,
        fps=fps,
        dropped_frames=int(_number(counters.get("dropped_frames"))),
        events=int(_number(counters.get("events"))),
        events_stored=int(_number(counters.get("events_stored"))),
        executions=executions,
        latency_ms=latency_ms,
    )


def register(app: ApiResolver) -> None:
    """Add the event and performance analytics (the device one is with the devices)."""
    store = app.services.store

    @app.get(
        f"{API_PREFIX}/analytics/events",
        tags=["analytics"],
        summary="Pipeline event counts by type, severity, pipeline and hour",
        description="Counts the events recorded in `[since, until)`, by the time the "
        "service recorded each event (its `time`), not the event's own time "
        "(`data.event_time`); `by_hour` buckets are UTC hours of the recorded time.",
    )
    def event_analytics(
        *,
        since: Annotated[
            datetime | None,
            Query(
                description="Events recorded at or after this time (ISO 8601; naive = "
                "UTC). Default: 24 hours before `until`."
            ),
        ] = None,
        until: Annotated[
            datetime | None,
            Query(
                description="Events recorded before this time (ISO 8601; naive = UTC). "
                "Default: now."
            ),
        ] = None,
        pipeline_id: Annotated[str | None, Query(max_length=200)] = None,
        type: Annotated[str | None, Query(max_length=200)] = None,
    ) -> EventAnalytics:
        end = as_utc(until, "query.until") or app.services.clock()
        try:
            start = as_utc(since, "query.since") or end - DEFAULT_EVENT_WINDOW
        except OverflowError:
            raise Unprocessable.field("query.until", "time out of range") from None
        if start > end:
            raise Unprocessable.field("query.since", "must not be after until")
        query = EventQuery(pipeline_id=pipeline_id, type=type, since=start, until=end)
        by_type: Counter[str] = Counter()
        by_severity: Counter[str] = Counter()
        by_pipeline: Counter[str] = Counter()
        by_hour: Counter[datetime] = Counter()
        scanned = 0
        cursor: str | None = None
        truncated = False
        while True:
            page = store.events.list(query, limit=1000, cursor=cursor)
            for event in page.items:
                if scanned >= EVENT_SCAN_LIMIT:
                    truncated = True
                    break
                scanned += 1
                by_type[event.type] += 1
                by_severity[event.severity] += 1
                by_pipeline[event.pipeline_id] += 1
                by_hour[event.time.replace(minute=0, second=0, microsecond=0)] += 1
            if truncated or page.next_cursor is None:
                break
            cursor = page.next_cursor
        return EventAnalytics(
            since=start,
            until=end,
            total=scanned,
            by_type=dict(by_type.most_common()),
            by_severity=dict(by_severity.most_common()),
            by_pipeline=dict(by_pipeline.most_common()),
            by_hour=[HourCount(hour=h, count=by_hour[h]) for h in sorted(by_hour)],
            scanned=scanned,
            truncated=truncated,
        )

    fleet = FleetService(app.services)
    started_at = app.services.clock()

    def window(
        since: datetime | None, until: datetime | None, default: timedelta
    ) -> tuple[datetime, datetime]:
        end = as_utc(until, "query.until") or app.services.clock()
        try:
            start = as_utc(since, "query.since") or end - default
        except OverflowError:
            raise Unprocessable.field("query.until", "time out of range") from None
        if start >= end:
            raise Unprocessable.field("query.since", "must be before until")
        return start, end

    def all_devices() -> list[Device]:
        devices: list[Device] = []
        cursor: str | None = None
        while True:
            page = store.devices.list(limit=1000, cursor=cursor)
            devices.extend(page.items)
            if page.next_cursor is None:
                return devices
            cursor = page.next_cursor

    def count_pages(fetch: Any, cap: int = EVENT_SCAN_LIMIT) -> int:
        total = 0
        cursor: str | None = None
        while total < cap:
            page = fetch(cursor)
            total += len(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return min(total, cap)

    @app.get(
        f"{API_PREFIX}/analytics/availability",
        tags=["analytics"],
        summary="Fleet availability by hour: share of device-time online, and not offline",
        description="From the devices' recorded status transitions (their history's "
        "`status.*` entries). Each UTC hour of `[since, until)` gives the share of "
        "device-seconds online (`online_ratio`) and online or warning (`available_ratio`), "
        "over the devices registered in that hour. Window: at most 31 days.",
    )
    def availability(
        *,
        since: Annotated[
            datetime | None,
            Query(
                description="From this time (ISO 8601; naive = UTC). Default: 24 h before until."
            ),
        ] = None,
        until: Annotated[
            datetime | None,
            Query(description="Before this time (ISO 8601; naive = UTC). Default: now."),
        ] = None,
    ) -> AvailabilityOut:
        start, end = window(since, until, DEFAULT_EVENT_WINDOW)
        if end - start > MAX_AVAILABILITY_WINDOW:
            raise Unprocessable.field("query.since", "the window is at most 31 days")
        devices = [(d, fleet.status_of(d).status) for d in all_devices()]
        return AvailabilityOut(
            since=start, until=end, by_hour=availability_hours(store, devices, start, end)
        )

    @app.get(
        f"{API_PREFIX}/system",
        tags=["analytics"],
        summary="The dashboard's key figures: uptime, devices, active pipelines, alerts",
    )
    def system() -> SystemOut:
        now = app.services.clock()
        day_ago = now - timedelta(hours=24)
        summary = fleet.summary()
        active_runs = store.runs.list_active()
        active_alerts: list[Any] = []
        cursor: str | None = None
        while True:
            page = store.alerts.list(state=AlertState.ACTIVE, limit=1000, cursor=cursor)
            active_alerts.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        notable = sum(
            count_pages(
                lambda c, sev=severity: store.events.list(
                    EventQuery(since=day_ago, until=now, severity=sev), limit=1000, cursor=c
                )
            )
            for severity in ("warning", "critical")
        )
        return SystemOut(
            version=__version__,
            time=now,
            started_at=started_at,
            uptime_seconds=round(max(0.0, (now - started_at).total_seconds()), 3),
            devices_total=summary.total,
            devices_online=summary.online,
            devices_warning=summary.warning,
            devices_offline=summary.offline,
            active_pipelines=len({r.pipeline_id for r in active_runs}),
            active_runs=len(active_runs),
            active_alerts=len(active_alerts),
            alerts_unacknowledged=sum(1 for a in active_alerts if a.acknowledged_at is None),
            alerts_last_24h=count_pages(
                lambda c: store.alerts.list(since=day_ago, limit=1000, cursor=c)
            ),
            events_last_24h=count_pages(
                lambda c: store.events.list(
                    EventQuery(since=day_ago, until=now), limit=1000, cursor=c
                )
            ),
            notable_events_last_24h=notable,
        )

    @app.get(
        f"{API_PREFIX}/analytics/performance",
        tags=["analytics"],
        summary="Run performance: frames, fps, events, executions (newest runs first)",
    )
    def performance(
        *,
        pipeline_id: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=200, description="Runs listed, 1–200.")] = 20,
    ) -> PerformanceOut:
        now = app.services.clock()
        runs: dict[str, Run] = {}
        if pipeline_id is not None:
            if store.pipelines.get(pipeline_id) is None:
                raise NotFoundApi(f"pipeline '{pipeline_id}' does not exist")
            runs.update((r.id, r) for r in store.runs.list(pipeline_id, limit=limit).items)
        else:
            runs.update((r.id, r) for r in store.runs.list_active())
            cursor: str | None = None
            while True:
                page = store.pipelines.list(limit=1000, cursor=cursor)
                for record in page.items:
                    runs.update((r.id, r) for r in store.runs.list(record.id, limit=limit).items)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        ordered = sorted(runs.values(), key=lambda r: (r.started_at, r.id), reverse=True)
        listed_runs = [run_performance(r, now) for r in ordered[:limit]]
        executions: Counter[str] = Counter()
        for perf in listed_runs:
            executions.update(perf.executions)
        active = [p for p in listed_runs if p.stopped_at is None and p.status in _ACTIVE]
        return PerformanceOut(
            runs=listed_runs,
            active_runs=len(active),
            frames=sum(p.frames for p in listed_runs),
            events=sum(p.events for p in listed_runs),
            executions=dict(executions),
            fps=round(sum(p.fps or 0.0 for p in active), 3),
        )


_ACTIVE = frozenset({"starting", "running", "stopping"})
