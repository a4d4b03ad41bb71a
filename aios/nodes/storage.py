"""``aios/storage@1`` — keyed values kept between executions, with an expiry (TTL).

Each event performs one ``operation`` on one key of the state store
(:attr:`aios.events.task.TaskServices.state`: SQLite on one machine, DynamoDB in the cloud):

* ``get`` — read the value (``null`` when absent or expired);
* ``put`` — store a value;
* ``increment`` — add a number (``value``, default 1, or the number at ``value_field``) to
  the stored number (absent counts as 0);
* ``append`` — add a value to the end of the stored list, keeping only the newest
  ``max_items`` (absent counts as an empty list);
* ``delete`` — remove the key.

``put``, ``increment`` and ``append`` are atomic read-modify-writes
(:meth:`aios.events.state.StateStore.update`): concurrent executions on one key do not lose
updates. Every write restarts the key's TTL (``ttl_seconds``; unset: kept until deleted).

Namespaces: by default the node's own, ``storage/<pipeline>/<node id>``; with
``namespace`` set, ``storage.shared/<namespace>`` — shared by every storage node (of any
pipeline on the same state store) given that name, e.g. one node counts and another reads.

The key is a Jinja2 template with ``event`` and ``context`` in scope (default
``{{ event.source_id }}``: one value per camera or device). The node writes into the event,
at ``result_field`` (default ``data.storage``)::

    {"operation": "increment", "namespace": "...", "key": "cam-1",
     "previous": 4, "value": 5, "found": true}

``previous`` is the value before the operation and ``value`` the one after it (``get``:
both the stored value; ``delete``: ``value`` is ``null``); ``found`` says whether the key
held a value before. ``delete`` reads then removes, so its ``previous`` is best-effort
under concurrent writes.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any, Literal

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
from aios.events.actions import Template, render
from aios.events.task import Event, PermanentError, TaskRequest, TaskServices
from aios.nodes.transform import FieldPath, get_field, set_field

Operation = Literal["get", "put", "increment", "append", "delete"]

JsonValue = Annotated[
    Any,
    Field(description="Any JSON value: text, number, true/false, list or object."),
]

_MISSING = object()


class StorageConfig(NodeConfig):
    """One operation on one stored key per event."""

    operation: Operation = Field(
        default="get",
        title="Operation",
        description="get, put, increment (add a number), append (to a bounded list) or delete.",
    )
    key: Template = Field(
        default="{{ event.source_id }}",
        min_length=1,
        max_length=500,
        title="Key",
        description="Template of the key, with event fields: '{{ event.source_id }}' keeps "
        "one value per camera or device, '{{ event.zone }}' one per zone.",
    )
    namespace: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=80,
        title="Shared namespace",
        description="Name shared by the storage nodes that work on the same values (e.g. one "
        "counts, another reads). Unset: values private to this node.",
    )
    value: JsonValue = Field(
        default=None,
        title="Value",
        description="put / append: the value to store. increment: the number to add "
        "(default 1). Use 'value_field' to take it from the event instead.",
    )
    value_field: FieldPath | None = Field(
        default=None,
        title="Value from field",
        description="Event field holding the value, dotted for nested ones: "
        "'dwell_seconds', 'data.temperature'.",
    )
    ttl_seconds: float | None = Field(
        default=None,
        gt=0,
        le=366 * 86_400,
        title="Expire after (s)",
        description="Seconds a value is kept after its last write (unset: until deleted).",
    )
    max_items: int = Field(
        default=100,
        ge=1,
        le=10_000,
        title="List length",
        description="append: the newest this many items are kept.",
    )
    result_field: FieldPath = Field(
        default="data.storage",
        title="Result field",
        description="Where the result (previous and new value) is written in the event.",
    )

    @model_validator(mode="after")
    def _value_fits_operation(self) -> StorageConfig:
        op, given = self.operation, self.value is not None or self.value_field is not None
        if self.value is not None and self.value_field is not None:
            raise ValueError("give either 'value' or 'value_field', not both")
        if op in ("put", "append") and not given:
            raise ValueError(f"operation '{op}' needs 'value' or 'value_field'")
        if op in ("get", "delete") and given:
            raise ValueError(f"operation '{op}' takes no 'value' or 'value_field'; remove them")
        if op == "increment" and self.value is not None and not _is_number(self.value):
            raise ValueError(f"operation 'increment' needs a number in 'value', got {self.value!r}")
        return self


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


MANIFEST = NodeManifest(
    type="aios/storage@1",
    category=Category.LOGIC,
    tier=Tier.EVENT,
    title="Data Storage",
    description="Keeps values between events — counters, last values, recent lists — with "
    "an expiry, and adds them to each event.",
    icon="database",
    inputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="Each event performs the operation once.",
            multiple=True,
        ),
    ),
    outputs=(
        PortSpec(
            name="events",
            kind=PortKind.EVENT,
            title="Events",
            description="The events with the result under the result field.",
        ),
    ),
)


class StorageNode:
    """Performs the configured operation on ``services.state``; see the module docstring."""

    def __init__(self, config: StorageConfig, services: TaskServices) -> None:
        self.config = config
        self.services = services

    def namespace(self, request: TaskRequest) -> str:
        """Return the state-store namespace this node works in."""
        if self.config.namespace:
            return f"storage.shared/{self.config.namespace}"
        return f"storage/{request.pipeline}/{request.node_id}"

    def _operand(self, request: TaskRequest) -> Any:
        cfg = self.config
        if cfg.value_field is None:
            value = 1 if cfg.operation == "increment" and cfg.value is None else cfg.value
            return copy.deepcopy(value)
        value = get_field(request.event, cfg.value_field, _MISSING)
        if value is _MISSING:
            raise PermanentError(
                f"the event has no field '{cfg.value_field}' (value_field); check the field "
                "name or the node that adds it"
            )
        if cfg.operation == "increment" and not _is_number(value):
            raise PermanentError(
                f"increment needs a number, but the event's '{cfg.value_field}' is {value!r}"
            )
        return copy.deepcopy(value)

    def run(self, request: TaskRequest) -> Event:
        """Perform the operation; return the event with the result at ``result_field``.

        Raises:
            PermanentError: the key renders empty, ``value_field`` is missing or not a
                number for ``increment``, or the stored value has the wrong type (a number
                is needed to increment, a list to append).
        """
        cfg = self.config
        key = render(cfg.key, request).strip()
        if not key:
            raise PermanentError(
                f"the key template {cfg.key!r} rendered empty for this event; use fields the "
                "event has, e.g. '{{ event.source_id }}'"
            )
        ns = self.namespace(request)
        state = self.services.state
        seen: dict[str, Any] = {}
        op = cfg.operation
        if op == "get":
            previous = new = state.get(ns, key)
        elif op == "delete":
            previous, new = state.get(ns, key), None
            state.delete(ns, key)
        else:
            operand = self._operand(request)

            def apply(old: Any | None) -> Any:
                seen["previous"] = copy.deepcopy(old)
                if op == "put":
                    return operand
                if op == "increment":
                    if old is not None and not _is_number(old):
                        raise PermanentError(
                            f"cannot increment key {key!r}: it holds {old!r}, not a number; "
                            "delete it or use another key"
                        )
                    return (old or 0) + operand
                items = [] if old is None else old
                if not isinstance(items, list):
                    raise PermanentError(
                        f"cannot append to key {key!r}: it holds {old!r}, not a list; "
                        "delete it or use another key"
                    )
                return [*items, operand][-cfg.max_items :]

            new = state.update(ns, key, apply, cfg.ttl_seconds)
            previous = seen.get("previous")
        event = copy.deepcopy(request.event)
        set_field(
            event,
            cfg.result_field,
            {
                "operation": op,
                "namespace": ns,
                "key": key,
                "previous": previous,
                "value": new,
                "found": previous is not None,
            },
        )
        return event


NODE = NodeType(
    manifest=MANIFEST,
    config_model=StorageConfig,
    implementation=StorageNode,
    event_role=EventRole.PROCESSOR,
)
