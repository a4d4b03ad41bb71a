"""Pipeline documents the stream-tier tests share: a camera → people → zone → dashboard."""

from __future__ import annotations

from typing import Any

POS = {"x": 0, "y": 0}


def _edge(source: str, source_handle: str, target: str, target_handle: str) -> dict[str, str]:
    return {
        "source": source,
        "sourceHandle": source_handle,
        "target": target,
        "targetHandle": target_handle,
    }


def person_zone_pipeline(
    name: str,
    camera: dict[str, Any],
    *,
    zone: str,
    polygon: list[list[float]],
    snapshot: bool,
) -> dict[str, Any]:
    """``camera`` (node id ``cam``: its ``type`` and ``config``) → person detection
    (``detect``) → ``zone`` over ``polygon`` (fractions of the frame; snapshots when
    ``snapshot``) → dashboard (``dash``)."""
    return {
        "schemaVersion": 1,
        "name": name,
        "nodes": [
            {"id": "cam", **camera, "position": POS},
            {
                "id": "detect",
                "type": "aios/object_detection@1",
                "config": {"classes": ["person"], "min_confidence": 0.3},
                "position": POS,
            },
            {
                "id": "zone",
                "type": "aios/zone@1",
                "config": {
                    "name": zone,
                    "polygon": polygon,
                    "evidence": {"snapshot": snapshot, "clip": False},
                },
                "position": POS,
            },
            {"id": "dash", "type": "aios/dashboard@1", "config": {}, "position": POS},
        ],
        "edges": [
            _edge("cam", "frames", "detect", "frames"),
            _edge("detect", "detections", "zone", "detections"),
            _edge("zone", "events", "dash", "events"),
        ],
    }
