import { describe, expect, it } from "vitest";
import { STATUS_COLOURS } from "../ui";
import { fitTarget, locatedDevices, markerColour, placementKey, statusCounts, type MapDevice } from "./geometry";

const devices: MapDevice[] = [
  { id: "cam", name: "Camera", status: "online", location: { lat: 38.7, lon: -9.1 } },
  { id: "plc", name: "PLC", status: "warning", location: { lat: 41.1, lon: -8.6 } },
  { id: "gw", name: "Gateway", status: "offline", location: null },
  { id: "bad", name: "Bad", status: "online", location: { lat: 200, lon: 0 } },
];

describe("device map geometry", () => {
  it("keeps only devices with a valid position", () => {
    expect(locatedDevices(devices).map((d) => d.id)).toEqual(["cam", "plc"]);
  });

  it("colours markers by status, unknown ones as offline", () => {
    expect(markerColour("online")).toBe(STATUS_COLOURS.online);
    expect(markerColour("warning")).toBe(STATUS_COLOURS.warning);
    expect(markerColour("pending")).toBe(STATUS_COLOURS.offline);
  });

  it("fits the world, one point, or the box around the markers", () => {
    expect(fitTarget([])).toEqual({ kind: "world" });
    expect(fitTarget([devices[2]])).toEqual({ kind: "world" });
    expect(fitTarget([devices[0]])).toEqual({ kind: "point", center: [38.7, -9.1] });
    expect(fitTarget(devices)).toEqual({ kind: "bounds", bounds: [[38.7, -9.1], [41.1, -8.6]] });
  });

  it("changes the placement key only when markers move or come and go", () => {
    const restatused = devices.map((d) => ({ ...d, status: "offline" }));
    expect(placementKey(restatused)).toBe(placementKey(devices));
    expect(placementKey([...devices].reverse())).toBe(placementKey(devices));
    expect(placementKey(devices.slice(1))).not.toBe(placementKey(devices));
  });

  it("counts devices per status", () => {
    expect(statusCounts(devices)).toEqual({ online: 2, warning: 1, offline: 1 });
  });
});
