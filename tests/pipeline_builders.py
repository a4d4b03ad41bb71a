"""Helpers that build pipeline documents for tests."""

from __future__ import annotations

from typing import Any


def edge(source: str, source_handle: str, target: str, target_handle: str) -> dict[str, Any]:
    """Return an edge from ``source.source_handle`` to ``target.target_handle``."""
    return {
        "source": source,
        "sourceHandle": source_handle,
        "target": target,
        "targetHandle": target_handle,
    }


def detect_zone_dashboard_edges(source: str, detect: str, zone: str, dash: str) -> list[Any]:
    """Return the edges of source → detection → zone → dashboard."""
    return [
        edge(source, "frames", detect, "frames"),
        edge(detect, "detections", zone, "detections"),
        edge(zone, "events", dash, "events"),
    ]
