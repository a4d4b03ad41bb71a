import { describe, expect, it } from "vitest";
import { ApiError } from "../../api/client";
import { formFieldErrors } from "./formErrors";
import { applyDeviceMessage, applyToPage, messageDeviceId } from "./live";
import type { Device } from "./types";

const record = { desired_version: 0, reported_version: 0, pending: false, version: 1 };
const plc: Device = { ...record, id: "sim-plc", name: "Simulated PLC", kind: "plc", status: "online", status_reasons: [], last_seen: "2026-11-30T12:00:00Z", health: {} };
const cam: Device = { ...record, id: "courtyard", name: "Courtyard", kind: "camera", status: "online" };

describe("live device updates", () => {
  it("applies a status change to the device it names only", () => {
    const msg = { channel: "devices", type: "device.status", device_id: "sim-plc", status: "offline", reasons: ["no heartbeat for 95 s"], time: "2026-11-30T12:05:00Z" };
    const next = applyDeviceMessage(plc, msg);
    expect(next).toMatchObject({ status: "offline", status_reasons: ["no heartbeat for 95 s"], status_since: "2026-11-30T12:05:00Z" });
    expect(applyDeviceMessage(cam, msg)).toBe(cam);
  });

  it("moves last seen and health on a heartbeat", () => {
    const next = applyDeviceMessage(plc, { channel: "devices", type: "device.heartbeat", device_id: "sim-plc", time: "2026-11-30T12:00:10Z", health: { polls: 9 } });
    expect(next.last_seen).toBe("2026-11-30T12:00:10Z");
    expect(next.health).toEqual({ polls: 9 });
    expect(next.status).toBe("online");
  });

  it("keeps a page as it is when no row changes", () => {
    const page = { items: [plc, cam], next_cursor: null };
    expect(applyToPage(page, { channel: "devices", type: "device.event", event: { device_id: "x" } })).toBe(page);
    const changed = applyToPage(page, { channel: "devices", type: "device.status", device_id: "courtyard", status: "warning", reasons: [] });
    expect(changed).not.toBe(page);
    expect(changed?.items[1].status).toBe("warning");
    expect(changed?.items[0]).toBe(plc);
  });

  it("finds the device of event and command messages", () => {
    expect(messageDeviceId({ channel: "devices", type: "device.event", event: { device_id: "a" } })).toBe("a");
    expect(messageDeviceId({ channel: "devices", type: "device.command", command: { device_id: "b" } })).toBe("b");
    expect(messageDeviceId({ channel: "devices", type: "other" })).toBeNull();
  });
});

describe("API field errors on form fields", () => {
  it("maps body paths to field names", () => {
    const err = new ApiError(422, {
      code: "validation_error",
      message: "invalid",
      details: [
        { field: "body.id", message: "String should match pattern" },
        { field: "body.location.lat", message: "Input should be less than or equal to 90" },
        { field: "body.tags.3", message: "too long" },
      ],
    });
    expect(formFieldErrors(err, { "location.lat": "lat", "location.lon": "lon" })).toEqual({
      id: "String should match pattern",
      lat: "Input should be less than or equal to 90",
      tags: "too long",
    });
    expect(formFieldErrors(new Error("network"))).toEqual({});
  });
});
