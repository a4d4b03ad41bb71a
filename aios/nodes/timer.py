"""``aios/timer@1`` — a cron or interval schedule as a pipeline input.

Each run of the schedule is a ``timer.tick`` event::

    {"event_id": "…", "event_type": "timer.tick", "time": "2026-01-05T07:30:00.004Z",
     "source_id": "timer",
     "data": {"scheduled_time": "2026-01-05T07:30:00Z", "schedule": "30 8 * * 1-5",
              "timezone": "Europe/Berlin"}}

``time`` is when the tick was emitted, ``data.scheduled_time`` the run it stands for (both
UTC); ``event_id`` is derived from the source id, the schedule and the scheduled time, so
it names the run.

**Cron** expressions have the five fields of crontab(5) — minute, hour, day of month,
month, day of week — evaluated in ``timezone`` (an IANA name; daylight-saving changes are
followed). Day-of-week numbers mean what they mean in crontab: 0 and 7 are Sunday, 1 is
Monday (APScheduler 3 counts from Monday; the field is translated to day names before it
reaches APScheduler). As in crontab(5), when both the day of month and the day of week are
restricted (neither starts with ``*``), a day matching *either* runs.

**Interval** schedules run every ``interval_seconds``, the first run one interval after
the start.

Missed runs (the process was suspended, the machine was busy) are coalesced: when the
scheduler wakes up it emits one tick for the latest missed run, provided it is at most
``misfire_grace_seconds`` late (APScheduler's ``misfire_grace_time``); runs later than that
are counted in :attr:`TimerSource.stats` as ``missed`` and logged, not emitted.

Scheduling is APScheduler 3's ``BackgroundScheduler`` with one worker thread per node.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
)
from pydantic import Field, field_validator, model_validator

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
from aios.events.task import Emit, Event, TaskServices
from aios.runtime.events import event_key

EVENT_TYPE = "timer.tick"

_CRON_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""crontab(5) day-of-week numbering: 0 (and 7) is Sunday."""
_APS_DAY_ORDER = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DOW_ITEM = re.compile(r"^(?P<first>\*|\w+)(?:-(?P<last>\w+))?(?:/(?P<step>\d+))?$")


def _cron_day(text: str) -> int:
    lower = text.lower()
    if lower in _CRON_DAY_NAMES:
        return _CRON_DAY_NAMES.index(lower)
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    raise ValueError(
        f"day of week {text!r} is not 0-7 (0 and 7 are Sunday) or a name such as 'mon'"
    )


def crontab_day_of_week(field: str) -> str:
    """Translate a crontab(5) day-of-week field into APScheduler 3 day names.

    ``"1-5"`` (Monday to Friday in crontab) becomes ``"mon,tue,wed,thu,fri"``; ``"*/2"``
    (Sunday, Tuesday, Thursday, Saturday) becomes ``"tue,thu,sat,sun"``; a field covering
    every day becomes ``"*"``. Raises ``ValueError`` for anything else.
    """
    days: set[int] = set()
    for item in field.split(","):
        match = _DOW_ITEM.match(item)
        if match is None:
            raise ValueError(f"day of week {item!r} is not a number, name, range or step")
        first, last, step_text = match["first"], match["last"], match["step"]
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"day of week step in {item!r} must be at least 1")
        if first == "*":
            if last is not None:
                raise ValueError(f"day of week {item!r}: '*' cannot start a range")
            low, high = 0, 7
        else:
            low = _cron_day(first)
            high = _cron_day(last) if last is not None else (7 if step_text else low)
            if high < low:
                raise ValueError(f"day of week range {item!r} runs backwards")
        days.update(d % 7 for d in range(low, high + 1, step))
    if len(days) == 7:
        return "*"
    names = {_CRON_DAY_NAMES[d] for d in days}
    return ",".join(name for name in _APS_DAY_ORDER if name in names)


def cron_trigger(expression: str, timezone: tzinfo) -> Any:
    """Return an APScheduler trigger for a five-field crontab(5) expression.

    The day-of-week field is translated (:func:`crontab_day_of_week`); when both the day of
    month and the day of week are restricted the trigger fires on either (an ``OrTrigger``
    of two ``CronTrigger``), as crontab(5) specifies.

    Raises:
        ValueError: with APScheduler's message for a field it rejects.
    """
    from apscheduler.triggers.combining import OrTrigger  # type: ignore[import-untyped]
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    fields = expression.split()
    if len(fields) != 5:
        # Let APScheduler word the error ("Wrong number of fields; got 6, expected 5").
        CronTrigger.from_crontab(expression, timezone=timezone)
    minute, hour, day, month, day_of_week = fields
    dow = crontab_day_of_week(day_of_week)
    if not day.startswith("*") and not day_of_week.startswith("*"):
        by_day = CronTrigger.from_crontab(f"{minute} {hour} {day} {month} *", timezone=timezone)
        by_weekday = CronTrigger.from_crontab(f"{minute} {hour} * {month} {dow}", timezone=timezone)
        return OrTrigger([by_day, by_weekday])
    return CronTrigger.from_crontab(f"{minute} {hour} {day} {month} {dow}", timezone=timezone)


class TimerConfig(NodeConfig):
    """Start the pipeline on a schedule: a cron expression or a fixed interval."""

    cron: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        title="Cron schedule",
        description="Five fields as in crontab: minute hour day-of-month month day-of-week "
        "(0 or 7 = Sunday), e.g. '30 8 * * 1-5' for 08:30 Monday to Friday, '*/15 * * * *' "
        "every quarter hour. Set this or the interval.",
    )
    interval_seconds: float | None = Field(
        default=None,
        ge=1.0,
        le=31 * 86_400.0,
        title="Interval (s)",
        description="Seconds between runs; the first run is one interval after start. Set "
        "this or the cron schedule.",
    )
    timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        title="Time zone",
        description="IANA time zone the cron schedule is read in, e.g. 'Europe/Berlin'.",
    )
    misfire_grace_seconds: int = Field(
        default=60,
        ge=1,
        le=86_400,
        title="Late-run grace (s)",
        description="A run missed (e.g. while the machine slept) is still emitted, once for "
        "all missed runs, if at most this many seconds late; later ones are skipped.",
    )
    source_id: str = Field(
        default="timer",
        min_length=1,
        max_length=128,
        title="Source id",
        description="Name the ticks carry as their source, e.g. 'shift-start'.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
            ) from err
        return value

    @model_validator(mode="after")
    def _one_schedule(self) -> TimerConfig:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("set either cron or interval_seconds (exactly one)")
        if self.cron is not None:
            try:
                trigger = cron_trigger(self.cron, ZoneInfo(self.timezone))
            except ValueError as err:
                raise ValueError(f"invalid cron expression {self.cron!r}: {err}") from err
            if trigger.get_next_fire_time(None, datetime.now(UTC)) is None:
                raise ValueError(
                    f"cron expression {self.cron!r} never matches a date (e.g. 30 February)"
                )
        return self

    @property
    def schedule(self) -> str:
        """The schedule as text: the cron expression, or ``every N s``."""
        return self.cron if self.cron is not None else f"every {self.interval_seconds:g} s"


def build_trigger(config: TimerConfig) -> Any:
    """Return the APScheduler trigger of a timer configuration (cron or interval)."""
    zone = ZoneInfo(config.timezone)
    if config.cron is not None:
        return cron_trigger(config.cron, zone)
    from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

    return IntervalTrigger(seconds=config.interval_seconds, timezone=zone)


MANIFEST = NodeManifest(
    type="aios/timer@1",
    category=Category.INPUT,
    tier=Tier.EVENT,
    title="Timer",
    description="Starts the pipeline on a schedule — a cron expression in the site's time "
    "zone or a fixed interval — e.g. a daily report or an hourly PLC check.",
    icon="alarm-clock",
    outputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Ticks",
            description="One 'timer.tick' event per scheduled run.",
        ),
    ),
)


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class TimerSource:
    """Runs the schedule on a background scheduler and emits a tick for each run."""

    JOB_ID = "tick"

    def __init__(self, config: TimerConfig, services: TaskServices) -> None:
        self.config = config
        self.services = services
        self.log = services.logger.getChild("timer")
        self._scheduler: Any = None
        self._emit: Emit | None = None
        self._lock = threading.Lock()
        self._stats = {"fired": 0, "missed": 0, "failed": 0}

    @property
    def stats(self) -> dict[str, int]:
        """Counts since start: ``fired`` (ticks emitted), ``missed`` (runs later than the
        grace time) and ``failed`` (the pipeline refused the tick)."""
        with self._lock:
            return dict(self._stats)

    @property
    def next_fire_time(self) -> datetime | None:
        """When the next tick is due (aware, in the schedule's zone), or ``None`` if stopped."""
        scheduler = self._scheduler
        if scheduler is None:
            return None
        job = scheduler.get_job(self.JOB_ID)
        return None if job is None else job.next_run_time

    def start(self, emit: Emit) -> None:
        """Start the scheduler thread; ticks go to ``emit`` from its worker thread."""
        from apscheduler.executors.pool import ThreadPoolExecutor  # type: ignore[import-untyped]
        from apscheduler.schedulers.background import (  # type: ignore[import-untyped]
            BackgroundScheduler,
        )

        with self._lock:
            if self._scheduler is not None:
                return
            cfg = self.config
            scheduler = BackgroundScheduler(
                timezone=ZoneInfo(cfg.timezone),
                executors={"default": ThreadPoolExecutor(max_workers=1)},
                job_defaults={
                    "coalesce": True,
                    "max_instances": 1,
                    "misfire_grace_time": cfg.misfire_grace_seconds,
                },
            )
            scheduler.add_listener(
                self._on_job_event, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR
            )
            scheduler.add_job(
                self._run, build_trigger(cfg), id=self.JOB_ID, name=f"timer {cfg.source_id}"
            )
            self._emit = emit
            scheduler.start()
            self._scheduler = scheduler
        self.log.info(
            "timer %s: %s (%s), next run %s",
            cfg.source_id,
            cfg.schedule,
            cfg.timezone,
            self.next_fire_time,
        )

    def stop(self) -> None:
        """Stop the scheduler and wait for a tick in progress; safe to call twice."""
        with self._lock:
            scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        self._emit = None

    def to_event(self, scheduled: datetime, fired: datetime) -> Event:
        """Return the tick for the run ``scheduled`` at, emitted at ``fired``."""
        cfg = self.config
        scheduled_iso = _utc_iso(scheduled)
        return {
            "event_id": event_key(EVENT_TYPE, cfg.source_id, cfg.schedule, scheduled_iso),
            "event_type": EVENT_TYPE,
            "time": _utc_iso(fired),
            "source_id": cfg.source_id,
            "data": {
                "scheduled_time": scheduled_iso,
                "schedule": cfg.schedule,
                "timezone": cfg.timezone,
            },
        }

    def _run(self) -> datetime:
        """The scheduled job: return when it ran (the listener emits the tick)."""
        return self.services.now()

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1

    def _on_job_event(self, event: Any) -> None:
        """Emit a tick for an executed run; count and log a missed one.

        APScheduler 3 gives the scheduled run time to listeners, not to the job, so the
        tick is built here (in the executor's thread, right after :meth:`_run`).
        """
        if event.code == EVENT_JOB_MISSED:
            self._count("missed")
            self.log.warning(
                "timer %s: skipped the run due at %s, more than %d s late",
                self.config.source_id,
                _utc_iso(event.scheduled_run_time),
                self.config.misfire_grace_seconds,
            )
            return
        if event.code != EVENT_JOB_EXECUTED:
            self._count("failed")
            self.log.error("timer %s: the run failed: %s", self.config.source_id, event.exception)
            return
        emit = self._emit
        if emit is None:
            return
        tick = self.to_event(event.scheduled_run_time, event.retval)
        try:
            emit(tick)
        except Exception as err:
            self._count("failed")
            self.log.error(
                "timer %s: the pipeline did not take tick %s: %s: %s",
                self.config.source_id,
                tick["event_id"],
                type(err).__name__,
                err,
            )
            return
        self._count("fired")


NODE = NodeType(
    manifest=MANIFEST,
    config_model=TimerConfig,
    implementation=TimerSource,
    event_role=EventRole.SOURCE,
)
