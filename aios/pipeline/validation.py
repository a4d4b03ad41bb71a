"""Validation of pipeline documents: every error at once, each with where it is.

:func:`validate_pipeline` checks, in order, the document's shape, each node (known type,
valid config), each edge (nodes and ports exist, kinds compatible, fan-in allowed), each
node's required inputs, cycles, that at least one input node exists, and that every
output node is reachable from an input. All problems found are reported together; only
when there is none is a :class:`ValidatedPipeline` returned.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from aios.catalog.base import Category, NodeConfig, NodeType, Tier, kinds_compatible
from aios.catalog.registry import Catalog
from aios.pipeline.document import PipelineDocument, PipelineEdge, PipelineNode


class IssueCode(StrEnum):
    """The kinds of problem a pipeline document can have."""

    INVALID_DOCUMENT = "invalid_document"
    DUPLICATE_NODE_ID = "duplicate_node_id"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_CONFIG = "invalid_config"
    DANGLING_EDGE = "dangling_edge"
    UNKNOWN_PORT = "unknown_port"
    INCOMPATIBLE_PORTS = "incompatible_ports"
    DUPLICATE_EDGE = "duplicate_edge"
    TOO_MANY_EDGES = "too_many_edges"
    MISSING_INPUT = "missing_input"
    CYCLE = "cycle"
    NO_INPUT = "no_input"
    UNREACHABLE_OUTPUT = "unreachable_output"


@dataclass(frozen=True)
class ValidationIssue:
    """One problem, located by node id or edge, and by field path inside it.

    ``edge`` is a readable description of the edge; ``edge_index`` (position in the
    document's ``edges``) and ``edge_id`` identify it for an editor.
    """

    code: IssueCode
    message: str
    node_id: str | None = None
    edge: str | None = None
    path: tuple[str | int, ...] = ()
    edge_index: int | None = None
    edge_id: str | None = None

    @property
    def location(self) -> str:
        """Where the problem is, e.g. ``node 'zone1' config.polygon.2``."""
        parts = []
        if self.node_id is not None:
            parts.append(f"node '{self.node_id}'")
        if self.edge is not None:
            parts.append(self.edge)
        if self.path:
            parts.append(".".join(str(p) for p in self.path))
        return " ".join(parts) or "document"

    def __str__(self) -> str:
        return f"{self.location}: {self.message} [{self.code.value}]"

    def to_dict(self) -> dict[str, Any]:
        """Return the issue as JSON-ready data (what the API returns in a 422)."""
        return {
            "code": self.code.value,
            "message": self.message,
            "node_id": self.node_id,
            "edge": self.edge,
            "edge_index": self.edge_index,
            "edge_id": self.edge_id,
            "path": list(self.path),
            "location": self.location,
        }


class PipelineInvalid(ValueError):
    """A pipeline document has problems; ``issues`` lists every one of them."""

    def __init__(self, issues: list[ValidationIssue]) -> None:
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"the pipeline has {len(issues)} problem(s):\n{lines}")


@dataclass(frozen=True)
class ResolvedNode:
    """A node whose type is known and whose config is valid."""

    node: PipelineNode
    node_type: NodeType[Any]
    config: NodeConfig

    @property
    def id(self) -> str:
        """The node id."""
        return self.node.id


@dataclass(frozen=True)
class ValidatedPipeline:
    """A pipeline that passed validation, ready to compile or run.

    Attributes:
        document: the parsed document.
        nodes: resolved nodes by id.
        order: node ids in a topological order (sources first).
        incoming: for each node id, its incoming edges.
        outgoing: for each node id, its outgoing edges.
    """

    document: PipelineDocument
    nodes: dict[str, ResolvedNode]
    order: tuple[str, ...]
    incoming: dict[str, tuple[PipelineEdge, ...]] = field(default_factory=dict)
    outgoing: dict[str, tuple[PipelineEdge, ...]] = field(default_factory=dict)

    def video_inputs(self) -> list[ResolvedNode]:
        """The video input nodes (input category, stream tier), in document order."""
        return [
            r
            for r in self.nodes.values()
            if r.node_type.manifest.category is Category.INPUT
            and r.node_type.manifest.tier is Tier.STREAM
        ]

    def downstream_of(self, node_id: str) -> set[str]:
        """Return the ids of every node reachable from ``node_id``, itself included."""
        seen = {node_id}
        queue = deque([node_id])
        while queue:
            for edge in self.outgoing.get(queue.popleft(), ()):
                if edge.target not in seen:
                    seen.add(edge.target)
                    queue.append(edge.target)
        return seen


def _pydantic_issues(
    err: ValidationError, code: IssueCode, node_id: str | None, prefix: tuple[str | int, ...]
) -> list[ValidationIssue]:
    issues = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the node's config schema)"
        issues.append(ValidationIssue(code, msg, node_id=node_id, path=prefix + loc))
    return issues


def _nodes_on_cycles(candidates: set[str], outgoing: dict[str, list[PipelineEdge]]) -> list[str]:
    """Return the candidates that can reach themselves (on a cycle), sorted.

    ``candidates`` are the nodes Kahn's algorithm could not order: those on cycles and
    those downstream of one; only the former are reported.
    """
    on_cycle = []
    for start in sorted(candidates):
        stack = [e.target for e in outgoing.get(start, []) if e.target in candidates]
        seen: set[str] = set()
        while stack:
            nid = stack.pop()
            if nid == start:
                on_cycle.append(start)
                break
            if nid in seen:
                continue
            seen.add(nid)
            stack.extend(e.target for e in outgoing.get(nid, []) if e.target in candidates)
    return on_cycle


def load_document(raw: Any) -> PipelineDocument:
    """Parse raw JSON data (or a JSON string) into a document; raises :class:`PipelineInvalid`."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as err:
            raise PipelineInvalid(
                [
                    ValidationIssue(
                        IssueCode.INVALID_DOCUMENT,
                        f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}",
                    )
                ]
            ) from err
    if not isinstance(raw, (dict, PipelineDocument)):
        raise PipelineInvalid(
            [
                ValidationIssue(
                    IssueCode.INVALID_DOCUMENT,
                    f"a pipeline is a JSON object with 'name', 'nodes' and 'edges', not "
                    f"{type(raw).__name__ if raw is not None else 'null'}",
                )
            ]
        )
    try:
        return PipelineDocument.model_validate(raw)
    except ValidationError as err:
        issues = []
        for e in err.errors(include_url=False):
            loc = tuple(e["loc"])
            node_id = None
            # Name the node by id when the error is inside one.
            if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
                nodes = raw.get("nodes") if isinstance(raw, dict) else None
                if isinstance(nodes, list) and loc[1] < len(nodes):
                    entry = nodes[loc[1]]
                    if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                        node_id = entry["id"]
            msg = e["msg"]
            if e["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling)"
            issues.append(
                ValidationIssue(IssueCode.INVALID_DOCUMENT, msg, node_id=node_id, path=loc)
            )
        raise PipelineInvalid(issues) from err


def validate_pipeline(raw: Any, catalog: Catalog) -> ValidatedPipeline:
    """Validate a pipeline document against a catalog.

    Args:
        raw: a :class:`PipelineDocument`, its JSON data, or a JSON string.
        catalog: the node types that may be used.

    Returns:
        The validated pipeline.

    Raises:
        PipelineInvalid: listing every problem found.
    """
    doc = raw if isinstance(raw, PipelineDocument) else load_document(raw)
    issues: list[ValidationIssue] = []

    # Nodes: unique ids, known types, valid configs.
    resolved: dict[str, ResolvedNode] = {}
    seen_ids: set[str] = set()
    for index, node in enumerate(doc.nodes):
        if node.id in seen_ids:
            issues.append(
                ValidationIssue(
                    IssueCode.DUPLICATE_NODE_ID,
                    f"node id '{node.id}' is used more than once; give each node its own id",
                    node_id=node.id,
                    path=("nodes", index, "id"),
                )
            )
            continue
        seen_ids.add(node.id)
        node_type = catalog.get(node.type)
        if node_type is None:
            hint = catalog.suggest(node.type)
            message = f"unknown node type '{node.type}'"
            message += f"; did you mean '{hint}'?" if hint else "; see `aios nodes`"
            issues.append(
                ValidationIssue(IssueCode.UNKNOWN_TYPE, message, node_id=node.id, path=("type",))
            )
            continue
        try:
            config = node_type.parse_config(node.config)
        except ValidationError as err:
            issues.extend(_pydantic_issues(err, IssueCode.INVALID_CONFIG, node.id, ("config",)))
            continue
        resolved[node.id] = ResolvedNode(node, node_type, config)

    # Edges: endpoints exist, ports exist, kinds compatible, no duplicates, fan-in allowed.
    good_edges: list[PipelineEdge] = []
    edge_keys: set[tuple[str, str, str, str]] = set()
    fan_in: dict[tuple[str, str], int] = defaultdict(int)
    for index, edge in enumerate(doc.edges):
        label = edge.label(index)
        missing = [
            (role, nid)
            for role, nid in (("source", edge.source), ("target", edge.target))
            if nid not in seen_ids
        ]
        if missing:
            for role, nid in missing:
                issues.append(
                    ValidationIssue(
                        IssueCode.DANGLING_EDGE,
                        f"{role} node '{nid}' does not exist; connect the edge to an existing "
                        "node or delete it",
                        edge=label,
                        edge_index=index,
                        edge_id=edge.id,
                        path=(role,),
                    )
                )
            continue
        src, dst = resolved.get(edge.source), resolved.get(edge.target)
        if src is None or dst is None:
            # The node's own problem is already reported; keep the edge for the graph
            # checks so that it does not also show up as unconnected or unreachable.
            good_edges.append(edge)
            continue
        out_port = src.node_type.manifest.output(edge.source_handle)
        in_port = dst.node_type.manifest.input(edge.target_handle)
        if out_port is None:
            names = [p.name for p in src.node_type.manifest.outputs] or ["(none)"]
            issues.append(
                ValidationIssue(
                    IssueCode.UNKNOWN_PORT,
                    f"'{edge.source}' ({src.node.type}) has no output port "
                    f"'{edge.source_handle}'; its outputs are: {', '.join(names)}",
                    edge=label,
                    edge_index=index,
                    edge_id=edge.id,
                    path=("sourceHandle",),
                )
            )
        if in_port is None:
            names = [p.name for p in dst.node_type.manifest.inputs] or ["(none)"]
            issues.append(
                ValidationIssue(
                    IssueCode.UNKNOWN_PORT,
                    f"'{edge.target}' ({dst.node.type}) has no input port "
                    f"'{edge.target_handle}'; its inputs are: {', '.join(names)}",
                    edge=label,
                    edge_index=index,
                    edge_id=edge.id,
                    path=("targetHandle",),
                )
            )
        if out_port is None or in_port is None:
            continue
        if not kinds_compatible(out_port.kind, in_port.kind):
            issues.append(
                ValidationIssue(
                    IssueCode.INCOMPATIBLE_PORTS,
                    f"output '{edge.source_handle}' of '{edge.source}' carries "
                    f"{out_port.kind.value}, but input '{edge.target_handle}' of "
                    f"'{edge.target}' takes {in_port.kind.value}",
                    edge=label,
                    edge_index=index,
                    edge_id=edge.id,
                )
            )
            continue
        key = (edge.source, edge.source_handle, edge.target, edge.target_handle)
        if key in edge_keys:
            issues.append(
                ValidationIssue(
                    IssueCode.DUPLICATE_EDGE,
                    "the same connection appears twice",
                    edge=label,
                    edge_index=index,
                    edge_id=edge.id,
                )
            )
            continue
        edge_keys.add(key)
        fan_in[(edge.target, edge.target_handle)] += 1
        if fan_in[(edge.target, edge.target_handle)] == 2 and not in_port.multiple:
            issues.append(
                ValidationIssue(
                    IssueCode.TOO_MANY_EDGES,
                    f"input '{edge.target_handle}' accepts one connection; remove the extra "
                    "edge or add another node",
                    node_id=edge.target,
                    edge=label,
                    edge_index=index,
                    edge_id=edge.id,
                )
            )
        good_edges.append(edge)

    incoming: dict[str, list[PipelineEdge]] = defaultdict(list)
    outgoing: dict[str, list[PipelineEdge]] = defaultdict(list)
    for edge in good_edges:
        incoming[edge.target].append(edge)
        outgoing[edge.source].append(edge)

    # Required inputs.
    for rnode in resolved.values():
        manifest = rnode.node_type.manifest
        connected = {e.target_handle for e in incoming[rnode.id]}
        for port in manifest.inputs:
            if port.required and port.name not in connected:
                issues.append(
                    ValidationIssue(
                        IssueCode.MISSING_INPUT,
                        f"input '{port.name}' ({port.kind.value}) is not connected",
                        node_id=rnode.id,
                    )
                )
        if manifest.requires_any_input and manifest.inputs and not connected:
            listed = ", ".join(p.name for p in manifest.inputs)
            issues.append(
                ValidationIssue(
                    IssueCode.MISSING_INPUT,
                    f"connect at least one of the inputs: {listed}",
                    node_id=rnode.id,
                )
            )

    # Cycles (Kahn's algorithm over all declared nodes with good edges).
    indegree = {nid: 0 for nid in seen_ids}
    for edge in good_edges:
        indegree[edge.target] += 1
    queue = deque(sorted(nid for nid, d in indegree.items() if d == 0))
    order: list[str] = []
    while queue:
        nid = queue.popleft()
        order.append(nid)
        for edge in outgoing[nid]:
            indegree[edge.target] -= 1
            if indegree[edge.target] == 0:
                queue.append(edge.target)
    if len(order) < len(seen_ids):
        in_cycle = _nodes_on_cycles({nid for nid, d in indegree.items() if d > 0}, outgoing)
        issues.append(
            ValidationIssue(
                IssueCode.CYCLE,
                "the graph has a cycle through nodes "
                + ", ".join(f"'{n}'" for n in in_cycle)
                + "; pipelines must be acyclic: remove one of the edges between them",
            )
        )

    # Inputs and reachability.
    input_ids = [
        n.id
        for n in doc.nodes
        if (t := catalog.get(n.type)) is not None and t.manifest.category is Category.INPUT
    ]
    if not input_ids:
        issues.append(
            ValidationIssue(
                IssueCode.NO_INPUT,
                "the pipeline has no input node; add a camera, file or other input",
            )
        )
    else:
        reachable: set[str] = set()
        frontier = deque(input_ids)
        reachable.update(input_ids)
        while frontier:
            for edge in outgoing[frontier.popleft()]:
                if edge.target not in reachable:
                    reachable.add(edge.target)
                    frontier.append(edge.target)
        for node in doc.nodes:
            node_type = catalog.get(node.type)
            if (
                node_type is not None
                and node_type.manifest.category is Category.OUTPUT
                and node.id not in reachable
                and incoming[node.id]  # unconnected: already reported as a missing input
            ):
                issues.append(
                    ValidationIssue(
                        IssueCode.UNREACHABLE_OUTPUT,
                        "no input node reaches this output; connect it to the rest of the pipeline",
                        node_id=node.id,
                    )
                )

    if issues:
        raise PipelineInvalid(issues)
    return ValidatedPipeline(
        document=doc,
        nodes=resolved,
        order=tuple(order),
        incoming={k: tuple(v) for k, v in incoming.items()},
        outgoing={k: tuple(v) for k, v in outgoing.items()},
    )
