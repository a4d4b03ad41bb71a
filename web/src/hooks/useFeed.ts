/**
 * A live feed of `aios up` over WebSocket (`/ws/devices`, `/ws/notifications`,
 * `/ws/pipelines/{id}`). The access token goes as the `["bearer", token]` subprotocol pair.
 * The socket reconnects with backoff (1 s doubling to 30 s, plus jitter) after any close but
 * a deliberate one, including 1012 (server restart) and 1013 (this console fell behind):
 * `onReconnect` is called then so the page reloads what it shows.
 */
import { useEffect, useRef, useState } from "react";
import { freshAccessToken } from "../api/auth";

export interface FeedMessage {
  channel: string;
  type: string;
  [key: string]: unknown;
}

export type FeedState = "connecting" | "open" | "closed";

/** Backoff before reconnection attempt `attempt` (0-based), in ms. */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(30_000, 1000 * 2 ** attempt);
  return Math.round(base / 2 + (random() * base) / 2);
}

export function feedUrl(path: string, location: Pick<Location, "protocol" | "host"> = window.location): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

export function useFeed(
  path: string | null,
  onMessage: (message: FeedMessage) => void,
  onReconnect?: () => void,
): FeedState {
  const [state, setState] = useState<FeedState>("connecting");
  const handlers = useRef({ onMessage, onReconnect });
  handlers.current = { onMessage, onReconnect };

  useEffect(() => {
    if (!path) return;
    let socket: WebSocket | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let attempt = 0;
    let stopped = false;
    let opened = false;

    const connect = async () => {
      const token = await freshAccessToken();
      if (stopped || !token) return;
      setState("connecting");
      socket = new WebSocket(feedUrl(path), ["bearer", token]);
      socket.onopen = () => {
        if (opened) handlers.current.onReconnect?.();
        opened = true;
        attempt = 0;
        setState("open");
      };
      socket.onmessage = (event) => {
        try {
          handlers.current.onMessage(JSON.parse(String(event.data)) as FeedMessage);
        } catch {
          // a frame that is not JSON is ignored
        }
      };
      socket.onclose = () => {
        setState("closed");
        if (stopped) return;
        timer = setTimeout(() => void connect(), reconnectDelay(attempt++));
      };
    };
    void connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socket?.close(1000);
    };
  }, [path]);

  return state;
}
