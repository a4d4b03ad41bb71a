import { describe, expect, it } from "vitest";
import { countedNodes, figuresText, isActive, nodeFigures, runTotals } from "./runs";

const counters = {
  frames: { camera: 412 },
  fps: { camera: 9.81 },
  dropped_frames: { camera: 0 },
  events: { restricted: 7, door: 2 },
  executions: { succeeded: 9, failed: 1, dropped: 0, abandoned: 0 },
  actions: { siren: { throttled: 2, sent: 1 } },
  events_stored: 9,
  elapsed_seconds: 41.2,
};

describe("run counters", () => {
  it("gives each node its figures", () => {
    expect(nodeFigures(counters, "camera")).toEqual([
      { name: "frames", value: 412 },
      { name: "fps", value: 9.81 },
    ]);
    expect(nodeFigures(counters, "restricted")).toEqual([{ name: "events", value: 7 }]);
    expect(nodeFigures(counters, "siren")).toEqual([
      { name: "sent", value: 1 },
      { name: "throttled", value: 2 },
    ]);
    expect(nodeFigures(counters, "nobody")).toEqual([]);
    expect(nodeFigures(null, "camera")).toEqual([]);
    expect(nodeFigures({ frames: { camera: 3 }, dropped_frames: { camera: 4 } }, "camera")).toEqual([
      { name: "frames", value: 3 },
      { name: "dropped", value: 4 },
    ]);
  });

  it("ignores malformed groups", () => {
    expect(nodeFigures({ frames: 3, events: { a: "x" }, actions: { a: 1 } }, "a")).toEqual([]);
  });

  it("writes figures and totals", () => {
    expect(figuresText(nodeFigures(counters, "camera"))).toBe("412 frames · 9.8 fps");
    expect(runTotals(counters)).toContainEqual({ name: "executions failed", value: 1 });
    expect(runTotals(counters)).toContainEqual({ name: "events stored", value: 9 });
    expect(countedNodes(counters)).toEqual(["camera", "door", "restricted", "siren"]);
  });

  it("knows active statuses", () => {
    expect(["starting", "running", "stopping"].every(isActive)).toBe(true);
    expect(["stopped", "succeeded", "failed", null, undefined].some(isActive)).toBe(false);
  });
});
