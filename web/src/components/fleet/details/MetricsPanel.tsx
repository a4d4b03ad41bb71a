/**
 * Metrics of a device: one line chart per telemetry metric over 1 h / 24 h / 7 d, and its
 * health from heartbeats (the latest values, and their course while the page is open).
 */
import { useQueries } from "@tanstack/react-query";
import clsx from "clsx";
import { useMemo, useState } from "react";
import { CartesianGrid, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { api } from "../../../api/client";
import type { Page } from "../../../api/types";
import { dateTime } from "../../../lib/format";
import { Card, EmptyState, ErrorNote, Spinner } from "../../ui";
import { useNow } from "../../../hooks/useNow";
import { alignedSlices, groupSeries, healthNumbers, metricLabel, RANGES, rangeSeconds, type RangeKey, type Series, type SeriesPoint } from "../telemetry";
import type { Device, TelemetryPoint } from "../types";

const SLICES = 8;
const PER_SLICE = 250;
const TAIL_SECONDS = 30;

function combineTelemetry(results: { data?: TelemetryPoint[]; isPending: boolean; isError: boolean; error: Error | null }[]) {
  return {
    samples: results.flatMap((r) => r.data ?? []),
    loading: results.every((r) => r.data === undefined) && results.some((r) => r.isPending),
    error: results.find((r) => r.isError)?.error ?? null,
    complete: results.every((r) => r.data !== undefined || r.isError),
  };
}

function telemetryPage(deviceId: string, query: { since: string; until?: string; limit: number }, signal?: AbortSignal) {
  return api<Page<TelemetryPoint>>(`/devices/${encodeURIComponent(deviceId)}/telemetry`, { query, signal }).then((p) => p.items);
}

/**
 * The samples of a range: {@link SLICES} aligned windows of at most {@link PER_SLICE}
 * samples each (closed windows are fetched once; the newest one again on every refresh),
 * plus the last {@link TAIL_SECONDS} seconds so the latest values are the latest. Charts
 * draw as soon as the newest window arrives.
 */
function useTelemetry(deviceId: string, range: RangeKey) {
  const refresh = range === "1h" ? 30_000 : 300_000;
  const now = useNow(refresh);
  const slices = useMemo(() => alignedSlices(now.getTime(), rangeSeconds(range), SLICES), [now, range]);
  return useQueries({
    queries: [
      {
        queryKey: ["devices", "one", deviceId, "telemetry", "tail"],
        queryFn: ({ signal }: { signal: AbortSignal }) =>
          telemetryPage(deviceId, { since: new Date(Date.now() - TAIL_SECONDS * 1000).toISOString(), limit: 500 }, signal),
        refetchInterval: 15_000,
      },
      ...slices.map((slice) => ({
        queryKey: ["devices", "one", deviceId, "telemetry", slice.since, slice.until ?? "open", PER_SLICE],
        queryFn: ({ signal }: { signal: AbortSignal }) =>
          telemetryPage(deviceId, { since: slice.since, until: slice.until ?? undefined, limit: PER_SLICE }, signal),
        staleTime: slice.until ? Infinity : 10_000,
        refetchInterval: slice.until ? (false as const) : refresh,
      })),
    ],
    combine: combineTelemetry,
  });
}

function tickTime(range: RangeKey) {
  return (t: number) => {
    const d = new Date(t);
    const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
    if (range === "7d") return `${d.getMonth() + 1}/${d.getDate()} ${hm}`;
    if (range === "24h") return hm;
    // an hour or less (often minutes of data): seconds tell the ticks apart
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  };
}

function formatNumber(value: number): string {
  return Math.abs(value) >= 1000 || Number.isInteger(value) ? value.toLocaleString("en-US", { maximumFractionDigits: 1 }) : value.toFixed(2);
}

export function MetricChart({ series, range, colour = "#0284c7" }: { series: Series; range: RangeKey | "live"; colour?: string }) {
  const title = `${metricLabel(series.metric)}${series.unit ? ` (${series.unit})` : ""}`;
  return (
    <figure className="rounded-md border border-slate-200 p-3" data-testid="metric-chart" data-metric={series.metric} aria-label={title}>
      <figcaption className="mb-1 flex items-baseline justify-between text-sm">
        <span className="font-medium text-slate-700">{title}</span>
        {series.latest && (
          <span className="text-xs text-slate-500" title={dateTime(series.latest.t)}>
            latest <strong className="text-slate-800">{formatNumber(series.latest.value)}</strong>
          </span>
        )}
      </figcaption>
      <div style={{ height: 150 }}>
        <ResponsiveContainer width="100%" height="100%">
          <LineChart data={series.points} margin={{ top: 4, right: 8, bottom: 0, left: -12 }}>
            <CartesianGrid stroke="#e2e8f0" strokeDasharray="3 3" />
            <XAxis dataKey="t" type="number" scale="time" domain={["dataMin", "dataMax"]} tickFormatter={tickTime(range === "live" ? "1h" : range)} fontSize={11} minTickGap={40} />
            <YAxis fontSize={11} width={56} domain={["auto", "auto"]} tickFormatter={(v: number) => formatNumber(v)} />
            <Tooltip labelFormatter={(t) => dateTime(Number(t))} formatter={(v) => [formatNumber(Number(v)), metricLabel(series.metric)]} />
            <Line type="monotone" dataKey="value" stroke={colour} dot={series.points.length < 3} isAnimationActive={false} strokeWidth={1.5} />
          </LineChart>
        </ResponsiveContainer>
      </div>
    </figure>
  );
}

export interface HealthSample {
  t: number;
  values: Record<string, number>;
}

/** Health series from the heartbeats seen while the page is open. */
function healthSeries(history: HealthSample[]): Series[] {
  const byMetric = new Map<string, SeriesPoint[]>();
  for (const h of history) {
    for (const [metric, value] of Object.entries(h.values)) {
      const list = byMetric.get(metric) ?? [];
      list.push({ t: h.t, value });
      byMetric.set(metric, list);
    }
  }
  return Array.from(byMetric.entries())
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([metric, points]) => ({ metric, unit: null, points, latest: points[points.length - 1] ?? null }));
}

export function MetricsPanel({ device, healthHistory }: { device: Device; healthHistory: HealthSample[] }) {
  const [range, setRange] = useState<RangeKey>("1h");
  const telemetry = useTelemetry(device.id, range);
  const series = useMemo(() => groupSeries(telemetry.samples), [telemetry.samples]);
  const health = healthNumbers(device.health);
  // health values that moved while the page is open (a flat line tells nothing the tile does not)
  const moving = useMemo(
    () => healthSeries(healthHistory).filter((s) => s.points.length > 1 && s.points.some((p) => p.value !== s.points[0].value)),
    [healthHistory],
  );

  return (
    <div className="space-y-4">
      <Card
        title="Telemetry"
        actions={
          <div role="group" aria-label="Time range" className="inline-flex overflow-hidden rounded-md border border-slate-300">
            {RANGES.map((r) => (
              <button
                key={r.key}
                type="button"
                aria-pressed={range === r.key}
                className={clsx("px-2.5 py-1 text-xs font-medium", range === r.key ? "bg-sky-600 text-white" : "bg-white text-slate-600 hover:bg-slate-50")}
                onClick={() => setRange(r.key)}
              >
                {r.label}
              </button>
            ))}
          </div>
        }
      >
        {telemetry.error && <ErrorNote error={telemetry.error} />}
        {telemetry.loading && <Spinner label="Loading telemetry…" />}
        {telemetry.complete && series.length === 0 && <EmptyState>No telemetry in this range.</EmptyState>}
        {!telemetry.loading && !telemetry.complete && <p className="mb-2 text-xs text-slate-400">Loading older samples…</p>}
        <div className="grid gap-3 xl:grid-cols-2">
          {series.map((s) => (
            <MetricChart key={s.metric} series={s} range={range} />
          ))}
        </div>
      </Card>

      <Card title="Health (last heartbeat)">
        {Object.keys(health).length === 0 ? (
          <EmptyState>No heartbeat yet.</EmptyState>
        ) : (
          <dl className="grid grid-cols-2 gap-3 sm:grid-cols-3 lg:grid-cols-5" aria-label="Health">
            {Object.entries(health).map(([key, value]) => (
              <div key={key} className="rounded-md bg-slate-50 p-2" data-testid="health-metric" data-metric={key}>
                <dt className="text-xs text-slate-500">{metricLabel(key)}</dt>
                <dd className="text-lg font-semibold text-slate-800">{formatNumber(value)}</dd>
              </div>
            ))}
          </dl>
        )}
        {moving.length > 0 && (
          <>
            <h3 className="mb-2 mt-4 text-sm font-medium text-slate-600">Since this page opened</h3>
            <div className="grid gap-3 xl:grid-cols-2">
              {moving.map((s) => (
                <MetricChart key={s.metric} series={s} range="live" colour="#7c3aed" />
              ))}
            </div>
          </>
        )}
      </Card>
    </div>
  );
}
