import { describe, expect, it } from "vitest";
import { clientToNormalized, inArrow, initShape, pointsOf, roundCoord, shapeReducer, toNormalized, toPixels, type Point } from "./geometry";

describe("coordinates", () => {
  const frame = { width: 1920, height: 1080 };

  it("converts normalized points to pixels and back", () => {
    expect(toPixels([0.5, 0.25], frame)).toEqual([960, 270]);
    expect(toNormalized([960, 270], frame)).toEqual([0.5, 0.25]);
    expect(toNormalized([0, 0], frame)).toEqual([0, 0]);
    expect(toNormalized([1920, 1080], frame)).toEqual([1, 1]);
    for (const p of [[0.1234, 0.9876], [0.3333, 0.6667], [1, 0]] as Point[]) {
      expect(toNormalized(toPixels(p, frame), frame)).toEqual(p);
    }
  });

  it("clamps points outside the frame and rounds to 4 decimals", () => {
    expect(toNormalized([-10, 2000], frame)).toEqual([0, 1]);
    expect(toNormalized([1, 1], { width: 3, height: 7 })).toEqual([0.3333, 0.1429]);
    expect(roundCoord(-0.00001)).toBe(0);
    expect(Object.is(roundCoord(-0.00001), -0)).toBe(false);
  });

  it("rejects an empty frame", () => {
    expect(() => toNormalized([1, 1], { width: 0, height: 10 })).toThrow(RangeError);
  });

  it("converts a pointer position over a box", () => {
    const box = { left: 100, top: 50, width: 800, height: 450 };
    expect(clientToNormalized(500, 275, box)).toEqual([0.5, 0.5]);
    expect(clientToNormalized(100, 50, box)).toEqual([0, 0]);
    expect(clientToNormalized(1000, 10, box)).toEqual([1, 0]);
  });

  it("reads points from a config value, dropping anything else", () => {
    expect(pointsOf([[0.1, 0.2], "x", [1], [0.3, 0.4]])).toEqual([[0.1, 0.2], [0.3, 0.4]]);
    expect(pointsOf(undefined)).toEqual([]);
  });

  it("points the 'in' arrow to the right-hand side of start → end (y down)", () => {
    // Drawn left to right: 'in' is downwards on screen.
    const a = inArrow([0, 50], [100, 50], 10);
    expect(a?.from).toEqual([50, 50]);
    expect(a?.to[0]).toBeCloseTo(50);
    expect(a?.to[1]).toBeCloseTo(60);
    // Drawn top to bottom: 'in' is towards the left.
    const b = inArrow([50, 0], [50, 100], 10);
    expect(b?.to[0]).toBeCloseTo(40);
    expect(inArrow([1, 1], [1, 1], 10)).toBeNull();
  });
});

describe("polygon editing", () => {
  const polygon = shapeReducer({ maxPoints: 5, minPoints: 3 });
  const start = initShape([], { maxPoints: 5, minPoints: 3 });

  it("adds points, refuses to close before three, then closes", () => {
    let s = polygon(start, { type: "add", point: [0.1, 0.1] });
    s = polygon(s, { type: "add", point: [0.9, 0.1] });
    expect(polygon(s, { type: "close" })).toBe(s);
    s = polygon(s, { type: "add", point: [0.5, 0.9] });
    s = polygon(s, { type: "close" });
    expect(s.closed).toBe(true);
    expect(s.points).toEqual([[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]);
    // Closed: clicks add nothing.
    expect(polygon(s, { type: "add", point: [0.2, 0.2] }).points).toHaveLength(3);
  });

  it("clamps and rounds added and moved points", () => {
    let s = polygon(start, { type: "add", point: [1.5, -0.2] });
    expect(s.points).toEqual([[1, 0]]);
    s = polygon(s, { type: "move", index: 0, point: [0.123456, 0.5] });
    expect(s.points).toEqual([[0.1235, 0.5]]);
    expect(polygon(s, { type: "move", index: 3, point: [0, 0] })).toBe(s);
  });

  it("stops at the most points allowed", () => {
    let s = start;
    for (let i = 0; i < 7; i++) s = polygon(s, { type: "add", point: [i / 10, 0.5] });
    expect(s.points).toHaveLength(5);
  });

  it("deletes a point and reopens a polygon left with too few", () => {
    let s = initShape([[0, 0], [1, 0], [1, 1]], { maxPoints: 5, minPoints: 3 });
    expect(s.closed).toBe(true);
    s = polygon(s, { type: "delete", index: 1 });
    expect(s.points).toEqual([[0, 0], [1, 1]]);
    expect(s.closed).toBe(false);
  });

  it("undoes each step, a drag as one step", () => {
    let s = polygon(start, { type: "add", point: [0.1, 0.1] });
    s = polygon(s, { type: "add", point: [0.2, 0.2] });
    s = polygon(s, { type: "checkpoint" });
    for (const x of [0.3, 0.4, 0.5]) s = polygon(s, { type: "move", index: 1, point: [x, x], record: false });
    expect(s.points[1]).toEqual([0.5, 0.5]);
    s = polygon(s, { type: "undo" });
    expect(s.points).toEqual([[0.1, 0.1], [0.2, 0.2]]);
    s = polygon(s, { type: "undo" });
    expect(s.points).toEqual([[0.1, 0.1]]);
    s = polygon(s, { type: "clear" });
    expect(s.points).toEqual([]);
    s = polygon(s, { type: "undo" });
    expect(s.points).toEqual([[0.1, 0.1]]);
  });

  it("replaces the points from outside without an undo step", () => {
    const s = polygon(start, { type: "set", points: [[0, 0], [1, 0], [0, 1]] });
    expect(s.closed).toBe(true);
    expect(s.past).toHaveLength(0);
  });
});

describe("line editing", () => {
  const rules = { maxPoints: 2, minPoints: 2 };
  const line = shapeReducer(rules);

  it("closes by itself at the second point and reverses", () => {
    let s = line(initShape([], rules), { type: "add", point: [0.2, 0.5] });
    expect(s.closed).toBe(false);
    s = line(s, { type: "add", point: [0.8, 0.5] });
    expect(s.closed).toBe(true);
    expect(line(s, { type: "add", point: [0.1, 0.1] }).points).toHaveLength(2);
    s = line(s, { type: "reverse" });
    expect(s.points).toEqual([[0.8, 0.5], [0.2, 0.5]]);
  });
});
