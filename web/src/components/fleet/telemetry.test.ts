import { describe, expect, it } from "vitest";
import { alignedSlices, downsample, groupSeries, healthNumbers, metricLabel, rangeSeconds } from "./telemetry";

describe("telemetry for charts", () => {
  it("aligns windows to their width, newest first and open-ended", () => {
    const now = Date.parse("2026-11-30T12:07:00Z");
    expect(alignedSlices(now, 3600, 4)).toEqual([
      { since: "2026-11-30T12:00:00.000Z", until: null },
      { since: "2026-11-30T11:45:00.000Z", until: "2026-11-30T12:00:00.000Z" },
      { since: "2026-11-30T11:30:00.000Z", until: "2026-11-30T11:45:00.000Z" },
      { since: "2026-11-30T11:15:00.000Z", until: "2026-11-30T11:30:00.000Z" },
      { since: "2026-11-30T11:00:00.000Z", until: "2026-11-30T11:15:00.000Z" },
    ]);
    // a minute later the closed windows are the same ones (their samples can be kept)
    const later = alignedSlices(now + 60_000, 3600, 4);
    expect(later.slice(1)).toEqual(alignedSlices(now, 3600, 4).slice(1));
    expect(rangeSeconds("7d")).toBe(604_800);
  });

  it("averages points into at most the given number of buckets", () => {
    const points = Array.from({ length: 100 }, (_, i) => ({ t: i * 1000, value: i }));
    const out = downsample(points, 10);
    expect(out.length).toBeLessThanOrEqual(10);
    expect(out.length).toBeGreaterThanOrEqual(9);
    expect(out[0].value).toBeCloseTo(4.5, 5); // mean of 0..9 (first bucket holds 0..9.9 s)
    const mean = (arr: { value: number }[]) => arr.reduce((s, p) => s + p.value, 0) / arr.length;
    expect(mean(out)).toBeCloseTo(mean(points), 0);
    expect(downsample(points.slice(0, 5), 10)).toHaveLength(5);
  });

  it("groups samples by metric, ordered by time, keeping the unit and the latest value", () => {
    const series = groupSeries([
      { device_id: "p", metric: "temperature", time: "2026-11-30T12:00:02Z", value: 21.5, unit: "degC" },
      { device_id: "p", metric: "siren", time: "2026-11-30T12:00:01Z", value: 1, unit: null },
      { device_id: "p", metric: "temperature", time: "2026-11-30T12:00:01Z", value: 21, unit: "degC" },
      { device_id: "p", metric: "temperature", time: "2026-11-30T12:00:01Z", value: 21, unit: "degC" },
    ]);
    expect(series.map((s) => s.metric)).toEqual(["siren", "temperature"]);
    const temp = series[1];
    expect(temp.unit).toBe("degC");
    expect(temp.points.map((p) => p.value)).toEqual([21, 21.5]);
    expect(temp.latest?.value).toBe(21.5);
  });

  it("keeps the numeric health values of a heartbeat", () => {
    expect(healthNumbers({ cpu_percent: 9, fps: 10, heartbeat_time: "x", config_version: 3, note: "ok" })).toEqual({ cpu_percent: 9, fps: 10 });
    expect(metricLabel("poll_success_rate")).toBe("Poll success rate");
  });
});
