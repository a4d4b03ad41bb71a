"""``aios/delay@1`` — wait before the next nodes run.

Compiles to an ASL Wait state: a fixed number of seconds, or until a timestamp taken from
an event field (RFC 3339; a time already past does not wait). Step Functions Express
executions last at most 5 minutes, so the fixed delay is bounded accordingly.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

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
from aios.nodes.conditional import FIELD_PATH

MAX_DELAY_SECONDS = 240
"""Longest fixed delay: leaves room inside an Express execution's 5-minute limit."""


class DelayConfig(NodeConfig):
    """How long to wait."""

    seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_DELAY_SECONDS,
        title="Seconds",
        description=f"Wait this many seconds (1 to {MAX_DELAY_SECONDS}).",
    )
    until_field: str | None = Field(
        default=None,
        pattern=FIELD_PATH,
        title="Until the time in field",
        description="Wait until the RFC 3339 timestamp in this event field.",
    )

    @model_validator(mode="after")
    def _one(self) -> DelayConfig:
        if (self.seconds is None) == (self.until_field is None):
            raise ValueError("set exactly one of 'seconds' or 'until_field'")
        return self

    def to_asl(self) -> dict[str, Any]:
        """Return the Wait state's timing field."""
        if self.seconds is not None:
            return {"Seconds": self.seconds}
        return {"TimestampPath": f"$.event.{self.until_field}"}


MANIFEST = NodeManifest(
    type="aios/delay@1",
    category=Category.LOGIC,
    tier=Tier.EVENT,
    title="Delay",
    description="Waits a number of seconds, or until a time given in the event.",
    icon="hourglass",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            multiple=True,
            description="Events to delay.",
        ),
    ),
    outputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="The same events, after the wait.",
        ),
    ),
)


def _not_run(config: DelayConfig, services: Any) -> None:
    raise TypeError("a delay compiles to a Wait state; it has no task to run")


NODE = NodeType(
    manifest=MANIFEST,
    config_model=DelayConfig,
    implementation=_not_run,
    event_role=EventRole.WAIT,
)
