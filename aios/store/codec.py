"""Encoding shared by the store adapters: UTC times, record JSON, page cursors, limits.

- Times are kept as ISO-8601 strings in UTC with microseconds and a fixed width
  (``2026-03-01T08:15:00.000250+00:00``), so that comparing the strings orders the times.
- Records are kept as their pydantic JSON; reading one back gives timezone-aware UTC
  datetimes (``tzinfo`` is :data:`datetime.UTC`).
- Cursors are opaque to clients: URL-safe base64 (no padding) of a small JSON object naming
  the list they belong to (``s``) and the sort key of the last item returned (``k``). A cursor
  that does not decode, or that belongs to another list, raises :class:`ValueError` (the API
  answers 422).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from aios.domain import MAX_JSON_DEPTH, json_depth

M = TypeVar("M", bound=BaseModel)

MIN_LIMIT = 1
MAX_LIMIT = 1000
_CURSOR_VERSION = 1


def utc(value: datetime, *, name: str = "time") -> datetime:
    """``value`` in UTC. Raises ValueError for a naive datetime (pass a timezone-aware one)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


def to_iso(value: datetime, *, name: str = "time") -> str:
    """The sortable stored form of a time: UTC, microseconds, fixed width.

    Raises ValueError for a naive datetime.
    """
    return utc(value, name=name).isoformat(timespec="microseconds")


def to_iso_or_none(value: datetime | None, *, name: str = "time") -> str | None:
    """:func:`to_iso`, passing ``None`` through."""
    return None if value is None else to_iso(value, name=name)


def from_iso(text: str) -> datetime:
    """The datetime (timezone-aware UTC) of a string written by :func:`to_iso`."""
    return datetime.fromisoformat(text).astimezone(UTC)


def normalize(record: M) -> M:
    """A copy of ``record`` whose top-level datetime fields are UTC, checked for depth.

    Every adapter passes records through here before writing them.

    Raises:
        ValueError: a naive time (naming the field), or a free-form value nested deeper
            than :data:`aios.domain.MAX_JSON_DEPTH` — a record that could be written but
            not read back (JSON parsers and DynamoDB both limit nesting) is refused before
            anything is written.
    """
    changes: dict[str, Any] = {}
    for field_name in type(record).model_fields:
        value = getattr(record, field_name)
        if isinstance(value, datetime):
            changes[field_name] = utc(value, name=field_name)
        elif isinstance(value, dict | list) and json_depth(value) > MAX_JSON_DEPTH:
            raise ValueError(
                f"{field_name}: nested deeper than {MAX_JSON_DEPTH} levels of objects and arrays"
            )
    return record.model_copy(update=changes) if changes else record


def dump(record: BaseModel) -> str:
    """The stored JSON of a record (times in UTC).

    Raises:
        ValueError: see :func:`normalize`.
    """
    return normalize(record).model_dump_json()


def load(model: type[M], text: str | bytes) -> M:
    """The record stored as ``text`` by :func:`dump`, with ``datetime.UTC`` times."""
    record = model.model_validate_json(text)
    changes: dict[str, Any] = {}
    for field_name in model.model_fields:
        value = getattr(record, field_name)
        if isinstance(value, datetime) and value.tzinfo is not UTC:
            changes[field_name] = value.astimezone(UTC)
    return record.model_copy(update=changes) if changes else record


def check_limit(limit: int) -> int:
    """``limit`` if it is 1–1000; else ValueError saying so."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValueError(f"limit must be an integer from {MIN_LIMIT} to {MAX_LIMIT}")
    if not MIN_LIMIT <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be from {MIN_LIMIT} to {MAX_LIMIT}, got {limit}")
    return limit


def encode_cursor(scope: str, key: Any) -> str:
    """An opaque cursor for the list ``scope`` resuming after ``key`` (JSON-serialisable)."""
    payload = json.dumps(
        {"v": _CURSOR_VERSION, "s": scope, "k": key}, separators=(",", ":"), sort_keys=True
    )
    return base64.urlsafe_b64encode(payload.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, scope: str) -> Any:
    """The key a cursor of the list ``scope`` resumes after.

    Raises ValueError if the cursor is malformed or was returned by another list.
    """
    hint = "pass the next_cursor of the previous page of the same list unchanged"
    if not isinstance(cursor, str) or not cursor or len(cursor) > 4096:
        raise ValueError(f"invalid cursor: {hint}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"invalid cursor: {hint}") from err
    if (
        not isinstance(payload, dict)
        or payload.get("v") != _CURSOR_VERSION
        or "k" not in payload
        or not isinstance(payload.get("s"), str)
    ):
        raise ValueError(f"invalid cursor: {hint}")
    if payload["s"] != scope:
        raise ValueError(f"invalid cursor: it belongs to another list; {hint}")
    return payload["k"]
