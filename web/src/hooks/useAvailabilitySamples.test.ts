import { describe, expect, it } from "vitest";
import { MAX_SAMPLES, MIN_SPACING_MS, SAMPLES_KEY, addSample, loadSamples } from "./useAvailabilitySamples";

const at = (ms: number) => new Date(Date.UTC(2026, 10, 30) + ms).toISOString();

describe("availability samples", () => {
  it("adds samples, replacing one taken too soon after the last", () => {
    let s = addSample([], { time: at(0), online: 50, available: 100 });
    s = addSample(s, { time: at(MIN_SPACING_MS), online: 60, available: 100 });
    expect(s).toHaveLength(2);
    s = addSample(s, { time: at(MIN_SPACING_MS + 1000), online: 70, available: 90 });
    expect(s).toHaveLength(2);
    expect(s[1].online).toBe(70);
  });

  it("keeps at most MAX_SAMPLES, the newest", () => {
    let s: ReturnType<typeof addSample> = [];
    for (let i = 0; i < MAX_SAMPLES + 5; i++) s = addSample(s, { time: at(i * MIN_SPACING_MS), online: i, available: i });
    expect(s).toHaveLength(MAX_SAMPLES);
    expect(s[s.length - 1].online).toBe(MAX_SAMPLES + 4);
  });

  it("loads what the tab kept, ignoring garbage", () => {
    const store = new Map<string, string>();
    const storage = { getItem: (k: string) => store.get(k) ?? null };
    expect(loadSamples(storage)).toEqual([]);
    store.set(SAMPLES_KEY, "not json");
    expect(loadSamples(storage)).toEqual([]);
    store.set(SAMPLES_KEY, JSON.stringify([{ time: at(0), online: 1, available: 2 }, { nope: 1 }]));
    expect(loadSamples(storage)).toEqual([{ time: at(0), online: 1, available: 2 }]);
  });
});
