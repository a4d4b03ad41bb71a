/**
 * The monitor: a run of the pipeline (the newest by default) with its status, per-node
 * counters and its events as they arrive (the editor keeps the query caches current from the
 * pipeline's live feed), snapshot thumbnails, and live video of the fleet cameras it uses.
 */
import { useQuery } from "@tanstack/react-query";
import { Video } from "lucide-react";
import { useState } from "react";
import { api } from "../../api/client";
import type { EventRecord, Page, Run } from "../../api/types";
import { useAuthorizedBlobUrl } from "../../hooks/useAuthorizedBlob";
import { dateTime, duration, clock } from "../../lib/format";
import { usePipelineEditor } from "../../stores/pipelineEditor";
import { LiveView } from "../live/LiveView";
import { Button, EmptyState, ErrorNote, Modal, Spinner } from "../ui";
import { RunStatusBadge } from "./RunStatusBadge";
import { countedNodes, EVENTS_KEPT, figuresText, nodeFigures, runEventsKey, runKey, runsKey, runTotals } from "./runs";

function Snapshot({ url, alt }: { url: string; alt: string }) {
  const { src, failed } = useAuthorizedBlobUrl(url);
  const [open, setOpen] = useState(false);
  if (failed) return <span className="text-xs text-slate-400">no snapshot</span>;
  if (!src) return <span className="inline-block h-10 w-14 animate-pulse rounded bg-slate-100" aria-label="Loading snapshot" />;
  return (
    <>
      <button type="button" onClick={() => setOpen(true)} aria-label={`Open snapshot of ${alt}`}>
        <img src={src} alt={`Snapshot of ${alt}`} className="h-10 w-14 rounded object-cover ring-1 ring-slate-200" data-testid="event-snapshot" />
      </button>
      <Modal title={`Snapshot: ${alt}`} open={open} onClose={() => setOpen(false)} wide>
        <img src={src} alt={`Snapshot of ${alt}`} className="mx-auto max-h-[70vh]" />
      </Modal>
    </>
  );
}

function eventSummary(event: EventRecord): string {
  const d = (event.data ?? {}) as Record<string, unknown>;
  const parts: string[] = [];
  if (typeof d.zone === "string") parts.push(d.zone);
  if (typeof d.class_name === "string") parts.push(d.class_name);
  if (typeof d.track_id === "number" || typeof d.track_id === "string") parts.push(`track ${d.track_id}`);
  if (typeof d.dwell_seconds === "number") parts.push(`${d.dwell_seconds.toFixed(1)} s`);
  if (typeof d.confidence === "number") parts.push(`${Math.round(d.confidence * 100)} %`);
  return parts.join(" · ");
}

export function MonitorPanel({ pipelineId }: { pipelineId: string }) {
  const nodes = usePipelineEditor((s) => s.nodes);
  const runs = useQuery({
    queryKey: runsKey(pipelineId),
    queryFn: () => api<Page<Run>>(`/pipelines/${pipelineId}/runs`, { query: { limit: 20 } }),
  });
  const [chosen, setChosen] = useState<string | null>(null);
  const [liveDevice, setLiveDevice] = useState<string | null>(null);
  const runId = chosen ?? runs.data?.items[0]?.id ?? null;
  const listed = runs.data?.items.find((r) => r.id === runId);
  const run = useQuery({
    queryKey: runKey(runId ?? ""),
    queryFn: () => api<Run>(`/runs/${runId}`),
    enabled: runId !== null,
    initialData: listed,
  });
  const events = useQuery({
    queryKey: runEventsKey(runId ?? ""),
    queryFn: async () => (await api<Page<EventRecord>>("/events", { query: { run_id: runId, limit: EVENTS_KEPT } })).items,
    enabled: runId !== null,
  });

  const cameras = nodes.filter((n) => n.data.nodeType === "aios/camera.device@1" && typeof n.data.config.device_id === "string");
  const current = run.data;
  const counters = (current?.counters ?? null) as Record<string, unknown> | null;
  const labels = new Map(nodes.map((n) => [n.id, n.data.label || n.id]));
  const counted = countedNodes(counters);

  if (runs.isLoading) return <Spinner />;
  if (runs.error) return <ErrorNote error={runs.error} />;

  return (
    <div className="space-y-4 text-sm" data-testid="monitor">
      {cameras.length > 0 && (
        <section aria-label="Cameras">
          <h3 className="mb-1 text-xs font-semibold tracking-wide text-slate-500 uppercase">Cameras</h3>
          <ul className="space-y-1">
            {cameras.map((n) => (
              <li key={n.id} className="flex items-center justify-between gap-2">
                <span className="truncate">{n.data.label || n.id}</span>
                <Button variant="secondary" onClick={() => setLiveDevice(String(n.data.config.device_id))} aria-label={`Live view of ${n.data.label || n.id}`}>
                  <Video className="h-4 w-4" aria-hidden /> Live view
                </Button>
              </li>
            ))}
          </ul>
        </section>
      )}

      {!runs.data?.items.length ? (
        <EmptyState>This pipeline has not run yet. Press Play to start it.</EmptyState>
      ) : (
        <>
          <section aria-label="Run">
            <div className="flex items-center justify-between gap-2">
              <label className="flex min-w-0 items-center gap-2">
                <span className="text-xs font-semibold tracking-wide text-slate-500 uppercase">Run</span>
                <select
                  className="min-w-0 rounded-md border border-slate-300 px-1.5 py-1 text-xs"
                  value={runId ?? ""}
                  onChange={(e) => setChosen(e.target.value)}
                  aria-label="Run"
                >
                  {runs.data.items.map((r, i) => (
                    <option key={r.id} value={r.id}>
                      {i === 0 ? "Latest · " : ""}
                      {dateTime(r.started_at)} · r{r.revision} · {r.status}
                    </option>
                  ))}
                </select>
              </label>
              <RunStatusBadge status={current?.status} />
            </div>
            {current && (
              <dl className="mt-2 grid grid-cols-2 gap-x-3 gap-y-1 text-xs text-slate-600">
                <dt className="text-slate-400">Revision</dt>
                <dd>{current.revision}</dd>
                <dt className="text-slate-400">Started</dt>
                <dd>
                  {dateTime(current.started_at)}
                  {current.started_by ? ` by ${current.started_by}` : ""}
                </dd>
                {current.stopped_at && (
                  <>
                    <dt className="text-slate-400">Ended</dt>
                    <dd>{dateTime(current.stopped_at)}</dd>
                  </>
                )}
                {typeof counters?.elapsed_seconds === "number" && (
                  <>
                    <dt className="text-slate-400">Elapsed</dt>
                    <dd>{duration(counters.elapsed_seconds)}</dd>
                  </>
                )}
                {typeof counters?.waiting === "string" && (
                  <>
                    <dt className="text-slate-400">Waiting for</dt>
                    <dd>{counters.waiting}</dd>
                  </>
                )}
              </dl>
            )}
            {current?.error && (
              <p role="alert" className="mt-2 rounded border border-red-200 bg-red-50 p-2 text-xs text-red-700">
                {current.error}
              </p>
            )}
          </section>

          <section aria-label="Counters">
            <h3 className="mb-1 text-xs font-semibold tracking-wide text-slate-500 uppercase">Counters</h3>
            {counted.length === 0 && runTotals(counters).length === 0 ? (
              <p className="text-xs text-slate-500">No counters yet.</p>
            ) : (
              <table className="w-full text-xs" data-testid="counters-table">
                <tbody>
                  {counted.map((id) => (
                    <tr key={id} className="border-b border-slate-100">
                      <th scope="row" className="py-1 pr-2 text-left font-medium text-slate-700">
                        {labels.get(id) ?? id}
                      </th>
                      <td className="py-1 text-right text-slate-600">{figuresText(nodeFigures(counters, id))}</td>
                    </tr>
                  ))}
                  {runTotals(counters).map((t) => (
                    <tr key={t.name} className="border-b border-slate-100 text-slate-500">
                      <th scope="row" className="py-1 pr-2 text-left font-normal">
                        {t.name}
                      </th>
                      <td className="py-1 text-right">{t.value.toLocaleString("en-US")}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </section>

          <section aria-label="Run events">
            <h3 className="mb-1 text-xs font-semibold tracking-wide text-slate-500 uppercase">
              Events {events.data?.length ? `(${events.data.length}${events.data.length >= EVENTS_KEPT ? "+" : ""})` : ""}
            </h3>
            {events.isLoading ? (
              <Spinner />
            ) : !events.data?.length ? (
              <p className="text-xs text-slate-500">No events yet.</p>
            ) : (
              <ul className="space-y-1.5" data-testid="run-events">
                {events.data.map((event) => {
                  const data = (event.data ?? {}) as Record<string, unknown>;
                  const snapshot = typeof data.snapshot_url === "string" ? data.snapshot_url : null;
                  return (
                    <li key={event.id} className="flex items-start gap-2 rounded-md border border-slate-100 p-1.5" data-testid="run-event">
                      {snapshot ? <Snapshot url={snapshot} alt={`${event.type} at ${clock(event.time)}`} /> : null}
                      <div className="min-w-0 flex-1 text-xs">
                        <div className="flex items-center justify-between gap-2">
                          <span className="font-medium text-slate-800">{event.type}</span>
                          <time className="shrink-0 text-slate-400" dateTime={event.time}>
                            {dateTime(event.time).slice(11)}
                          </time>
                        </div>
                        <div className="truncate text-slate-500">
                          {labels.get(event.node_id) ?? event.node_id}
                          {eventSummary(event) ? ` · ${eventSummary(event)}` : ""}
                          {event.severity !== "info" ? ` · ${event.severity}` : ""}
                        </div>
                      </div>
                    </li>
                  );
                })}
              </ul>
            )}
          </section>
        </>
      )}
      <Modal title="Live view" open={liveDevice !== null} onClose={() => setLiveDevice(null)} wide>
        {liveDevice && <LiveView deviceId={liveDevice} />}
      </Modal>
    </div>
  );
}
