/**
 * The canvas: React Flow over the editor store. Palette items dropped on it become nodes
 * (at the drop point), handles connect only compatible ports (a refused connection says why
 * in a toast), Delete/Backspace removes the selection, double-click opens a node's
 * configuration. Read-only for viewers: no dragging, connecting or deleting.
 */
import {
  Background,
  Controls,
  MiniMap,
  ReactFlow,
  useReactFlow,
  type Connection,
  type Edge,
  type FinalConnectionState,
  type IsValidConnection,
  type NodeChange,
  type EdgeChange,
} from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { useCallback, useMemo, useState, type DragEvent } from "react";
import toast from "react-hot-toast";
import { usePipelineEditor } from "../../stores/pipelineEditor";
import { connectionProblem, type FlowEdge, type FlowNode } from "./document";
import { KIND_COLOURS } from "./icons";
import { DRAG_MIME } from "./Palette";
import { PipelineNodeView } from "./PipelineNodeView";

const nodeTypes = { pipeline: PipelineNodeView };

/** What a finished drag from `state.fromHandle` to `state.toHandle` would connect. */
function attempted(state: FinalConnectionState): Connection | null {
  const from = state.fromHandle;
  const to = state.toHandle;
  if (!from || !to || from.type === to.type) return null;
  return from.type === "source"
    ? { source: from.nodeId, sourceHandle: from.id ?? null, target: to.nodeId, targetHandle: to.id ?? null }
    : { source: to.nodeId, sourceHandle: to.id ?? null, target: from.nodeId, targetHandle: from.id ?? null };
}

export function EditorCanvas({ readOnly, onOpenNode }: { readOnly: boolean; onOpenNode: (id: string) => void }) {
  const nodes = usePipelineEditor((s) => s.nodes);
  const edges = usePipelineEditor((s) => s.edges);
  const issueIndex = usePipelineEditor((s) => s.issueIndex);
  const catalog = usePipelineEditor((s) => s.catalog);
  const { screenToFlowPosition } = useReactFlow();
  // fit the view to a loaded document once; an empty canvas keeps its viewport as nodes arrive
  const [fitOnInit] = useState(() => usePipelineEditor.getState().nodes.length > 0);

  const onNodesChange = useCallback(
    (changes: NodeChange<FlowNode>[]) => {
      const allowed = readOnly ? changes.filter((c) => c.type === "select" || c.type === "dimensions") : changes;
      if (allowed.length) usePipelineEditor.getState().onNodesChange(allowed);
    },
    [readOnly],
  );
  const onEdgesChange = useCallback(
    (changes: EdgeChange<FlowEdge>[]) => {
      const allowed = readOnly ? changes.filter((c) => c.type === "select") : changes;
      if (allowed.length) usePipelineEditor.getState().onEdgesChange(allowed);
    },
    [readOnly],
  );

  const isValidConnection: IsValidConnection<FlowEdge> = useCallback((c: FlowEdge | Connection) => {
    const s = usePipelineEditor.getState();
    if (!s.catalog) return c.source !== c.target;
    return (
      connectionProblem(
        { source: c.source, target: c.target, sourceHandle: c.sourceHandle ?? null, targetHandle: c.targetHandle ?? null },
        s.nodes,
        s.edges,
        s.catalog,
      ) === null
    );
  }, []);

  const onConnect = useCallback((connection: Connection) => {
    const problem = usePipelineEditor.getState().connect(connection);
    if (problem) toast.error(problem, { id: "connection-refused" });
  }, []);

  const onConnectEnd = useCallback((_event: MouseEvent | TouchEvent, state: FinalConnectionState) => {
    if (state.isValid !== false) return;
    const connection = attempted(state);
    const s = usePipelineEditor.getState();
    if (!connection || !s.catalog) return;
    const problem = connectionProblem(connection, s.nodes, s.edges, s.catalog);
    if (problem) toast.error(problem, { id: "connection-refused" });
  }, []);

  const onDragOver = useCallback((event: DragEvent) => {
    if (readOnly) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  }, [readOnly]);

  const onDrop = useCallback(
    (event: DragEvent) => {
      if (readOnly) return;
      event.preventDefault();
      const type = event.dataTransfer.getData(DRAG_MIME) || event.dataTransfer.getData("text/plain");
      const s = usePipelineEditor.getState();
      if (!type || !s.catalog?.nodes.some((m) => m.type === type)) return;
      const position = screenToFlowPosition({ x: event.clientX, y: event.clientY });
      s.addNode(type, { x: position.x - 20, y: position.y - 20 });
    },
    [readOnly, screenToFlowPosition],
  );

  // edges coloured by the kind of their source port, red when validation names them
  const styledEdges: Edge[] = useMemo(() => {
    const kindOf = (e: FlowEdge) => {
      const node = nodes.find((n) => n.id === e.source);
      const manifest = catalog?.nodes.find((m) => m.type === node?.data.nodeType);
      return manifest?.outputs.find((p) => p.name === e.sourceHandle)?.kind;
    };
    return edges.map((e) => {
      const problems = issueIndex.byEdge[e.id];
      const colour = problems?.length ? "#dc2626" : (KIND_COLOURS[kindOf(e) ?? ""] ?? "#94a3b8");
      return {
        ...e,
        style: { stroke: colour, strokeWidth: e.selected ? 3 : 2 },
        label: problems?.length ? problems[0].message : undefined,
        labelStyle: problems?.length ? { fill: "#b91c1c", fontSize: 11 } : undefined,
        ariaLabel: `Edge from ${e.source} ${e.sourceHandle} to ${e.target} ${e.targetHandle}`,
      };
    });
  }, [edges, nodes, catalog, issueIndex]);

  return (
    <div className="h-full w-full" onDragOver={onDragOver} onDrop={onDrop} data-testid="pipeline-canvas">
      <ReactFlow<FlowNode, Edge>
        nodes={nodes}
        edges={styledEdges}
        nodeTypes={nodeTypes}
        onNodesChange={onNodesChange}
        onEdgesChange={onEdgesChange as (changes: EdgeChange<Edge>[]) => void}
        onConnect={onConnect}
        onConnectEnd={onConnectEnd}
        isValidConnection={isValidConnection as IsValidConnection<Edge>}
        onNodeDoubleClick={(_e, node) => onOpenNode(node.id)}
        nodesDraggable={!readOnly}
        nodesConnectable={!readOnly}
        edgesReconnectable={false}
        deleteKeyCode={readOnly ? null : ["Backspace", "Delete"]}
        zoomOnDoubleClick={false}
        fitView={fitOnInit}
        fitViewOptions={{ padding: 0.2, maxZoom: 1 }}
        minZoom={0.2}
      >
        <Background gap={16} />
        <Controls showInteractive={false} />
        <MiniMap pannable zoomable className="!hidden md:!block" />
      </ReactFlow>
    </div>
  );
}
