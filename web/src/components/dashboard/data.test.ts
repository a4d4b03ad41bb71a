import { describe, expect, it } from "vitest";
import type { DeviceAnalytics, PerformanceOut } from "../../api/types";
import {
  OTHER,
  activePipelineCount,
  availabilityRows,
  availabilitySample,
  eventsByHour,
  hourStarts,
  kpis,
  startOfToday,
  topTypes,
  uptimeNow,
} from "./data";
import { severityOf } from "./severity";

const devices: DeviceAnalytics = {
  total: 5,
  online: 3,
  warning: 1,
  offline: 1,
  pending: 0,
  by_kind: {},
  by_site: {},
  availability_percent: 80,
  online_percent: 60,
  active_alerts: 2,
};

const run = (over: Partial<PerformanceOut["runs"][number]>) =>
  ({
    run_id: "r",
    pipeline_id: "p1",
    revision: 1,
    status: "running",
    started_at: "2026-11-30T00:00:00Z",
    stopped_at: null,
    elapsed_seconds: 1,
    frames: 0,
    fps: null,
    dropped_frames: 0,
    events: 0,
    events_stored: 0,
    executions: {},
    latency_ms: null,
    ...over,
  }) as PerformanceOut["runs"][number];

const performance: PerformanceOut = {
  runs: [run({ run_id: "r1" }), run({ run_id: "r2" }), run({ run_id: "r3", pipeline_id: "p2", status: "stopped", stopped_at: "2026-11-30T01:00:00Z" })],
  active_runs: 2,
  frames: 0,
  events: 0,
  executions: {},
  fps: 0,
};

describe("dashboard figures", () => {
  it("prefers /system and falls back to the analytics", () => {
    const fallback = kpis({ devices, performance, alerts24h: { count: 7, more: true } });
    expect(fallback).toMatchObject({
      uptimeSeconds: null,
      availability: 0.8,
      total: 5,
      online: 3,
      warning: 1,
      offline: 1,
      activePipelines: 1,
      activeRuns: 2,
      alerts24h: 7,
      alerts24hMore: true,
      activeAlerts: 2,
    });
    const system = kpis({
      system: { uptime_seconds: 90, started_at: "2026-11-30T00:00:00Z", devices_total: 6, devices_online: 6, devices_warning: 0, devices_offline: 0, active_pipelines: 3, active_runs: 3, active_alerts: 0, alerts_last_24h: 4 },
      devices,
      performance,
      alerts24h: { count: 7, more: true },
    });
    expect(system).toMatchObject({ uptimeSeconds: 90, total: 6, online: 6, activePipelines: 3, alerts24h: 4, alerts24hMore: false });
    expect(kpis({})).toMatchObject({ total: 0, availability: null, alerts24h: null, activePipelines: 0 });
  });

  it("counts distinct pipelines with an active run", () => {
    expect(activePipelineCount(performance)).toBe(1);
    expect(activePipelineCount(null)).toBe(0);
  });

  it("ticks the uptime from the start time", () => {
    const now = Date.parse("2026-11-30T00:01:40Z");
    expect(uptimeNow({ startedAt: "2026-11-30T00:00:00Z", uptimeSeconds: 5 }, now)).toBe(100);
    expect(uptimeNow({ startedAt: null, uptimeSeconds: 5 }, now)).toBe(5);
    expect(uptimeNow({ startedAt: null, uptimeSeconds: null }, now)).toBeNull();
  });

  it("lists the UTC hours of a window", () => {
    const hours = hourStarts("2026-11-29T10:30:00Z", "2026-11-29T13:00:00Z");
    expect(hours).toEqual(["2026-11-29T10:00:00.000Z", "2026-11-29T11:00:00.000Z", "2026-11-29T12:00:00.000Z"]);
  });

  it("stacks events per hour by type, the rest as other, every hour present", () => {
    const hours = hourStarts("2026-11-29T10:00:00Z", "2026-11-29T13:00:00Z");
    const { rows, series } = eventsByHour(
      hours,
      [
        { hour: "2026-11-29T10:00:00Z", count: 5 },
        { hour: "2026-11-29T12:00:00Z", count: 2 },
      ],
      {
        "zone.enter": [{ hour: "2026-11-29T10:00:00Z", count: 3 }],
        loitering: [{ hour: "2026-11-29T12:00:00Z", count: 2 }],
      },
    );
    expect(series).toEqual(["zone.enter", "loitering", OTHER]);
    expect(rows.map((r) => [r["zone.enter"], r.loitering, r[OTHER]])).toEqual([
      [3, 0, 2],
      [0, 0, 0],
      [0, 2, 0],
    ]);
    const exact = eventsByHour(hours, [{ hour: "2026-11-29T10:00:00Z", count: 3 }], {
      "zone.enter": [{ hour: "2026-11-29T10:00:00Z", count: 3 }],
    });
    expect(exact.series).toEqual(["zone.enter"]);
    expect(OTHER in exact.rows[0]).toBe(false);
  });

  it("picks the most frequent types", () => {
    expect(topTypes({ a: 1, b: 5, c: 5, d: 2 }, 3)).toEqual(["b", "c", "d"]);
  });

  it("turns availability into percents, skipping hours without devices", () => {
    expect(
      availabilityRows([
        { hour: "h0", devices: 0, online_ratio: 0, available_ratio: 0 },
        { hour: "h1", devices: 4, online_ratio: 0.755, available_ratio: 1 },
      ]),
    ).toEqual([{ time: "h1", online: 75.5, available: 100 }]);
    expect(availabilitySample(devices, "t")).toEqual({ time: "t", online: 60, available: 80 });
    expect(availabilitySample({ ...devices, total: 0 }, "t")).toBeNull();
  });

  it("starts today at local midnight", () => {
    const start = new Date(startOfToday(new Date(2026, 10, 30, 15, 4)));
    expect([start.getFullYear(), start.getMonth(), start.getDate(), start.getHours(), start.getMinutes()]).toEqual([2026, 10, 30, 0, 0]);
  });

  it("reads severities", () => {
    expect(severityOf("critical")).toBe("critical");
    expect(severityOf("WARN")).toBe("warning");
    expect(severityOf(undefined)).toBe("info");
  });
});
