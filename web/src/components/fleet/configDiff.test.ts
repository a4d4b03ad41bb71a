import { describe, expect, it } from "vitest";
import { configPending, diffConfig, flatten, jsonEqual, showValue } from "./configDiff";

describe("configuration diff", () => {
  it("flattens nested objects and arrays to dotted paths", () => {
    expect(flatten({ a: { b: 1 }, c: [2, { d: "x" }], e: {}, f: null })).toEqual({ "a.b": 1, "c.0": 2, "c.1.d": "x", e: {}, f: null });
  });

  it("compares JSON values regardless of key order", () => {
    expect(jsonEqual({ a: 1, b: [1, 2] }, { b: [1, 2], a: 1 })).toBe(true);
    expect(jsonEqual({ a: 1 }, { a: 1, b: undefined })).toBe(false);
    expect(jsonEqual([1, 2], [2, 1])).toBe(false);
    expect(jsonEqual(1, "1")).toBe(false);
  });

  it("marks each path same, changed, desired only or reported only", () => {
    const rows = diffConfig({ fps: 10, zone: { x: 1 }, new: true }, { fps: 10, zone: { x: 2 }, old: "y" });
    expect(rows.map((r) => [r.path, r.state])).toEqual([
      ["fps", "same"],
      ["new", "desired"],
      ["old", "reported"],
      ["zone.x", "changed"],
    ]);
    expect(rows.find((r) => r.path === "zone.x")).toMatchObject({ desired: 1, reported: 2 });
  });

  it("is pending while the device has not caught up", () => {
    const same = diffConfig({ a: 1 }, { a: 1 });
    expect(configPending(2, 2, same)).toBe(false);
    expect(configPending(3, 2, same)).toBe(true);
    expect(configPending(2, 2, diffConfig({ a: 1 }, { a: 2 }))).toBe(true);
    expect(configPending(0, 0, diffConfig({}, { b: 1 }))).toBe(false); // only reported extras
    expect(diffConfig(null, undefined)).toEqual([]);
  });

  it("shows values as text", () => {
    expect(showValue(undefined)).toBe("—");
    expect(showValue("on")).toBe("on");
    expect(showValue(1.5)).toBe("1.5");
    expect(showValue({ a: 1 })).toBe('{"a":1}');
  });
});
