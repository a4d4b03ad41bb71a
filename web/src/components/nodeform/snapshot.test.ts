import { describe, expect, it } from "vitest";
import { rtspUrlOf, snapshotRequest } from "./snapshot";

describe("camera snapshots", () => {
  it("asks the fleet camera's connector", () => {
    expect(snapshotRequest({ type: "aios/camera.device@1", config: { device_id: "cam 1" } })).toEqual({ method: "GET", path: "/devices/cam%201/snapshot" });
    expect(snapshotRequest({ type: "aios/camera.device@1", config: {} })).toHaveProperty("none");
  });

  it("sends an RTSP URL as given, or built from its parts with the credentials beside it", () => {
    expect(snapshotRequest({ type: "aios/camera.rtsp@1", config: { url: "rtsp://u:p%40@cam/s" } })).toEqual({
      method: "POST",
      path: "/cameras/snapshot",
      body: { url: "rtsp://u:p%40@cam/s" },
    });
    expect(snapshotRequest({ type: "aios/camera.rtsp@1", config: { host: "10.0.0.9", path: "Streaming/101", username: "admin", password: "p@ss:/" } })).toEqual({
      method: "POST",
      path: "/cameras/snapshot",
      body: { url: "rtsp://10.0.0.9:554/Streaming/101", username: "admin", password: "p@ss:/" },
    });
    expect(rtspUrlOf({ host: "fe80::1", port: 8554 })).toBe("rtsp://[fe80::1]:8554/");
    expect(rtspUrlOf({})).toBeNull();
  });

  it("reads a video file's first frame, and has no snapshot for a local webcam or no camera", () => {
    expect(snapshotRequest({ type: "aios/file.input@1", config: { path: "asset:vtest.avi" } })).toEqual({
      method: "POST",
      path: "/cameras/snapshot",
      body: { url: "asset:vtest.avi" },
    });
    expect(snapshotRequest({ type: "aios/camera.webcam@1", config: {} })).toHaveProperty("none");
    expect(snapshotRequest(undefined)).toHaveProperty("none");
  });
});
