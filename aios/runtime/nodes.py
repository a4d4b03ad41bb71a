"""The protocols node implementations follow in the stream tier.

* An **input** node's implementation is a :class:`SourceNode`: it opens a frame source.
* A **processing** or **logic** node's implementation is a :class:`ProcessorNode`: called
  once per frame with the values on its connected input ports, it returns the values of
  its output ports (a missing or ``None`` output means nothing flows on that port for this
  frame).
* An **output** node's implementation is a :class:`SinkNode`: it receives the events that
  reach it.

Port values by kind: ``frames`` → :class:`~aios.vision.types.Frame`; ``detections`` →
:class:`~aios.vision.types.DetectionsFrame`; ``event`` → ``list[StreamEvent]``;
``data`` → ``dict``. A port declared ``multiple`` receives a list of such values
(events: one concatenated list).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from aios.runtime.events import StreamEvent
from aios.vision.types import BGRImage, FrameSource


@runtime_checkable
class SourceNode(Protocol):
    """Implementation of an input node."""

    def open(self) -> FrameSource:
        """Open the source; raises an error naming what to fix when it cannot."""
        ...


@runtime_checkable
class ProcessorNode(Protocol):
    """Implementation of a per-frame processing or logic node."""

    def process(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Return output port values for one frame's input port values."""
        ...


@runtime_checkable
class SinkNode(Protocol):
    """Implementation of an output node."""

    def handle(self, events: list[StreamEvent]) -> list[StreamEvent]:
        """Act on events; return them as recorded (possibly enriched)."""
        ...


@runtime_checkable
class Overlay(Protocol):
    """A node that can draw what it watches (zones, lines) on an annotated frame."""

    def draw(self, image: BGRImage) -> None:
        """Draw on ``image`` in place."""
        ...


@runtime_checkable
class Closeable(Protocol):
    """A node holding resources released at the end of a run."""

    def close(self) -> None:
        """Release resources."""
        ...
