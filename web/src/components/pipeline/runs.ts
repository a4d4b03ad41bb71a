/**
 * Runs as the monitor shows them: status styles and the per-node figures of a run's
 * `counters` (see `aios/runs/local.py`):
 *
 *     {"frames": {"camera": 412}, "fps": {"camera": 9.8}, "dropped_frames": {"camera": 0},
 *      "events": {"restricted": 7}, "executions": {"succeeded": 9, "failed": 0, ...},
 *      "actions": {"siren": {"sent": 1, "throttled": 2}}, "events_stored": 9,
 *      "elapsed_seconds": 41.2}
 */

export type RunStatusName = "starting" | "running" | "stopping" | "stopped" | "succeeded" | "failed";

export const ACTIVE_STATUSES: readonly string[] = ["starting", "running", "stopping"];

export function isActive(status: string | null | undefined): boolean {
  return !!status && ACTIVE_STATUSES.includes(status);
}

export const RUN_STATUS_STYLE: Record<string, string> = {
  starting: "bg-sky-50 text-sky-700 ring-sky-200",
  running: "bg-emerald-50 text-emerald-700 ring-emerald-200",
  stopping: "bg-amber-50 text-amber-800 ring-amber-200",
  stopped: "bg-slate-100 text-slate-600 ring-slate-200",
  succeeded: "bg-slate-100 text-slate-700 ring-slate-200",
  failed: "bg-red-50 text-red-700 ring-red-200",
};

export interface NodeFigure {
  /** "frames", "fps", "dropped", "events", or an action result ("sent", "throttled"…). */
  name: string;
  value: number;
}

function numberAt(group: unknown, key: string): number | null {
  if (!group || typeof group !== "object") return null;
  const value = (group as Record<string, unknown>)[key];
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** The figures of one node in a run's counters, in a stable order; empty when none. */
export function nodeFigures(counters: Record<string, unknown> | null | undefined, nodeId: string): NodeFigure[] {
  if (!counters) return [];
  const out: NodeFigure[] = [];
  for (const [group, name] of [
    ["frames", "frames"],
    ["fps", "fps"],
    ["dropped_frames", "dropped"],
    ["events", "events"],
  ] as const) {
    const value = numberAt(counters[group], nodeId);
    if (value !== null && !(name === "dropped" && value === 0)) out.push({ name, value });
  }
  const actions = counters.actions;
  if (actions && typeof actions === "object") {
    const mine = (actions as Record<string, unknown>)[nodeId];
    if (mine && typeof mine === "object") {
      for (const [name, value] of Object.entries(mine as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) {
        if (typeof value === "number") out.push({ name, value });
      }
    }
  }
  return out;
}

/** "412 frames · 9.8 fps" */
export function figuresText(figures: NodeFigure[]): string {
  return figures.map((f) => `${f.name === "fps" ? f.value.toFixed(1) : f.value.toLocaleString("en-US")} ${f.name}`).join(" · ");
}

/** Totals of a run: executions by outcome and events stored. */
export function runTotals(counters: Record<string, unknown> | null | undefined): { name: string; value: number }[] {
  if (!counters) return [];
  const out: { name: string; value: number }[] = [];
  const executions = counters.executions;
  if (executions && typeof executions === "object") {
    for (const [name, value] of Object.entries(executions as Record<string, unknown>)) {
      if (typeof value === "number") out.push({ name: `executions ${name}`, value });
    }
  }
  if (typeof counters.events_stored === "number") out.push({ name: "events stored", value: counters.events_stored });
  return out;
}

/** Node ids that have figures in the counters (for the counters table). */
export function countedNodes(counters: Record<string, unknown> | null | undefined): string[] {
  if (!counters) return [];
  const ids = new Set<string>();
  for (const group of ["frames", "events", "actions"]) {
    const value = counters[group];
    if (value && typeof value === "object") Object.keys(value).forEach((id) => ids.add(id));
  }
  return [...ids].sort();
}

/** Query keys shared by the pipeline list, the editor and the monitor. */
export const runsKey = (pipelineId: string) => ["pipeline-runs", pipelineId] as const;
export const runKey = (runId: string) => ["run", runId] as const;
export const runEventsKey = (runId: string) => ["run-events", runId] as const;

/** Events kept in the monitor's list per run. */
export const EVENTS_KEPT = 100;
