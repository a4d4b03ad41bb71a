import { act, fireEvent, render, screen, waitFor } from "@testing-library/react";
import { LiveView, iceGatheringComplete, stateText } from "./LiveView";

/** A stand-in for the browser's RTCPeerConnection: records what the component does. */
class FakePeer extends EventTarget {
  static last: FakePeer | null = null;
  iceGatheringState: RTCIceGatheringState = "new";
  connectionState: RTCPeerConnectionState = "new";
  localDescription: { type: string; sdp: string } | null = null;
  remote: { type: string; sdp: string } | null = null;
  transceivers: Array<[string, unknown]> = [];
  closed = false;
  ontrack: ((event: unknown) => void) | null = null;
  onconnectionstatechange: (() => void) | null = null;
  constructor(public config: unknown) {
    super();
    FakePeer.last = this;
  }
  addTransceiver(kind: string, init: unknown) {
    this.transceivers.push([kind, init]);
  }
  async createOffer() {
    return { type: "offer", sdp: "v=0 offer" };
  }
  async setLocalDescription(description: { type: string; sdp: string }) {
    this.localDescription = { ...description, sdp: description.sdp + "\r\na=candidate:1 1 udp 1 host.local 9 typ host" };
    setTimeout(() => {
      this.iceGatheringState = "complete";
      this.dispatchEvent(new Event("icegatheringstatechange"));
    }, 5);
  }
  async setRemoteDescription(description: { type: string; sdp: string }) {
    this.remote = description;
  }
  close() {
    this.closed = true;
  }
}

const ANSWER = { type: "answer", sdp: "v=0 answer", session_id: "abc123def456", device_id: "courtyard", connector_id: "gw", max_fps: 10 };

function respond(status: number, body: unknown) {
  return new Response(status === 204 ? null : JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

describe("LiveView", () => {
  let calls: Array<{ url: string; method: string; body: unknown }>;

  function stubApi(answer: () => Response) {
    calls = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init: RequestInit = {}) => {
        const method = init.method ?? "GET";
        calls.push({ url, method, body: init.body ? JSON.parse(String(init.body)) : null });
        return method === "DELETE" ? respond(204, null) : answer();
      }),
    );
  }

  beforeEach(() => {
    FakePeer.last = null;
    vi.stubGlobal("RTCPeerConnection", FakePeer);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it("posts the gathered offer, applies the answer, turns live on the first picture, and stops", async () => {
    stubApi(() => respond(200, ANSWER));
    render(<LiveView deviceId="courtyard" />);
    expect(screen.getByTestId("live-state")).toHaveTextContent("Not started");

    fireEvent.click(screen.getByRole("button", { name: "Start live view" }));
    await waitFor(() => expect(FakePeer.last?.remote).toEqual({ type: "answer", sdp: "v=0 answer" }));
    const peer = FakePeer.last!;
    expect(peer.config).toEqual({ iceServers: [] });
    expect(peer.transceivers).toEqual([["video", { direction: "recvonly" }]]);
    // the offer went out after gathering: with its candidates
    expect(calls[0]).toMatchObject({ url: "/api/v1/devices/courtyard/live", method: "POST" });
    expect(calls[0].body).toEqual({ type: "offer", sdp: expect.stringContaining("a=candidate:") });
    expect(screen.getByTestId("live-state")).toHaveTextContent("Connecting");

    const video = screen.getByTestId("live-video") as HTMLVideoElement;
    expect(video.muted).toBe(true);
    Object.defineProperty(video, "videoWidth", { value: 768, configurable: true });
    Object.defineProperty(video, "videoHeight", { value: 576, configurable: true });
    fireEvent.loadedData(video);
    expect(screen.getByTestId("live-state")).toHaveTextContent("Live · 768×576");

    fireEvent.click(screen.getByRole("button", { name: "Stop live view" }));
    expect(peer.closed).toBe(true);
    expect(screen.getByTestId("live-state")).toHaveTextContent("Not started");
    await waitFor(() =>
      expect(calls.at(-1)).toMatchObject({ url: "/api/v1/devices/courtyard/live/abc123def456", method: "DELETE" }),
    );
  });

  it("shows the API's refusal and offers a retry", async () => {
    stubApi(() =>
      respond(409, {
        error: { code: "viewer_limit", message: "camera 'courtyard' already has 3 live viewer(s)", details: [] },
      }),
    );
    render(<LiveView deviceId="courtyard" autoStart />);
    await waitFor(() => expect(screen.getByTestId("live-state")).toHaveAttribute("data-state", "failed"));
    expect(screen.getByTestId("live-state")).toHaveTextContent("Failed: camera 'courtyard' already has 3 live viewer(s)");
    expect(FakePeer.last?.closed).toBe(true);
    expect(screen.getByRole("button", { name: "Start live view" })).toHaveTextContent("Retry");
  });

  it("ends the session when it unmounts", async () => {
    stubApi(() => respond(200, ANSWER));
    const view = render(<LiveView deviceId="cam 1" autoStart />);
    await waitFor(() => expect(FakePeer.last?.remote).not.toBeNull());
    view.unmount();
    expect(FakePeer.last?.closed).toBe(true);
    await waitFor(() => expect(calls.at(-1)).toMatchObject({ url: "/api/v1/devices/cam%201/live/abc123def456", method: "DELETE" }));
  });

  it("fails when the connection fails", async () => {
    stubApi(() => respond(200, ANSWER));
    render(<LiveView deviceId="courtyard" autoStart />);
    await waitFor(() => expect(FakePeer.last?.remote).not.toBeNull());
    const peer = FakePeer.last!;
    act(() => {
      peer.connectionState = "failed";
      peer.onconnectionstatechange?.();
    });
    expect(screen.getByTestId("live-state")).toHaveTextContent("Failed: the connection to the connector failed");
    expect(peer.closed).toBe(true);
  });

  it("says so when the browser has no WebRTC", async () => {
    vi.stubGlobal("RTCPeerConnection", undefined);
    stubApi(() => respond(200, ANSWER));
    render(<LiveView deviceId="courtyard" />);
    fireEvent.click(screen.getByRole("button", { name: "Start live view" }));
    await waitFor(() => expect(screen.getByTestId("live-state")).toHaveTextContent("does not support WebRTC"));
    expect(calls).toEqual([]);
  });
});

describe("iceGatheringComplete", () => {
  it("resolves after the timeout when gathering never completes", async () => {
    vi.useFakeTimers();
    const peer = new FakePeer({});
    let done = false;
    void iceGatheringComplete(peer as unknown as RTCPeerConnection, 1000).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(2);
    expect(done).toBe(true);
    vi.useRealTimers();
  });
});

describe("stateText", () => {
  it("names every state", () => {
    expect(stateText({ kind: "idle" })).toBe("Not started");
    expect(stateText({ kind: "connecting", step: "asking the connector" })).toBe("Connecting… (asking the connector)");
    expect(stateText({ kind: "live", width: 640, height: 360 })).toBe("Live · 640×360");
    expect(stateText({ kind: "failed", message: "no" })).toBe("Failed: no");
  });
});
