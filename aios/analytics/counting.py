"""Occupancy counting: how many objects of each class are in the current frame."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aios.vision.types import Detections


@dataclass(frozen=True, slots=True)
class OccupancyUpdate:
    """Counts for one frame.

    Attributes:
        counts: number of detections per class name in this frame. Keys: the configured
            classes (all of them, zeros included), or, without a class filter, every class seen
            since construction or :meth:`OccupancyCounter.reset` (zeros included, so a class
            that left shows ``0``). Sorted by class name.
        total: sum of ``counts``.
        changed: whether any count differs from the previous frame's (a class absent from the
            previous counts counts as ``0``; before the first frame every count is ``0``, so the
            first frame is "changed" iff it has a counted detection).
    """

    counts: Mapping[str, int]
    total: int
    changed: bool


class OccupancyCounter:
    """Per-frame count of detections per class, with change detection and peaks.

    Counts are of the current frame's detections only (nothing is remembered across frames
    except for change detection and peaks): an empty frame gives zeros at once. The caller
    decides what to count, e.g. only the detections inside a zone.

    Args:
        classes: class names to count; detections of other classes are ignored. ``None``
            counts every class.
    """

    def __init__(self, classes: Iterable[str] | None = None) -> None:
        self.classes: frozenset[str] | None = None if classes is None else frozenset(classes)
        self._counts: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the previous counts and the peaks."""
        keys = sorted(self.classes) if self.classes is not None else []
        self._counts = dict.fromkeys(keys, 0)
        self._peak = dict.fromkeys(keys, 0)

    @property
    def counts(self) -> dict[str, int]:
        """Counts of the last frame (a copy; zeros before the first update)."""
        return dict(self._counts)

    @property
    def peak(self) -> dict[str, int]:
        """Highest per-frame count per class since construction or :meth:`reset` (a copy)."""
        return dict(self._peak)

    def update(self, detections: Detections) -> OccupancyUpdate:
        """Count one frame's detections per class.

        Args:
            detections: the detections to count (every one counts once, tracked or not).

        Returns:
            The counts and whether they changed since the previous frame.
        """
        counts = dict.fromkeys(self._counts, 0)
        for i in range(len(detections)):
            name = detections.class_name(i)
            if self.classes is None or name in self.classes:
                counts[name] = counts.get(name, 0) + 1
        counts = dict(sorted(counts.items()))
        changed = any(counts[k] != self._counts.get(k, 0) for k in counts)
        for name, n in counts.items():
            self._peak[name] = max(self._peak.get(name, 0), n)
        self._peak = dict(sorted(self._peak.items()))
        self._counts = counts
        return OccupancyUpdate(counts=dict(counts), total=sum(counts.values()), changed=changed)
