"""Node manifests, port kinds and the base of every node configuration.

A node type is one module in :mod:`aios.nodes`: a :class:`NodeManifest` (what the palette
shows and how the node connects), a :class:`NodeConfig` subclass (what the operator sets,
validated strictly) and an implementation. :class:`NodeType` ties the three together and is
what the catalog registers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

TYPE_ID_PATTERN = r"^aios/[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*@[1-9][0-9]*$"
"""A node type id: ``aios/<name>@<major>``, e.g. ``aios/camera.rtsp@1``."""


class PortKind(StrEnum):
    """What travels along an edge.

    * ``frames`` — video frames (:class:`aios.vision.types.Frame`).
    * ``detections`` — a frame plus boxes, classes, scores and track ids
      (:class:`aios.vision.types.DetectionsFrame`).
    * ``event`` — discrete occurrences with a payload (:class:`aios.runtime.events.StreamEvent`).
    * ``data`` — JSON values such as sensor readings or counts.
    """

    FRAMES = "frames"
    DETECTIONS = "detections"
    EVENT = "event"
    DATA = "data"


COMPATIBLE_KINDS: dict[PortKind, frozenset[PortKind]] = {
    # A detections value carries its frame, so it can feed anything that wants frames.
    PortKind.FRAMES: frozenset({PortKind.FRAMES, PortKind.DETECTIONS}),
    PortKind.DETECTIONS: frozenset({PortKind.DETECTIONS}),
    PortKind.EVENT: frozenset({PortKind.EVENT}),
    PortKind.DATA: frozenset({PortKind.DATA}),
}
"""For each input kind, the output kinds an edge may bring to it."""


def kinds_compatible(output: PortKind, input_: PortKind) -> bool:
    """Return whether an output port of kind ``output`` may feed an input of kind ``input_``."""
    return output in COMPATIBLE_KINDS[input_]


class Category(StrEnum):
    """Palette section of a node type."""

    INPUT = "input"
    PROCESSING = "processing"
    LOGIC = "logic"
    OUTPUT = "output"


class Tier(StrEnum):
    """Where a node runs: per frame beside the video, or per event in a state machine."""

    STREAM = "stream"
    EVENT = "event"


class EventRole(StrEnum):
    """How an event-tier node compiles to Amazon States Language.

    * ``source`` — an event-tier input (sensor data, webhook, timer): starts executions.
    * ``processor`` — a Task whose result replaces the event (transform, storage...).
    * ``action`` — a Task whose result is recorded under ``$.results.<node>``.
    * ``choice`` — a Choice state (conditional).
    * ``map`` — a Map state over a list field (loop).
    * ``wait`` — a Wait state (delay).
    """

    SOURCE = "source"
    PROCESSOR = "processor"
    ACTION = "action"
    CHOICE = "choice"
    MAP = "map"
    WAIT = "wait"


class PortSpec(BaseModel):
    """One input or output handle of a node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Handle id used by edges.")
    kind: PortKind
    title: str
    description: str = ""
    required: bool = Field(
        default=True, description="Inputs only: the pipeline is invalid while it is unconnected."
    )
    multiple: bool = Field(
        default=False, description="Inputs only: accepts more than one incoming edge."
    )


class NodeManifest(BaseModel):
    """What the catalog publishes about a node type (palette, ports, documentation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(pattern=TYPE_ID_PATTERN)
    category: Category
    tier: Tier
    title: str
    description: str
    icon: str = Field(description="lucide icon name, e.g. 'cctv'.")
    inputs: tuple[PortSpec, ...] = ()
    outputs: tuple[PortSpec, ...] = ()
    requires_any_input: bool = Field(
        default=False,
        description="At least one of the (optional) inputs must be connected.",
    )

    @field_validator("inputs", "outputs")
    @classmethod
    def _unique_port_names(cls, ports: tuple[PortSpec, ...]) -> tuple[PortSpec, ...]:
        names = [p.name for p in ports]
        if len(names) != len(set(names)):
            raise ValueError(f"port names must be unique, got {names}")
        return ports

    def input(self, name: str) -> PortSpec | None:
        """Return the input port called ``name``, or ``None``."""
        return next((p for p in self.inputs if p.name == name), None)

    def output(self, name: str) -> PortSpec | None:
        """Return the output port called ``name``, or ``None``."""
        return next((p for p in self.outputs if p.name == name), None)


class NodeConfig(BaseModel):
    """Base of every node configuration: strict, so a typo is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


C = TypeVar("C", bound=NodeConfig)


@dataclass(frozen=True)
class NodeType(Generic[C]):
    """A registered node type: manifest, configuration model and implementation factory.

    ``implementation`` builds the runnable node from a validated config and a
    :class:`aios.runtime.context.NodeContext`; its exact protocol depends on the tier
    (see :mod:`aios.runtime.stream`).
    """

    manifest: NodeManifest
    config_model: type[C]
    implementation: Callable[..., Any]
    event_role: EventRole | None = None
    """Event-tier nodes only: how the node compiles to ASL (stream-tier nodes: ``None``)."""

    def __post_init__(self) -> None:
        is_event = self.manifest.tier is Tier.EVENT
        if is_event != (self.event_role is not None):
            raise ValueError(
                f"{self.manifest.type}: an event-tier node needs an event_role, "
                "a stream-tier node must not have one"
            )

    @property
    def type_id(self) -> str:
        """The namespaced, versioned id, e.g. ``aios/zone@1``."""
        return self.manifest.type

    def parse_config(self, raw: Any) -> C:
        """Validate a raw config mapping; raises :class:`pydantic.ValidationError`."""
        return self.config_model.model_validate({} if raw is None else raw)

    def export(self) -> dict[str, Any]:
        """Return the manifest plus the JSON Schema of the config, as JSON-ready data."""
        return {
            **self.manifest.model_dump(mode="json"),
            "event_role": None if self.event_role is None else self.event_role.value,
            "config_schema": self.config_model.model_json_schema(),
        }
