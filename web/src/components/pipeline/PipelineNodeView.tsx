/**
 * A node on the canvas: header with the type's icon and title (and the node's label or id),
 * one labelled input handle per input port on the left and one output handle per output port
 * on the right (handle id = port name, coloured by kind), validation errors as a badge and a
 * list, and the figures of the run shown in the monitor.
 */
import { Handle, Position, type NodeProps } from "@xyflow/react";
import clsx from "clsx";
import { CircleAlert } from "lucide-react";
import { memo } from "react";
import { usePipelineEditor } from "../../stores/pipelineEditor";
import type { PortSpec } from "./catalog";
import type { FlowNode } from "./document";
import { issuePath } from "./document";
import { categoryStyle, KIND_COLOURS, NodeIcon } from "./icons";
import { figuresText, nodeFigures } from "./runs";

function PortRow({ port, side }: { port: PortSpec; side: "in" | "out" }) {
  const colour = KIND_COLOURS[port.kind] ?? "#64748b";
  return (
    <div className={clsx("relative flex h-6 items-center text-xs text-slate-600", side === "in" ? "justify-start pl-2" : "justify-end pr-2")}>
      <Handle
        type={side === "in" ? "target" : "source"}
        position={side === "in" ? Position.Left : Position.Right}
        id={port.name}
        title={`${port.title} (${port.kind})`}
        aria-label={`${side === "in" ? "Input" : "Output"} ${port.title} (${port.kind})`}
        style={{ background: colour, width: 11, height: 11, border: "2px solid white" }}
      />
      <span>
        {port.title}
        <span className="ml-1 text-[10px] text-slate-400">{port.kind}</span>
      </span>
    </div>
  );
}

function unknownPorts(names: string[], kind: string): PortSpec[] {
  return [...new Set(names)].map((name) => ({ name, kind, title: name, description: "", required: false, multiple: true }));
}

export const PipelineNodeView = memo(function PipelineNodeView({ id, data, selected }: NodeProps<FlowNode>) {
  const manifest = usePipelineEditor((s) => s.catalog?.nodes.find((m) => m.type === data.nodeType));
  const issues = usePipelineEditor((s) => s.issueIndex.byNode[id]);
  const counters = usePipelineEditor((s) => s.counters);
  // an unknown type (another server's catalog) keeps the handles its edges use
  const edgeIn = usePipelineEditor((s) => (manifest ? "" : s.edges.filter((e) => e.target === id).map((e) => e.targetHandle ?? "").join("\n")));
  const edgeOut = usePipelineEditor((s) => (manifest ? "" : s.edges.filter((e) => e.source === id).map((e) => e.sourceHandle ?? "").join("\n")));
  const inputs = manifest?.inputs ?? unknownPorts(edgeIn ? edgeIn.split("\n") : [], "?");
  const outputs = manifest?.outputs ?? unknownPorts(edgeOut ? edgeOut.split("\n") : [], "?");
  const figures = nodeFigures(counters, id);
  const style = categoryStyle(manifest?.category ?? "");
  const hasIssues = !!issues?.length;
  const label = data.label || null;

  return (
    <div
      data-testid={`node-${id}`}
      data-has-errors={hasIssues ? "true" : "false"}
      className={clsx(
        "w-56 rounded-lg border bg-white text-left shadow-sm",
        hasIssues ? "border-red-400 ring-2 ring-red-200" : selected ? "border-sky-500 ring-2 ring-sky-200" : "border-slate-300",
      )}
    >
      <header className={clsx("flex items-center gap-2 rounded-t-lg border-b px-2.5 py-1.5", style.header)}>
        <NodeIcon name={manifest?.icon} className={clsx("h-4 w-4 shrink-0", style.icon)} />
        <div className="min-w-0 flex-1 leading-tight">
          <div className="truncate text-sm font-semibold text-slate-800">{label ?? manifest?.title ?? data.nodeType}</div>
          <div className="truncate text-[11px] text-slate-500">
            {label ? `${manifest?.title ?? data.nodeType} · ${id}` : id}
          </div>
        </div>
        {hasIssues && (
          <span
            className="inline-flex items-center gap-0.5 rounded-full bg-red-600 px-1.5 py-0.5 text-[11px] font-semibold text-white"
            title={issues.map((i) => `${issuePath(i) || i.location}: ${i.message}`).join("\n")}
            aria-label={`${issues.length} error${issues.length === 1 ? "" : "s"}`}
            data-testid="node-error-badge"
          >
            <CircleAlert className="h-3 w-3" aria-hidden />
            {issues.length}
          </span>
        )}
      </header>
      {!manifest && <div className="px-2.5 pt-1 text-xs text-red-600">Unknown node type {data.nodeType}</div>}
      <div className="py-1">
        {inputs.map((p) => (
          <PortRow key={`in-${p.name}`} port={p} side="in" />
        ))}
        {outputs.map((p) => (
          <PortRow key={`out-${p.name}`} port={p} side="out" />
        ))}
      </div>
      {hasIssues && (
        <ul className="space-y-0.5 border-t border-red-100 bg-red-50 px-2.5 py-1 text-[11px] text-red-700" data-testid="node-errors">
          {issues.slice(0, 3).map((issue, i) => (
            <li key={i} className="line-clamp-2">
              {issuePath(issue) ? <span className="font-mono">{issuePath(issue).replace(/^config\./, "")}: </span> : null}
              {issue.message}
            </li>
          ))}
          {issues.length > 3 && <li>… {issues.length - 3} more</li>}
        </ul>
      )}
      {figures.length > 0 && (
        <footer className="rounded-b-lg border-t border-slate-100 bg-slate-50 px-2.5 py-1 text-[11px] text-slate-600" data-testid="node-counters">
          {figuresText(figures)}
        </footer>
      )}
    </div>
  );
});
