"""``aios/conditional@1`` — route events by comparisons on their fields and the time of day.

Compiles to one ASL Choice state: the ``true`` output continues when the rule holds, the
``false`` output otherwise. Every comparison is guarded (``IsPresent`` and a type test), so
an event without the field takes the ``false`` path instead of failing the execution.
Timestamps are compared with the Timestamp* operators (instants, whatever their UTC
offsets); the time-of-day window compares the event's local time in the site's time zone
(``$.context.site.time``, ``HH:MM:SS``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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

FIELD_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
"""A dotted path into the event, e.g. ``dwell_seconds`` or ``data.temperature``."""

Operator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "exists", "not_exists", "matches"]
ValueType = Literal["auto", "string", "number", "boolean", "timestamp"]

_ASL_OPS = {
    "string": {
        "eq": "StringEquals",
        "gt": "StringGreaterThan",
        "gte": "StringGreaterThanEquals",
        "lt": "StringLessThan",
        "lte": "StringLessThanEquals",
        "matches": "StringMatches",
    },
    "number": {
        "eq": "NumericEquals",
        "gt": "NumericGreaterThan",
        "gte": "NumericGreaterThanEquals",
        "lt": "NumericLessThan",
        "lte": "NumericLessThanEquals",
    },
    "boolean": {"eq": "BooleanEquals"},
    "timestamp": {
        "eq": "TimestampEquals",
        "gt": "TimestampGreaterThan",
        "gte": "TimestampGreaterThanEquals",
        "lt": "TimestampLessThan",
        "lte": "TimestampLessThanEquals",
    },
}
_TYPE_TESTS = {
    "string": "IsString",
    "number": "IsNumeric",
    "boolean": "IsBoolean",
    "timestamp": "IsTimestamp",
}
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")


class Condition(BaseModel):
    """One comparison of an event field with a value or with another field."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(
        pattern=FIELD_PATH,
        title="Field",
        description="Event field, dotted for nested values: 'dwell_seconds', 'data.temperature'.",
    )
    operator: Operator = Field(
        default="eq",
        title="Operator",
        description="eq, ne, gt, gte, lt, lte; exists / not_exists; matches ('*' wildcards).",
    )
    value: str | float | bool | None = Field(
        default=None,
        title="Value",
        description="What to compare with (not used by exists / not_exists).",
    )
    value_field: str | None = Field(
        default=None,
        pattern=FIELD_PATH,
        title="Compare with field",
        description="Compare with another event field instead of a fixed value.",
    )
    value_type: ValueType = Field(
        default="auto",
        title="Type",
        description=(
            "How to compare: 'auto' takes the value's JSON type, and treats RFC 3339 text "
            "with a UTC offset ('2026-01-05T09:00:00+01:00') as a timestamp."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Condition:
        if self.operator in ("exists", "not_exists"):
            return self
        if (self.value is None) == (self.value_field is None):
            raise ValueError(
                f"operator '{self.operator}' needs exactly one of 'value' or 'value_field'"
            )
        kind = self.resolved_type()
        if self.operator not in _ASL_OPS[kind] and self.operator != "ne":
            raise ValueError(f"operator '{self.operator}' does not apply to {kind} values")
        if self.operator == "matches" and self.value_field is not None:
            raise ValueError("'matches' compares with a fixed pattern in 'value', not a field")
        if self.value is not None:
            self._check_value(kind)
        return self

    def _check_value(self, kind: str) -> None:
        value = self.value
        if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"value {value!r} is not a number")
        if kind == "boolean" and not isinstance(value, bool):
            raise ValueError(f"value {value!r} is not true or false")
        if kind in ("string", "timestamp") and not isinstance(value, str):
            raise ValueError(f"value {value!r} is not text")
        if kind == "timestamp" and not _RFC3339.match(str(value)):
            raise ValueError(
                f"value {value!r} is not an RFC 3339 timestamp with a UTC offset, "
                "e.g. '2026-01-05T09:00:00Z' or '2026-01-05T10:00:00+01:00'"
            )

    def resolved_type(self) -> str:
        """Return the comparison family: string, number, boolean or timestamp."""
        if self.value_type != "auto":
            return self.value_type
        value = self.value
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int | float):
            return "number"
        if isinstance(value, str) and _RFC3339.match(value):
            return "timestamp"
        return "string"

    def to_asl(self, root: str = "$.event") -> dict[str, Any]:
        """Return the ASL boolean expression of this condition (for a Choice rule)."""
        variable = f"{root}.{self.field}"
        present = {"Variable": variable, "IsPresent": True}
        if self.operator == "exists":
            return {"And": [present, {"Variable": variable, "IsNull": False}]}
        if self.operator == "not_exists":
            return {"Not": {"And": [present, {"Variable": variable, "IsNull": False}]}}
        kind = self.resolved_type()
        op = "eq" if self.operator == "ne" else self.operator
        name = _ASL_OPS[kind][op]
        comparison: dict[str, Any] = {"Variable": variable}
        guards = [present, {"Variable": variable, _TYPE_TESTS[kind]: True}]
        if self.value_field is not None:
            other = f"{root}.{self.value_field}"
            comparison[f"{name}Path"] = other
            guards += [
                {"Variable": other, "IsPresent": True},
                {"Variable": other, _TYPE_TESTS[kind]: True},
            ]
        else:
            comparison[name] = self.value
        rule: dict[str, Any] = {"And": [*guards, comparison]}
        return {"Not": rule} if self.operator == "ne" else rule


class TimeWindow(BaseModel):
    """Local time-of-day window in the site's time zone (may cross midnight)."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(
        title="From", description="Local time 'HH:MM' (or 'HH:MM:SS') the window opens."
    )
    end: str = Field(
        title="Until",
        description=(
            "Local time the window closes (exclusive); earlier than 'From' crosses midnight."
        ),
    )
    days: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7],
        min_length=1,
        max_length=7,
        title="Days",
        description="ISO weekdays of the event's local date: 1 = Monday … 7 = Sunday.",
    )

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"'{value}' is not a time of day like '22:00' or '06:30:00'")
        return value if value.count(":") == 2 else value + ":00"

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        bad = [d for d in value if not 1 <= d <= 7]
        if bad:
            raise ValueError(f"days must be 1 (Monday) to 7 (Sunday), got {bad}")
        return sorted(set(value))

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("'From' and 'Until' are equal: the window would be empty")
        return self

    def to_asl(self, root: str = "$.context.site") -> dict[str, Any]:
        """Return the ASL expression that holds when the event's local time is inside."""
        time_var = f"{root}.time"
        after = {"Variable": time_var, "StringGreaterThanEquals": self.start}
        before = {"Variable": time_var, "StringLessThan": self.end}
        inside: dict[str, Any] = (
            {"And": [after, before]} if self.start < self.end else {"Or": [after, before]}
        )
        if len(self.days) == 7:
            return inside
        day_rules = [{"Variable": f"{root}.weekday", "NumericEquals": d} for d in self.days]
        on_day = day_rules[0] if len(day_rules) == 1 else {"Or": day_rules}
        return {"And": [on_day, inside]}


class ConditionalConfig(NodeConfig):
    """Route events by a rule."""

    match: Literal["all", "any"] = Field(
        default="all",
        title="Match",
        description="'all': every condition must hold; 'any': at least one.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=20,
        title="Conditions",
        description="Comparisons on event fields.",
    )
    time_window: TimeWindow | None = Field(
        default=None,
        title="Time of day",
        description="Only when the event's local time is inside this window (site time zone).",
    )

    @model_validator(mode="after")
    def _has_rule(self) -> ConditionalConfig:
        if not self.conditions and self.time_window is None:
            raise ValueError("add at least one condition or a time window")
        return self

    def to_asl(self) -> dict[str, Any]:
        """Return the whole rule as one ASL boolean expression."""
        parts = [c.to_asl() for c in self.conditions]
        rule: dict[str, Any] | None = None
        if parts:
            rule = (
                parts[0] if len(parts) == 1 else {("And" if self.match == "all" else "Or"): parts}
            )
        if self.time_window is not None:
            window = self.time_window.to_asl()
            rule = window if rule is None else {"And": [rule, window]}
        assert rule is not None
        return rule


MANIFEST = NodeManifest(
    type="aios/conditional@1",
    category=Category.LOGIC,
    tier=Tier.EVENT,
    title="Condition",
    description=(
        "Continues on 'true' when the event matches the conditions (and the time window), "
        "on 'false' otherwise."
    ),
    icon="git-branch",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            multiple=True,
            description="Events to test.",
        ),
    ),
    outputs=(
        PortSpec(
            name="true",
            kind=PortKind.EVENT,
            title="Match",
            description="Events for which the rule holds.",
        ),
        PortSpec(
            name="false", kind=PortKind.EVENT, title="No match", description="All other events."
        ),
    ),
)


def _not_run(config: ConditionalConfig, services: Any) -> None:
    raise TypeError("a conditional compiles to a Choice state; it has no task to run")


NODE = NodeType(
    manifest=MANIFEST,
    config_model=ConditionalConfig,
    implementation=_not_run,
    event_role=EventRole.CHOICE,
)
