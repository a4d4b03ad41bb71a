/**
 * The pipeline editor's state: the graph being edited (React Flow nodes and edges), the rest
 * of the document, whether it differs from what was saved (`dirty`), the revision it was
 * loaded from (the `expected_revision` of the next save), the last validation's issues
 * placed on nodes and edges, and the counters of the run shown in the monitor.
 *
 * The graph converts to and from the saved document with `components/pipeline/document.ts`.
 */
import { applyEdgeChanges, applyNodeChanges, type Connection, type EdgeChange, type NodeChange, type XYPosition } from "@xyflow/react";
import { create } from "zustand";
import type { NodeCatalog } from "../components/pipeline/catalog";
import {
  connectionProblem,
  defaultConfig,
  documentToFlow,
  emptyDocument,
  flowToDocument,
  indexIssues,
  uniqueEdgeId,
  uniqueNodeId,
  type DocumentMeta,
  type FlowEdge,
  type FlowNode,
  type IssueIndex,
  type PipelineDocument,
  type PipelineIssue,
} from "../components/pipeline/document";

export interface LoadOptions {
  pipelineId?: string | null;
  /** The pipeline's latest revision (what a save must say it was based on). */
  latestRevision?: number | null;
  /** The revision shown (an older one when picked from the revision list). */
  shownRevision?: number | null;
  /** Mark the loaded graph as unsaved (e.g. an older revision about to be restored). */
  dirty?: boolean;
}

export interface PipelineEditorState {
  pipelineId: string | null;
  meta: DocumentMeta;
  nodes: FlowNode[];
  edges: FlowEdge[];
  dirty: boolean;
  latestRevision: number | null;
  shownRevision: number | null;
  catalog: NodeCatalog | null;
  /** The last validation's issues (`null`: not validated since the last load). */
  issues: PipelineIssue[] | null;
  issueIndex: IssueIndex;
  /** Counters of the run shown in the monitor (`run.counters`). */
  counters: Record<string, unknown> | null;

  load: (doc: PipelineDocument, options?: LoadOptions) => void;
  reset: (name?: string) => void;
  setCatalog: (catalog: NodeCatalog) => void;
  onNodesChange: (changes: NodeChange<FlowNode>[]) => void;
  onEdgesChange: (changes: EdgeChange<FlowEdge>[]) => void;
  /** Add a node of `type` at `position` with its schema's defaults; returns its id. */
  addNode: (type: string, position: XYPosition) => string;
  /** Add the edge; returns why it was refused instead (nothing is added then). */
  connect: (connection: Connection) => string | null;
  updateNodeConfig: (id: string, config: Record<string, unknown>) => void;
  removeElements: (nodeIds: string[], edgeIds: string[]) => void;
  /** Remove the selected nodes (with their edges) and edges. */
  removeSelected: () => void;
  setName: (name: string) => void;
  setIssues: (issues: PipelineIssue[] | null) => void;
  markSaved: (pipelineId: string, revision: number) => void;
  setCounters: (counters: Record<string, unknown> | null) => void;
  /** The document to save. */
  document: () => PipelineDocument;
}

const NO_ISSUES: IssueIndex = { byNode: {}, byEdge: {}, general: [] };

/** Node changes that only reflect React Flow's own bookkeeping (not an edit). */
const VIEW_ONLY = new Set(["select", "dimensions"]);

function fresh(doc: PipelineDocument) {
  const { meta, nodes, edges } = documentToFlow(doc);
  return { meta, nodes, edges };
}

export const usePipelineEditor = create<PipelineEditorState>()((set, get) => ({
  pipelineId: null,
  ...fresh(emptyDocument()),
  dirty: false,
  latestRevision: null,
  shownRevision: null,
  catalog: null,
  issues: null,
  issueIndex: NO_ISSUES,
  counters: null,

  load: (doc, options = {}) =>
    set({
      ...fresh(doc),
      pipelineId: options.pipelineId ?? null,
      latestRevision: options.latestRevision ?? null,
      shownRevision: options.shownRevision ?? options.latestRevision ?? null,
      dirty: options.dirty ?? false,
      issues: null,
      issueIndex: NO_ISSUES,
    }),

  reset: (name) =>
    set({
      ...fresh(emptyDocument(name)),
      pipelineId: null,
      latestRevision: null,
      shownRevision: null,
      dirty: false,
      issues: null,
      issueIndex: NO_ISSUES,
      counters: null,
    }),

  setCatalog: (catalog) => set({ catalog }),

  onNodesChange: (changes) => {
    const edits = changes.filter((c) => !VIEW_ONLY.has(c.type));
    const removed = new Set(changes.flatMap((c) => (c.type === "remove" ? [c.id] : [])));
    set((s) => ({
      nodes: applyNodeChanges(changes, s.nodes),
      edges: removed.size ? s.edges.filter((e) => !removed.has(e.source) && !removed.has(e.target)) : s.edges,
      dirty: s.dirty || edits.length > 0,
    }));
  },

  onEdgesChange: (changes) => {
    const edits = changes.filter((c) => c.type !== "select");
    set((s) => ({ edges: applyEdgeChanges(changes, s.edges), dirty: s.dirty || edits.length > 0 }));
  },

  addNode: (type, position) => {
    const { nodes, catalog } = get();
    const manifest = catalog?.nodes.find((m) => m.type === type);
    const id = uniqueNodeId(type, nodes.map((n) => n.id));
    const node: FlowNode = {
      id,
      type: "pipeline",
      position: { x: Math.round(position.x), y: Math.round(position.y) },
      data: { nodeType: type, config: defaultConfig(manifest?.config_schema) },
    };
    set((s) => ({ nodes: [...s.nodes, node], dirty: true }));
    return id;
  },

  connect: (connection) => {
    const { nodes, edges, catalog } = get();
    if (catalog) {
      const problem = connectionProblem(connection, nodes, edges, catalog);
      if (problem) return problem;
    } else if (connection.source === connection.target) {
      return "A node cannot connect to itself.";
    }
    const id = uniqueEdgeId(edges);
    const edge: FlowEdge = {
      id,
      source: connection.source,
      sourceHandle: connection.sourceHandle,
      target: connection.target,
      targetHandle: connection.targetHandle,
      data: { docId: id },
    };
    set((s) => ({ edges: [...s.edges, edge], dirty: true }));
    return null;
  },

  updateNodeConfig: (id, config) =>
    set((s) => ({
      nodes: s.nodes.map((n) => (n.id === id ? { ...n, data: { ...n.data, config } } : n)),
      dirty: true,
    })),

  removeElements: (nodeIds, edgeIds) => {
    if (!nodeIds.length && !edgeIds.length) return;
    const nodeSet = new Set(nodeIds);
    const edgeSet = new Set(edgeIds);
    set((s) => ({
      nodes: s.nodes.filter((n) => !nodeSet.has(n.id)),
      edges: s.edges.filter((e) => !edgeSet.has(e.id) && !nodeSet.has(e.source) && !nodeSet.has(e.target)),
      dirty: true,
    }));
  },

  removeSelected: () => {
    const { nodes, edges, removeElements } = get();
    removeElements(
      nodes.filter((n) => n.selected).map((n) => n.id),
      edges.filter((e) => e.selected).map((e) => e.id),
    );
  },

  setName: (name) => set((s) => ({ meta: { ...s.meta, name }, dirty: true })),

  setIssues: (issues) => {
    const { edges, nodes } = get();
    set({
      issues,
      issueIndex: issues ? indexIssues(issues, edges, nodes.map((n) => n.id)) : NO_ISSUES,
    });
  },

  markSaved: (pipelineId, revision) =>
    set({ pipelineId, latestRevision: revision, shownRevision: revision, dirty: false }),

  setCounters: (counters) => set({ counters }),

  document: () => {
    const { meta, nodes, edges } = get();
    return flowToDocument(meta, nodes, edges);
  },
}));
