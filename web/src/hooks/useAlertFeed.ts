/**
 * The console's one listener on `/ws/notifications` (mounted with the header's bell): feeds
 * the alert store, seeds it from `GET /alerts`, toasts new critical alerts and events, and
 * marks the alert, event and analytics queries stale (throttled).
 */
import { useQuery, useQueryClient, type QueryKey } from "@tanstack/react-query";
import { useEffect } from "react";
import toast from "react-hot-toast";
import { api } from "../api/client";
import type { Alert, Page } from "../api/types";
import { useAlerts, type FeedItem, type NotificationMessage } from "../stores/alerts";
import { useAuth } from "../stores/auth";
import type { FeedMessage } from "./useFeed";
import { useLiveInvalidation } from "./useLiveInvalidation";

/** Alerts listed to seed the feed. */
export const SEED_LIMIT = 30;

export const ALERTS_KEY = ["alerts"] as const;
export const EVENTS_KEY = ["events"] as const;
export const ANALYTICS_KEY = ["analytics"] as const;

/** The queries a notification makes stale. */
export function notificationKeys(message: FeedMessage): QueryKey[] {
  if (message.type.startsWith("alert.")) return [[...ALERTS_KEY], [...ANALYTICS_KEY]];
  if (message.type === "pipeline.event") return [[...EVENTS_KEY], [...ANALYTICS_KEY]];
  if (message.type.startsWith("event.")) return [[...EVENTS_KEY]];
  return [];
}

/** Whether a new feed item deserves a toast: critical, not yet acknowledged, still active. */
export function shouldAnnounce(item: FeedItem | null): item is FeedItem {
  return item !== null && item.severity === "critical" && item.active && !item.acknowledgedBy;
}

/**
 * One toast per alert, and one per pipeline for its events: a pipeline that reports every
 * few seconds updates its toast instead of stacking new ones.
 */
export function toastId(item: FeedItem): string {
  return item.kind === "event" ? `pipeline-events:${item.pipelineId ?? item.source}` : item.key;
}

/** Events of one pipeline pop up at most once per this many ms (alerts every time). */
export const EVENT_TOAST_INTERVAL_MS = 60_000;

/**
 * Whether to pop up `item` now: device alerts always; a pipeline's events at most once per
 * `intervalMs` (the bell and the dashboard's feed list every one of them), so a busy
 * camera never keeps a notification over the page.
 */
export function announceGate(intervalMs = EVENT_TOAST_INTERVAL_MS, now: () => number = Date.now) {
  const last = new Map<string, number>();
  return (item: FeedItem): boolean => {
    if (item.kind !== "event") return true;
    const id = toastId(item);
    const at = now();
    const previous = last.get(id);
    if (previous !== undefined && at - previous < intervalMs) return false;
    last.set(id, at);
    return true;
  };
}

const gate = announceGate();

export function useAlertFeed(): void {
  const signedIn = useAuth((s) => s.refreshToken !== null);
  const client = useQueryClient();
  const seed = useQuery({
    queryKey: [...ALERTS_KEY, "feed-seed"],
    queryFn: () => api<Page<Alert>>("/alerts", { query: { limit: SEED_LIMIT } }),
    enabled: signedIn,
    refetchInterval: 60_000,
  });

  useEffect(() => {
    if (seed.data) useAlerts.getState().seed(seed.data.items);
  }, [seed.data]);

  useEffect(() => {
    if (!signedIn) {
      useAlerts.getState().reset();
      client.removeQueries({ queryKey: [...ALERTS_KEY, "feed-seed"] });
    }
  }, [signedIn, client]);

  useLiveInvalidation(signedIn ? "/ws/notifications" : null, notificationKeys, {
    reloadKeys: [[...ALERTS_KEY], [...EVENTS_KEY], [...ANALYTICS_KEY]],
    onMessage: (message) => {
      const item = useAlerts.getState().receive(message as NotificationMessage);
      if (shouldAnnounce(item) && gate(item)) {
        toast(`${item.title} — ${item.source}`, { id: toastId(item), icon: "🚨", duration: 6000 });
      }
    },
  });
}
