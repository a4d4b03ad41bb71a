/**
 * The pipeline document (`aios/pipeline/document.py`, `schemas/pipeline.schema.json`) and the
 * editor's React Flow graph, one to the other without loss: what was loaded is saved back
 * unchanged except the edits (labels, edge ids, metadata and unknown top-level fields kept).
 * Also the editor's rules for connections (port kinds from the catalog), new node ids and
 * default configs, and the placement of validation issues on nodes and edges.
 */
import type { Connection, Edge, Node } from "@xyflow/react";
import type { JsonSchema, NodeCatalog, NodeManifest, PortSpec } from "./catalog";

export interface DocPosition {
  x: number;
  y: number;
}

export interface DocNode {
  id: string;
  type: string;
  label?: string | null;
  config: Record<string, unknown>;
  position?: DocPosition;
}

export interface DocEdge {
  id?: string | null;
  source: string;
  sourceHandle: string;
  target: string;
  targetHandle: string;
}

/** Everything of a document but its nodes and edges. */
export interface DocumentMeta {
  schemaVersion?: number;
  name: string;
  description?: string;
  metadata?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface PipelineDocument extends DocumentMeta {
  nodes: DocNode[];
  edges: DocEdge[];
}

export interface PipelineNodeData extends Record<string, unknown> {
  /** Catalog type id, e.g. "aios/zone@1". */
  nodeType: string;
  config: Record<string, unknown>;
  /** The document's label; `undefined` when the document has no `label` key. */
  label?: string | null;
}

export interface PipelineEdgeData extends Record<string, unknown> {
  /** The document's edge id (`null`/`undefined` when the document gave none). */
  docId?: string | null;
}

export type FlowNode = Node<PipelineNodeData, "pipeline">;
export type FlowEdge = Edge<PipelineEdgeData>;

/** One problem of a document, as `POST /pipelines/validate` returns it. */
export interface PipelineIssue {
  code: string;
  message: string;
  node_id?: string | null;
  edge?: string | null;
  edge_index?: number | null;
  edge_id?: string | null;
  path?: (string | number)[];
  location: string;
}

export interface ValidationResult {
  valid: boolean;
  issues: PipelineIssue[];
}

const clone = <T>(value: T): T => (value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T));

/** A document as the editor's graph: nodes, edges and the rest (`meta`). */
export function documentToFlow(doc: PipelineDocument): { meta: DocumentMeta; nodes: FlowNode[]; edges: FlowEdge[] } {
  const { nodes = [], edges = [], ...rest } = doc;
  const meta = rest as DocumentMeta;
  const flowNodes: FlowNode[] = nodes.map((n) => {
    const data: PipelineNodeData = { nodeType: n.type, config: clone(n.config ?? {}) };
    if (Object.prototype.hasOwnProperty.call(n, "label")) data.label = n.label ?? null;
    return {
      id: n.id,
      type: "pipeline",
      position: { x: n.position?.x ?? 0, y: n.position?.y ?? 0 },
      data,
    };
  });
  const used = new Set<string>();
  const flowEdges: FlowEdge[] = edges.map((e, index) => {
    let id = typeof e.id === "string" && e.id ? e.id : `edge-${index + 1}`;
    while (used.has(id)) id = `${id}~`;
    used.add(id);
    const data: PipelineEdgeData = {};
    if (Object.prototype.hasOwnProperty.call(e, "id")) data.docId = e.id ?? null;
    return {
      id,
      source: e.source,
      sourceHandle: e.sourceHandle,
      target: e.target,
      targetHandle: e.targetHandle,
      data,
    };
  });
  return { meta: clone(meta), nodes: flowNodes, edges: flowEdges };
}

/** The editor's graph as a document (the inverse of {@link documentToFlow}). */
export function flowToDocument(meta: DocumentMeta, nodes: FlowNode[], edges: FlowEdge[]): PipelineDocument {
  return {
    ...clone(meta),
    name: meta.name,
    nodes: nodes.map((n) => {
      const out = { id: n.id, type: n.data.nodeType } as DocNode;
      if (n.data.label !== undefined) out.label = n.data.label;
      out.config = clone(n.data.config ?? {});
      out.position = { x: n.position.x, y: n.position.y };
      return out;
    }),
    edges: edges.map((e) => {
      const out: DocEdge = {} as DocEdge;
      const docId = e.data?.docId;
      if (docId !== undefined) out.id = docId;
      out.source = e.source;
      out.sourceHandle = e.sourceHandle ?? "";
      out.target = e.target;
      out.targetHandle = e.targetHandle ?? "";
      return out;
    }),
  };
}

/** An empty document named `name`. */
export function emptyDocument(name = "Untitled pipeline"): PipelineDocument {
  return { schemaVersion: 1, name, description: "", metadata: {}, nodes: [], edges: [] };
}

// ------------------------------------------------------------------ connections

/** Whether an output of kind `source` may feed an input of kind `target`. */
export function kindsCompatible(catalog: Pick<NodeCatalog, "compatible_kinds">, source: string, target: string): boolean {
  return (catalog.compatible_kinds[source] ?? []).includes(target);
}

function port(manifest: NodeManifest | undefined, side: "inputs" | "outputs", name: string | null | undefined): PortSpec | undefined {
  return manifest?.[side].find((p) => p.name === name);
}

/**
 * Why `connection` cannot be added to the graph, or `null` when it can: no self loops, both
 * ports exist, the source port's kind may feed the target port's kind (the catalog's
 * `compatible_kinds`), no duplicate edge, and at most one edge into an input that is not
 * `multiple`. The message names both ends, e.g. "Camera RTSP · Frames (frames) cannot
 * connect to WhatsApp · Events (event)".
 */
export function connectionProblem(
  connection: Pick<Connection, "source" | "target" | "sourceHandle" | "targetHandle">,
  nodes: FlowNode[],
  edges: FlowEdge[],
  catalog: NodeCatalog,
): string | null {
  const { source, target, sourceHandle, targetHandle } = connection;
  if (!source || !target) return "Both ends of a connection must be nodes.";
  if (source === target) return "A node cannot connect to itself.";
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const from = byId.get(source);
  const to = byId.get(target);
  if (!from || !to) return "Both ends of a connection must be nodes of this pipeline.";
  const manifests = new Map(catalog.nodes.map((m) => [m.type, m]));
  const fromManifest = manifests.get(from.data.nodeType);
  const toManifest = manifests.get(to.data.nodeType);
  const out = port(fromManifest, "outputs", sourceHandle);
  const input = port(toManifest, "inputs", targetHandle);
  if (!out) return `${source} has no output '${sourceHandle ?? ""}'.`;
  if (!input) return `${target} has no input '${targetHandle ?? ""}'.`;
  const fromName = `${fromManifest?.title ?? source} · ${out.title} (${out.kind})`;
  const toName = `${toManifest?.title ?? target} · ${input.title} (${input.kind})`;
  if (!kindsCompatible(catalog, out.kind, input.kind)) return `${fromName} cannot connect to ${toName}.`;
  const same = edges.some(
    (e) => e.source === source && e.target === target && (e.sourceHandle ?? "") === sourceHandle && (e.targetHandle ?? "") === targetHandle,
  );
  if (same) return `${fromName} is already connected to ${toName}.`;
  if (!input.multiple && edges.some((e) => e.target === target && (e.targetHandle ?? "") === targetHandle)) {
    return `${toName} takes one connection only.`;
  }
  return null;
}

/** A new edge id not used by `edges` ("e1", "e2"…). */
export function uniqueEdgeId(edges: FlowEdge[]): string {
  const used = new Set(edges.flatMap((e) => [e.id, e.data?.docId ?? ""]));
  let n = edges.length + 1;
  while (used.has(`e${n}`)) n += 1;
  return `e${n}`;
}

// ------------------------------------------------------------------ new nodes

/** "aios/camera.rtsp@1" → "camera_rtsp": a readable base for node ids. */
export function idBase(type: string): string {
  const name = type.split("/").pop()?.split("@")[0] ?? "node";
  const base = name.replace(/[^A-Za-z0-9_-]+/g, "_").replace(/^[^A-Za-z0-9]+/, "");
  return (base || "node").slice(0, 56);
}

/** A node id for a new node of `type`, unique among `existing`: "zone", then "zone_2"… */
export function uniqueNodeId(type: string, existing: Iterable<string>): string {
  const used = new Set(existing);
  const base = idBase(type);
  if (!used.has(base)) return base;
  let n = 2;
  while (used.has(`${base}_${n}`)) n += 1;
  return `${base}_${n}`;
}

/** The config of a new node: every top-level property of the schema that has a non-null
 *  `default` (copied). Required fields without a default are left for the user (validation
 *  then names them). */
export function defaultConfig(schema: JsonSchema | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, prop] of Object.entries(schema?.properties ?? {})) {
    if (prop && typeof prop === "object" && "default" in prop && prop.default !== null && prop.default !== undefined) {
      out[key] = clone(prop.default);
    }
  }
  return out;
}

// ------------------------------------------------------------------ validation issues

export interface IssueIndex {
  byNode: Record<string, PipelineIssue[]>;
  /** By flow edge id. */
  byEdge: Record<string, PipelineIssue[]>;
  /** Issues about the whole document (no node, no edge found). */
  general: PipelineIssue[];
}

/** Place each issue on its node (`node_id`) and/or its edge (`edge_id`, else `edge_index` in
 *  the document's edge order, which is `edges`' order); the rest are general. */
export function indexIssues(issues: PipelineIssue[], edges: FlowEdge[], nodeIds?: Iterable<string>): IssueIndex {
  const known = nodeIds ? new Set(nodeIds) : null;
  const index: IssueIndex = { byNode: {}, byEdge: {}, general: [] };
  for (const issue of issues) {
    let placed = false;
    if (issue.node_id && (!known || known.has(issue.node_id))) {
      (index.byNode[issue.node_id] ??= []).push(issue);
      placed = true;
    }
    let edge: FlowEdge | undefined;
    if (issue.edge_id) edge = edges.find((e) => (e.data?.docId ?? e.id) === issue.edge_id);
    if (!edge && typeof issue.edge_index === "number") edge = edges[issue.edge_index];
    if (edge) {
      (index.byEdge[edge.id] ??= []).push(issue);
      placed = true;
    }
    if (!placed) index.general.push(issue);
  }
  return index;
}

/** "config.polygon.2" for an issue's path; "" for none. */
export function issuePath(issue: PipelineIssue): string {
  return (issue.path ?? []).join(".");
}
