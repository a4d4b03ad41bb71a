"""Shared pieces of the routes: pagination parameters, time parameters, list helpers."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from aws_lambda_powertools.event_handler.openapi.params import Query

from aios.api.errors import NotFoundApi, Unprocessable
from aios.store.port import Page

T = TypeVar("T")
U = TypeVar("U")

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000

Limit = Annotated[
    int,
    Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1–{MAX_LIMIT}."),
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=4096,
        description="The `next_cursor` of the previous page; absent for the first page.",
    ),
]


def as_utc(value: datetime | None, field: str) -> datetime | None:
    """A query time as timezone-aware UTC (a naive time is taken as UTC).

    Raises:
        Unprocessable: the time cannot be expressed in UTC (out of range).
    """
    if value is None:
        return None
    try:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise Unprocessable.field(field, "time out of range") from None


def listed(fetch: Callable[[], Page[T]], cursor: str | None) -> Page[T]:
    """Call a store list; a cursor the store cannot read is a 422 on ``query.cursor``."""
    try:
        return fetch()
    except ValueError as err:
        if cursor is None:
            raise
        raise Unprocessable.field(
            "query.cursor",
            "not a cursor of this list; pass the next_cursor of the previous page, or "
            "leave it out for the first page",
        ) from err


def require(value: T | None, what: str) -> T:
    """``value``, or a 404 saying ``what`` does not exist."""
    if value is None:
        raise NotFoundApi(f"{what} does not exist")
    return value


def rule_cursor(rule_id: str) -> str:
    """The cursor of a list of alert rules that resumes after ``rule_id``."""
    return base64.urlsafe_b64encode(f"rule:{rule_id}".encode()).decode()


def after_rule(cursor: str) -> str:
    """The rule id a :func:`rule_cursor` resumes after.

    Raises:
        Unprocessable: not such a cursor (``query.cursor``).
    """
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith("rule:"):
        raise Unprocessable.field(
            "query.cursor", "not a cursor of this list; pass the next_cursor unchanged"
        )
    return text.removeprefix("rule:")
