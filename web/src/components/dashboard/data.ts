/**
 * The dashboard's figures, shaped for the cards and charts from what the API answers
 * (pure functions, unit-tested). `GET /system` and `GET /analytics/availability` are used
 * when the API has them; the older endpoints are the fallback.
 */
import type { AvailabilityHour, AvailabilityOut, DeviceAnalytics, PerformanceOut, SystemOut } from "../../api/types";

/** `GET /system`: the dashboard's key figures in one call (each field read when present). */
export type SystemInfo = Partial<SystemOut>;

export type { AvailabilityHour, AvailabilityOut };

export interface Kpis {
  /** Seconds the platform has been up, or null when the API does not say. */
  uptimeSeconds: number | null;
  /** When it started (ISO 8601), to keep the uptime ticking. */
  startedAt: string | null;
  /** 0–1: devices online or warning over all (fleet availability). */
  availability: number | null;
  total: number;
  online: number;
  warning: number;
  offline: number;
  activePipelines: number;
  activeRuns: number;
  alerts24h: number | null;
  /** Whether `alerts24h` is a lower bound (more than one page). */
  alerts24hMore: boolean;
  activeAlerts: number;
}

/** Cards' figures from `/system` when present, else from device analytics and performance. */
export function kpis(input: {
  system?: SystemInfo | null;
  devices?: DeviceAnalytics | null;
  performance?: PerformanceOut | null;
  alerts24h?: { count: number; more: boolean } | null;
}): Kpis {
  const { system, devices, performance, alerts24h } = input;
  const total = system?.devices_total ?? devices?.total ?? 0;
  const online = system?.devices_online ?? devices?.online ?? 0;
  const warning = system?.devices_warning ?? devices?.warning ?? 0;
  const offline = system?.devices_offline ?? devices?.offline ?? 0;
  const availability =
    devices?.availability_percent !== undefined
      ? devices.availability_percent / 100
      : total > 0
        ? (online + warning) / total
        : null;
  const activeRuns = system?.active_runs ?? performance?.active_runs ?? 0;
  return {
    uptimeSeconds: system?.uptime_seconds ?? null,
    startedAt: system?.started_at ?? null,
    availability: total > 0 ? availability : null,
    total,
    online,
    warning,
    offline,
    activePipelines: system?.active_pipelines ?? activePipelineCount(performance),
    activeRuns,
    alerts24h: system?.alerts_last_24h ?? alerts24h?.count ?? null,
    alerts24hMore: system?.alerts_last_24h === undefined && !!alerts24h?.more,
    activeAlerts: system?.active_alerts ?? devices?.active_alerts ?? 0,
  };
}

const ACTIVE = new Set(["starting", "running", "stopping"]);

/** Distinct pipelines with an active run among the runs listed. */
export function activePipelineCount(performance: PerformanceOut | null | undefined): number {
  if (!performance) return 0;
  return new Set(performance.runs.filter((r) => !r.stopped_at && ACTIVE.has(r.status)).map((r) => r.pipeline_id)).size;
}

/** Uptime now, from the start time when known (ticks between refreshes). */
export function uptimeNow(k: Pick<Kpis, "uptimeSeconds" | "startedAt">, now: number = Date.now()): number | null {
  if (k.startedAt) {
    const started = Date.parse(k.startedAt);
    if (!Number.isNaN(started)) return Math.max(0, (now - started) / 1000);
  }
  return k.uptimeSeconds;
}

const HOUR_MS = 3_600_000;

/** The starts of the UTC hours overlapping `[since, until)`, oldest first (ISO 8601). */
export function hourStarts(since: string | Date, until: string | Date): string[] {
  const start = Math.floor(new Date(since).getTime() / HOUR_MS) * HOUR_MS;
  const end = new Date(until).getTime();
  const out: string[] = [];
  for (let t = start; t < end && out.length < 24 * 31; t += HOUR_MS) out.push(new Date(t).toISOString());
  return out;
}

function hourKey(iso: string): number {
  return Math.floor(Date.parse(iso) / HOUR_MS);
}

export interface HourRow {
  hour: string;
  [series: string]: number | string;
}

/** The name of the series of events of the types not charted one by one. */
export const OTHER = "other";

/**
 * Stacked rows of events per hour: one series per type in `perType`, and {@link OTHER} for
 * the rest of `total` (the hour's count of all types); every hour of `hours` present.
 */
export function eventsByHour(
  hours: string[],
  total: { hour: string; count: number }[],
  perType: Record<string, { hour: string; count: number }[]>,
): { rows: HourRow[]; series: string[] } {
  const types = Object.keys(perType);
  const rows = new Map<number, HourRow>();
  for (const h of hours) {
    const row: HourRow = { hour: h };
    for (const t of types) row[t] = 0;
    row[OTHER] = 0;
    rows.set(hourKey(h), row);
  }
  for (const t of types) {
    for (const c of perType[t]) {
      const row = rows.get(hourKey(c.hour));
      if (row) row[t] = (row[t] as number) + c.count;
    }
  }
  for (const c of total) {
    const row = rows.get(hourKey(c.hour));
    if (!row) continue;
    const charted = types.reduce((n, t) => n + (row[t] as number), 0);
    row[OTHER] = Math.max(0, c.count - charted);
  }
  const list = [...rows.values()];
  const hasOther = list.some((r) => (r[OTHER] as number) > 0);
  if (!hasOther) for (const r of list) delete r[OTHER];
  return { rows: list, series: hasOther ? [...types, OTHER] : types };
}

/** The most frequent types (at most `n`), for the chart's series. */
export function topTypes(byType: Record<string, number>, n = 4): string[] {
  return Object.entries(byType)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, n)
    .map(([t]) => t);
}

export interface AvailabilityRow {
  time: string;
  /** Percent of device-time online. */
  online: number;
  /** Percent of device-time online or warning. */
  available: number;
}

/** Availability per hour from the API, in percent. */
export function availabilityRows(by: AvailabilityHour[]): AvailabilityRow[] {
  return by
    .filter((h) => h.devices > 0)
    .map((h) => ({
      time: h.hour,
      online: Math.round(h.online_ratio * 1000) / 10,
      available: Math.round(h.available_ratio * 1000) / 10,
    }));
}

/** A sample of the fleet now, for the availability chart when the API keeps no history. */
export function availabilitySample(devices: DeviceAnalytics, time: string): AvailabilityRow | null {
  if (devices.total <= 0) return null;
  return {
    time,
    online: Math.round((devices.online / devices.total) * 1000) / 10,
    available: Math.round(((devices.online + devices.warning) / devices.total) * 1000) / 10,
  };
}

/** Local midnight of `now`, as ISO 8601 (the start of "today"). */
export function startOfToday(now: Date = new Date()): string {
  const d = new Date(now);
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}
