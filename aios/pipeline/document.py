"""The pipeline document: the one JSON shape the editor saves, the API stores and the
compiler reads.

Example (abridged)::

    {
      "schemaVersion": 1,
      "name": "Intrusion at the loading dock",
      "nodes": [
        {"id": "cam", "type": "aios/file.input@1", "config": {"path": "vtest.avi"},
         "position": {"x": 0, "y": 0}},
        {"id": "det", "type": "aios/object_detection@1", "config": {"classes": ["person"]},
         "position": {"x": 240, "y": 0}}
      ],
      "edges": [
        {"id": "e1", "source": "cam", "sourceHandle": "frames",
         "target": "det", "targetHandle": "frames"}
      ]
    }

Field names follow the editor's (React Flow's) camelCase. The JSON Schema is published
as ``schemas/pipeline.schema.json`` (``aios pipeline schema``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Position(_Model):
    """Where the editor draws the node, in canvas pixels (no effect on execution)."""

    x: float = Field(default=0.0, title="X", description="Canvas x coordinate, pixels.")
    y: float = Field(default=0.0, title="Y", description="Canvas y coordinate, pixels.")


class PipelineNode(_Model):
    """One node: an instance of a catalog node type with its configuration."""

    id: str = Field(
        pattern=NODE_ID_PATTERN,
        title="Node id",
        description="Unique within the pipeline: letters, digits, '_', '.', '-'; 1–64 chars.",
    )
    type: str = Field(
        title="Node type",
        description="Catalog type id, e.g. 'aios/zone@1' (see `aios nodes`).",
        min_length=1,
    )
    label: str | None = Field(
        default=None, title="Label", description="Name shown on the canvas.", max_length=120
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        title="Configuration",
        description="Validated against the node type's config JSON Schema.",
    )
    position: Position = Field(default_factory=Position, title="Position")


class PipelineEdge(_Model):
    """A connection from an output handle of one node to an input handle of another."""

    id: str | None = Field(default=None, title="Edge id", max_length=128)
    source: str = Field(title="Source node id")
    source_handle: str = Field(alias="sourceHandle", title="Source output port")
    target: str = Field(title="Target node id")
    target_handle: str = Field(alias="targetHandle", title="Target input port")

    def label(self, index: int) -> str:
        """Human reference used in error messages: the id, else the position in the list."""
        ref = f"'{self.id}'" if self.id else f"#{index}"
        return (
            f"edge {ref} ({self.source}.{self.source_handle} → {self.target}.{self.target_handle})"
        )


class PipelineDocument(_Model):
    """A whole pipeline. Each save of a document is an immutable revision."""

    schema_version: Literal[1] = Field(
        default=1,
        alias="schemaVersion",
        title="Schema version",
        description="Version of this document format.",
    )
    name: str = Field(title="Name", min_length=1, max_length=120)
    description: str = Field(default="", title="Description", max_length=2000)
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        title="Metadata",
        description="Free-form data kept with the document (site, owner, tags).",
    )
    nodes: list[PipelineNode] = Field(title="Nodes")
    edges: list[PipelineEdge] = Field(default_factory=list, title="Edges")

    def node(self, node_id: str) -> PipelineNode | None:
        """Return the node with this id, or ``None``."""
        return next((n for n in self.nodes if n.id == node_id), None)


def pipeline_json_schema() -> dict[str, Any]:
    """Return the published JSON Schema (draft 2020-12) of :class:`PipelineDocument`."""
    schema = PipelineDocument.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:aios:schema:pipeline:1"
    return schema
