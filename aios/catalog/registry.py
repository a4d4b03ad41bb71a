"""The node catalog: an explicit registry of node types, keyed by type id."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

from aios.catalog.base import COMPATIBLE_KINDS, NodeType


class CatalogError(ValueError):
    """The catalog itself is inconsistent (a duplicate type id)."""


class Catalog:
    """An immutable set of node types; duplicate type ids are rejected at load."""

    def __init__(self, node_types: Iterable[NodeType[Any]]) -> None:
        """Register ``node_types``; raises :class:`CatalogError` on a duplicate type id."""
        self._types: dict[str, NodeType[Any]] = {}
        for node_type in node_types:
            if node_type.type_id in self._types:
                raise CatalogError(f"duplicate node type id {node_type.type_id!r}")
            self._types[node_type.type_id] = node_type

    def __contains__(self, type_id: object) -> bool:
        return type_id in self._types

    def __iter__(self) -> Iterator[NodeType[Any]]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def get(self, type_id: str) -> NodeType[Any] | None:
        """Return the node type with this id, or ``None``."""
        return self._types.get(type_id)

    def suggest(self, type_id: str) -> str | None:
        """Return the closest known type id, to help with a typo or a wrong version."""
        matches = difflib.get_close_matches(type_id, list(self._types), n=1, cutoff=0.6)
        return matches[0] if matches else None

    def export(self) -> dict[str, Any]:
        """Return the catalog as JSON-ready data: manifests plus config JSON Schemas."""
        return {
            "schema_version": 1,
            "port_kinds": ["frames", "detections", "event", "data"],
            "compatible_kinds": {
                k.value: sorted(v.value for v in vs) for k, vs in COMPATIBLE_KINDS.items()
            },
            "nodes": [t.export() for t in sorted(self, key=lambda t: t.type_id)],
        }
