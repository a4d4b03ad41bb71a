/**
 * A camera's live video, detection boxes drawn by its connector, over WebRTC.
 *
 * Usage: `<LiveView deviceId="courtyard" />` (device details, pipeline monitor).
 *
 * Props:
 * - `deviceId` (required): the camera's device id. The video comes from the connector the
 *   camera is configured on: `POST /api/v1/devices/{deviceId}/live` forwards this browser's
 *   offer to it and returns its answer; the video then flows from the connector directly.
 * - `autoStart` (default false): start as soon as the component mounts.
 * - `className`: classes of the outer element.
 *
 * Start makes a receive-only peer connection, waits until ICE gathering is complete (the
 * offer carries every candidate: no trickle), posts the offer and applies the answer. The
 * state line says "Connecting…", "Live" (with the picture size) or why it failed. Stop (and
 * leaving the page) closes the peer connection and ends the session on the connector
 * (`DELETE …/live/{session_id}`). Viewers may watch: no edit right is needed.
 */
import { useCallback, useEffect, useRef, useState } from "react";
import { Play, Square } from "lucide-react";
import { api, errorMessage } from "../../api/client";
import { Button } from "../ui";

/** What `POST /devices/{id}/live` answers. */
export interface LiveAnswer {
  type: "answer";
  sdp: string;
  session_id: string;
  device_id: string;
  connector_id: string;
  max_fps?: number | null;
}

export type LiveState =
  | { kind: "idle" }
  | { kind: "connecting"; step: string }
  | { kind: "live"; width: number; height: number }
  | { kind: "failed"; message: string };

export interface LiveViewProps {
  deviceId: string;
  autoStart?: boolean;
  className?: string;
}

/** Longest wait for this browser's ICE candidates before the offer is sent anyway. */
export const GATHER_TIMEOUT_MS = 5000;
/** Longest wait, after the answer, for the connection and a first picture. */
export const CONNECT_TIMEOUT_MS = 20000;

/** Resolve once `pc` has gathered its ICE candidates (or after `timeoutMs`). */
export function iceGatheringComplete(pc: RTCPeerConnection, timeoutMs = GATHER_TIMEOUT_MS): Promise<void> {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

export function stateText(state: LiveState): string {
  switch (state.kind) {
    case "idle":
      return "Not started";
    case "connecting":
      return `Connecting… (${state.step})`;
    case "live":
      return state.width > 0 ? `Live · ${state.width}×${state.height}` : "Live";
    case "failed":
      return `Failed: ${state.message}`;
  }
}

export function LiveView({ deviceId, autoStart = false, className }: LiveViewProps) {
  const videoRef = useRef<HTMLVideoElement | null>(null);
  const pcRef = useRef<RTCPeerConnection | null>(null);
  const sessionRef = useRef<string | null>(null);
  const attemptRef = useRef(0);
  const timerRef = useRef<ReturnType<typeof setTimeout> | null>(null);
  const [state, setState] = useState<LiveState>({ kind: "idle" });

  /** Close the peer connection and end the session on the connector (best effort). */
  const teardown = useCallback(
    (endSession: boolean) => {
      attemptRef.current += 1; // results of a start still running are ignored from now on
      if (timerRef.current !== null) clearTimeout(timerRef.current);
      timerRef.current = null;
      const pc = pcRef.current;
      pcRef.current = null;
      if (pc) {
        pc.ontrack = null;
        pc.onconnectionstatechange = null;
        pc.close();
      }
      const video = videoRef.current;
      if (video) video.srcObject = null;
      const session = sessionRef.current;
      sessionRef.current = null;
      if (endSession && session) {
        void api(`/devices/${encodeURIComponent(deviceId)}/live/${session}`, { method: "DELETE" }).catch(() => {
          // the connector also ends the session when the connection closes
        });
      }
    },
    [deviceId],
  );

  const fail = useCallback(
    (message: string) => {
      teardown(true);
      setState({ kind: "failed", message });
    },
    [teardown],
  );

  const start = useCallback(async () => {
    teardown(true);
    const attempt = attemptRef.current;
    const current = () => attempt === attemptRef.current;
    if (typeof RTCPeerConnection === "undefined") {
      setState({ kind: "failed", message: "this browser does not support WebRTC" });
      return;
    }
    setState({ kind: "connecting", step: "preparing the offer" });
    const pc = new RTCPeerConnection({ iceServers: [] });
    pcRef.current = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.ontrack = (event) => {
      const video = videoRef.current;
      if (!video) return;
      video.srcObject = event.streams[0] ?? new MediaStream([event.track]);
      void video.play().catch(() => {
        // autoplay of a muted video is allowed; a refusal leaves the controls to the user
      });
    };
    pc.onconnectionstatechange = () => {
      if (!current()) return;
      if (pc.connectionState === "failed") {
        fail("the connection to the connector failed (no network path from this browser to it)");
      } else if (pc.connectionState === "disconnected") {
        setState({ kind: "connecting", step: "connection lost, waiting for it to come back" });
      } else if (pc.connectionState === "connected") {
        setState((s) => (s.kind === "live" ? s : { kind: "connecting", step: "waiting for the first picture" }));
      }
    };
    try {
      await pc.setLocalDescription(await pc.createOffer());
      setState({ kind: "connecting", step: "gathering network candidates" });
      await iceGatheringComplete(pc);
      if (!current()) return;
      const offer = pc.localDescription;
      if (!offer) throw new Error("the browser made no offer");
      setState({ kind: "connecting", step: "asking the connector" });
      const answer = await api<LiveAnswer>(`/devices/${encodeURIComponent(deviceId)}/live`, {
        method: "POST",
        body: { type: "offer", sdp: offer.sdp },
      });
      if (!current()) {
        // stopped meanwhile: end the session the connector just opened
        void api(`/devices/${encodeURIComponent(deviceId)}/live/${answer.session_id}`, { method: "DELETE" }).catch(() => {});
        return;
      }
      sessionRef.current = answer.session_id;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      if (!current()) return;
      setState({ kind: "connecting", step: "connecting to the connector" });
      timerRef.current = setTimeout(() => {
        if (current()) fail("no picture arrived in time; the connector may be unreachable from this browser");
      }, CONNECT_TIMEOUT_MS);
    } catch (error) {
      if (current()) fail(errorMessage(error));
    }
  }, [deviceId, fail, teardown]);

  const stop = useCallback(() => {
    teardown(true);
    setState({ kind: "idle" });
  }, [teardown]);

  // the first picture (and every size change) makes it live
  const onPicture = useCallback(() => {
    const video = videoRef.current;
    if (!video || !pcRef.current || video.videoWidth === 0) return;
    if (timerRef.current !== null) clearTimeout(timerRef.current);
    timerRef.current = null;
    setState({ kind: "live", width: video.videoWidth, height: video.videoHeight });
  }, []);

  useEffect(() => {
    if (autoStart) void start();
    return () => teardown(true);
    // started once per camera: start and teardown change with it
  }, [deviceId]);

  const running = state.kind === "connecting" || state.kind === "live";
  return (
    <div className={className} data-testid="live-view">
      <div className="mb-2 flex flex-wrap items-center gap-3">
        {running ? (
          <Button variant="secondary" onClick={stop} aria-label="Stop live view">
            <Square className="h-4 w-4" aria-hidden /> Stop
          </Button>
        ) : (
          <Button onClick={() => void start()} aria-label="Start live view">
            <Play className="h-4 w-4" aria-hidden /> {state.kind === "failed" ? "Retry" : "Start"}
          </Button>
        )}
        <span
          role="status"
          data-testid="live-state"
          data-state={state.kind}
          className={
            state.kind === "failed" ? "text-sm text-red-700" : state.kind === "live" ? "text-sm text-green-700" : "text-sm text-slate-600"
          }
        >
          {stateText(state)}
        </span>
      </div>
      <div className="relative aspect-video w-full overflow-hidden rounded-md bg-slate-900">
        <video
          ref={videoRef}
          data-testid="live-video"
          aria-label={`Live video of ${deviceId}`}
          className="h-full w-full object-contain"
          muted
          autoPlay
          playsInline
          onLoadedData={onPicture}
          onResize={onPicture}
          onPlaying={onPicture}
        />
        {!running && (
          <div className="absolute inset-0 flex items-center justify-center text-sm text-slate-400">
            {state.kind === "failed" ? "No live video" : "Press Start to watch the camera live"}
          </div>
        )}
      </div>
    </div>
  );
}

export default LiveView;
