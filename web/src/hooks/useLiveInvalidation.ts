/**
 * Live feed messages turned into query refreshes, at most one refresh per query key per
 * interval: a busy feed (heartbeats every few seconds from each device, a pipeline emitting
 * events per frame) must not make the page reload its data on every message.
 */
import { useQueryClient, type QueryKey } from "@tanstack/react-query";
import { useCallback, useEffect, useRef } from "react";
import { useFeed, type FeedMessage, type FeedState } from "./useFeed";

/** Default spacing of two refreshes of one query key, in ms. */
export const REFRESH_INTERVAL_MS = 3_000;

/**
 * A throttle per key: `request(key)` runs `run(key)` at once if the key ran more than
 * `intervalMs` ago, else once at the end of the interval (requests in between merge).
 * `cancel()` drops what is scheduled.
 */
export function keyedThrottle(
  run: (key: QueryKey) => void,
  intervalMs: number,
  clock: () => number = Date.now,
): { request: (key: QueryKey) => void; cancel: () => void } {
  const last = new Map<string, number>();
  const timers = new Map<string, ReturnType<typeof setTimeout>>();
  return {
    request(key) {
      const id = JSON.stringify(key);
      if (timers.has(id)) return;
      const wait = (last.get(id) ?? -Infinity) + intervalMs - clock();
      if (wait <= 0) {
        last.set(id, clock());
        run(key);
        return;
      }
      timers.set(
        id,
        setTimeout(() => {
          timers.delete(id);
          last.set(id, clock());
          run(key);
        }, wait),
      );
    },
    cancel() {
      timers.forEach((t) => clearTimeout(t));
      timers.clear();
    },
  };
}

/**
 * Listen to the feed at `path`; `keysOf(message)` names the queries the message makes stale
 * (throttled); `onMessage` sees every message. On reconnection every key in `reloadKeys` is
 * refreshed (messages may have been missed).
 */
export function useLiveInvalidation(
  path: string | null,
  keysOf: (message: FeedMessage) => QueryKey[],
  options: { onMessage?: (message: FeedMessage) => void; reloadKeys?: QueryKey[]; intervalMs?: number } = {},
): FeedState {
  const client = useQueryClient();
  const throttle = useRef<ReturnType<typeof keyedThrottle> | null>(null);
  if (throttle.current === null) {
    // a refresh already under way is kept, not restarted: on a slow server a busy feed
    // would otherwise cancel every fetch before it answers
    throttle.current = keyedThrottle(
      (key) => void client.invalidateQueries({ queryKey: key }, { cancelRefetch: false }),
      options.intervalMs ?? REFRESH_INTERVAL_MS,
    );
  }
  useEffect(() => () => throttle.current?.cancel(), []);
  const latest = useRef({ keysOf, options });
  latest.current = { keysOf, options };

  const onMessage = useCallback((message: FeedMessage) => {
    latest.current.options.onMessage?.(message);
    for (const key of latest.current.keysOf(message)) throttle.current?.request(key);
  }, []);
  const onReconnect = useCallback(() => {
    for (const key of latest.current.options.reloadKeys ?? []) {
      void client.invalidateQueries({ queryKey: key }, { cancelRefetch: false });
    }
  }, [client]);
  return useFeed(path, onMessage, onReconnect);
}
