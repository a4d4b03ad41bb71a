/**
 * A still image from the camera a zone or line is drawn on.
 *
 * - `aios/camera.device@1` (a fleet camera): `GET /devices/{device_id}/snapshot` (JPEG);
 * - `aios/camera.rtsp@1` and `aios/file.input@1`: `POST /cameras/snapshot {url}` (JPEG), the
 *   URL being the RTSP URL (built from host, port and path when no URL is given, with
 *   `username`/`password` beside it) or the video file's path (`asset:NAME` included);
 * - any other source (a local webcam): no snapshot, the drawing is on a blank 16:9 frame.
 */
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage } from "../../api/client";

export interface CameraRef {
  /** The camera node's type, e.g. `aios/camera.device@1`. */
  type: string;
  /** The camera node's config (e.g. `{device_id}` or `{url}`). */
  config: Record<string, unknown>;
}

export type SnapshotRequest =
  | { path: string; method: "GET" }
  | { path: string; method: "POST"; body: { url: string; username?: string; password?: string } };

export interface SnapshotState {
  status: "none" | "loading" | "ready" | "error";
  /** An object URL of the JPEG (revoked when replaced or unmounted). */
  url?: string;
  /** Why there is no image (shown over the blank frame). */
  message?: string;
  reload: () => void;
}

function str(v: unknown): string {
  return typeof v === "string" ? v.trim() : "";
}

/**
 * The RTSP URL of an RTSP camera config: its `url`, or `rtsp://host:port/path` built from
 * its parts (the credentials go separately, see {@link snapshotRequest}). Null without either.
 */
export function rtspUrlOf(config: Record<string, unknown>): string | null {
  const url = str(config.url);
  if (url) return url;
  const host = str(config.host);
  if (!host) return null;
  const port = typeof config.port === "number" ? config.port : 554;
  let path = str(config.path) || "/";
  if (!path.startsWith("/")) path = `/${path}`;
  const hostPart = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `rtsp://${hostPart}:${port}${path}`;
}

/** The API request that gives a snapshot of a camera node, or a reason there is none. */
export function snapshotRequest(camera: CameraRef | undefined): SnapshotRequest | { none: string } {
  if (!camera) return { none: "No camera in this pipeline yet: drawing on a blank frame." };
  if (camera.type === "aios/camera.device@1") {
    const id = str(camera.config.device_id);
    if (!id) return { none: "Choose the camera's device first: drawing on a blank frame." };
    return { method: "GET", path: `/devices/${encodeURIComponent(id)}/snapshot` };
  }
  if (camera.type === "aios/camera.rtsp@1") {
    const url = rtspUrlOf(camera.config);
    if (!url) return { none: "Set the camera's RTSP URL or host first: drawing on a blank frame." };
    const body: { url: string; username?: string; password?: string } = { url };
    if (!str(camera.config.url)) {
      // Host and parts: the plain-text credentials go as they are (the API encodes them).
      if (str(camera.config.username)) body.username = str(camera.config.username);
      if (typeof camera.config.password === "string" && camera.config.password) body.password = camera.config.password;
    }
    return { method: "POST", path: "/cameras/snapshot", body };
  }
  if (camera.type === "aios/file.input@1") {
    const path = str(camera.config.path);
    if (!path) return { none: "Set the video file first: drawing on a blank frame." };
    return { method: "POST", path: "/cameras/snapshot", body: { url: path } };
  }
  return { none: "This camera gives no snapshot here: drawing on a blank 16:9 frame." };
}

/** Fetch a snapshot of `camera` while `enabled`; the image is an object URL. */
export function useCameraSnapshot(camera: CameraRef | undefined, enabled: boolean): SnapshotState {
  const [attempt, setAttempt] = useState(0);
  const [state, setState] = useState<Omit<SnapshotState, "reload">>({ status: "none" });
  const request = snapshotRequest(camera);
  const key = JSON.stringify(request);

  useEffect(() => {
    if (!enabled) return;
    const req = JSON.parse(key) as SnapshotRequest | { none: string };
    if ("none" in req) {
      setState({ status: "none", message: req.none });
      return;
    }
    const controller = new AbortController();
    let objectUrl: string | undefined;
    setState({ status: "loading" });
    (async () => {
      try {
        const response = await api<Response>(req.path, {
          method: req.method,
          body: req.method === "POST" ? req.body : undefined,
          asResponse: true,
          signal: controller.signal,
        });
        const blob = await response.blob();
        if (controller.signal.aborted) return;
        objectUrl = URL.createObjectURL(blob);
        setState({ status: "ready", url: objectUrl });
      } catch (err) {
        if (controller.signal.aborted) return;
        setState({ status: "error", message: `No snapshot (${errorMessage(err)}): drawing on a blank frame.` });
      }
    })();
    return () => {
      controller.abort();
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    };
  }, [key, enabled, attempt]);

  const reload = useCallback(() => setAttempt((n) => n + 1), []);
  return { ...state, reload };
}
