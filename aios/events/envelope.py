"""The input of every event-tier execution, built the same way locally and in the cloud.

Shape (JSON)::

    {
      "event":   {...},   # the event (see aios.events.task.Event)
      "context": {
        "pipeline": "Intrusion",          # the pipeline's name
        "entry": "loitering",             # the node the event came from
        "site": {"timezone": "Europe/Lisbon", "date": "2026-01-05", "time": "09:00:12",
                 "weekday": 1, "hour": 9}  # the event's time in the site's time zone
      },
      "results": {}       # filled by actions: results.<node> = {"status": ...}
    }

``site`` lets Choice states test time-of-day windows with string comparisons on
``HH:MM:SS`` (zero-padded, so lexical order is time order); instants are compared with the
Timestamp* operators on ``event.time``. Weekday numbering is ISO 8601 (1 = Monday).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def site_time(when: datetime, timezone: str) -> dict[str, Any]:
    """Return the ``site`` block for an instant in the IANA time zone ``timezone``.

    Raises:
        ValueError: unknown time zone name.
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(
            f"unknown time zone '{timezone}'; use an IANA name such as 'Europe/Lisbon'"
        ) from err
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    local = when.astimezone(zone)
    return {
        "timezone": timezone,
        "date": local.date().isoformat(),
        "time": local.strftime("%H:%M:%S"),
        "weekday": local.isoweekday(),
        "hour": local.hour,
    }


def parse_time(value: Any) -> datetime | None:
    """Return the event's ``time`` as an aware datetime (``None`` if absent or invalid)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def make_input(
    event: dict[str, Any], *, pipeline: str, entry: str, timezone: str = "UTC"
) -> dict[str, Any]:
    """Return the execution input for ``event`` entering the event tier at node ``entry``.

    The site block is computed from ``event["time"]`` (now, if the event has no time).
    """
    when = parse_time(event.get("time")) or datetime.now(UTC)
    return {
        "event": event,
        "context": {"pipeline": pipeline, "entry": entry, "site": site_time(when, timezone)},
        "results": {},
    }
