import { describe, expect, it } from "vitest";
import { describeRule } from "./details/AlertRulesPanel";
import { registerBody } from "./RegisterDeviceModal";

describe("register device form", () => {
  it("sends only what was filled in, tags split on commas", () => {
    expect(registerBody({ id: " cam-2 ", name: "Gate", kind: "camera", site: "", tags: "", parent_id: "", lat: "", lon: "" })).toEqual({
      id: "cam-2",
      name: "Gate",
      kind: "camera",
    });
    expect(
      registerBody({ id: "plc-1", name: "Line PLC", kind: "plc", site: "North", tags: "line 1, , modbus ", parent_id: "gw-1", lat: "38.7", lon: "-9.13" }),
    ).toEqual({ id: "plc-1", name: "Line PLC", kind: "plc", site: "North", tags: ["line 1", "modbus"], parent_id: "gw-1", location: { lat: 38.7, lon: -9.13 } });
  });

  it("never makes up half of a location", () => {
    expect(registerBody({ id: "s", name: "S", kind: "sensor", site: "", tags: "", parent_id: "", lat: "10", lon: "" }).location).toBeUndefined();
  });
});

describe("alert rules in words", () => {
  it("describes offline and metric rules", () => {
    expect(describeRule({ kind: "offline", for_minutes: 5 })).toBe("offline for 5 min");
    expect(describeRule({ kind: "metric_above", metric: "cpu_percent", threshold: 90, for_minutes: 0 })).toBe("cpu_percent above 90");
    expect(describeRule({ kind: "metric_below", metric: "fps", threshold: 5, for_minutes: 2 })).toBe("fps below 5 for 2 min");
  });
});
