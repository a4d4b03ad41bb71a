/**
 * Telemetry for charts. `GET /devices/{id}/telemetry` pages samples oldest first; a PLC
 * polled every second gives some 18 000 samples an hour, too many to fetch for a week. So a
 * range is read as a few windows side by side ({@link alignedSlices}), each asked for a
 * bounded number of samples: sparse metrics come back whole, dense ones as evenly spread
 * stretches. The samples are then grouped by metric and averaged into at most `maxPoints`
 * buckets per metric.
 */
import type { TelemetryPoint } from "./types";

export type RangeKey = "1h" | "24h" | "7d";

export const RANGES: { key: RangeKey; label: string; seconds: number }[] = [
  { key: "1h", label: "1 h", seconds: 3600 },
  { key: "24h", label: "24 h", seconds: 86_400 },
  { key: "7d", label: "7 d", seconds: 7 * 86_400 },
];

export function rangeSeconds(key: RangeKey): number {
  return RANGES.find((r) => r.key === key)?.seconds ?? 3600;
}

export interface OpenSlice {
  since: string;
  /** null: up to now (the newest window, which grows). */
  until: string | null;
}

/**
 * Windows of `seconds / count` each, aligned to multiples of that width (so a window once
 * closed keeps its bounds, and its samples can be kept, as time goes on), covering
 * `[now - seconds, now]`, newest first. The newest is open-ended.
 */
export function alignedSlices(nowMs: number, seconds: number, count: number): OpenSlice[] {
  const step = (seconds * 1000) / count;
  const first = Math.floor((nowMs - seconds * 1000) / step) * step;
  const out: OpenSlice[] = [];
  for (let t = first; t < nowMs; t += step) {
    out.push({ since: new Date(t).toISOString(), until: t + step >= nowMs ? null : new Date(t + step).toISOString() });
  }
  return out.reverse();
}

export interface SeriesPoint {
  /** ms since the epoch */
  t: number;
  value: number;
}

export interface Series {
  metric: string;
  unit: string | null;
  points: SeriesPoint[];
  latest: SeriesPoint | null;
}

/** Average the points into at most `maxPoints` buckets of equal time width (order kept). */
export function downsample(points: SeriesPoint[], maxPoints: number): SeriesPoint[] {
  if (points.length <= maxPoints || points.length === 0) return points;
  const first = points[0].t;
  const last = points[points.length - 1].t;
  const width = Math.max(1, (last - first) / maxPoints);
  const out: SeriesPoint[] = [];
  let bucket = -1;
  let sumT = 0;
  let sumV = 0;
  let n = 0;
  const flush = () => {
    if (n > 0) out.push({ t: Math.round(sumT / n), value: sumV / n });
  };
  for (const p of points) {
    const b = Math.min(maxPoints - 1, Math.floor((p.t - first) / width));
    if (b !== bucket) {
      flush();
      bucket = b;
      sumT = 0;
      sumV = 0;
      n = 0;
    }
    sumT += p.t;
    sumV += p.value;
    n += 1;
  }
  flush();
  return out;
}

/** Samples grouped by metric (metrics sorted by name), each series by time, duplicates dropped. */
export function groupSeries(samples: TelemetryPoint[], maxPoints = 300): Series[] {
  const byMetric = new Map<string, { unit: string | null; points: SeriesPoint[] }>();
  for (const s of samples) {
    const t = Date.parse(s.time);
    if (!Number.isFinite(t) || !Number.isFinite(s.value)) continue;
    let entry = byMetric.get(s.metric);
    if (!entry) {
      entry = { unit: s.unit ?? null, points: [] };
      byMetric.set(s.metric, entry);
    }
    if (s.unit) entry.unit = s.unit;
    entry.points.push({ t, value: s.value });
  }
  return Array.from(byMetric.entries())
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([metric, { unit, points }]) => {
      points.sort((a, b) => a.t - b.t);
      const unique = points.filter((p, i) => i === 0 || p.t !== points[i - 1].t);
      return { metric, unit, points: downsample(unique, maxPoints), latest: unique[unique.length - 1] ?? null };
    });
}

/** Numeric health values of a heartbeat (`{cpu_percent: 9, …}`), without bookkeeping keys. */
export function healthNumbers(health: Record<string, unknown> | null | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(health ?? {})) {
    if (key === "heartbeat_time" || key === "config_version") continue;
    if (typeof value === "number" && Number.isFinite(value)) out[key] = value;
  }
  return out;
}

/** A metric name for people: `poll_success_rate` → "Poll success rate". */
export function metricLabel(metric: string): string {
  const words = metric.replace(/[_.]+/g, " ").trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}
