/**
 * Acknowledge an alert or an event of the feed: `POST /alerts/{id}/acknowledge` or
 * `POST /events/{id}/acknowledge`; the store and the lists follow, a toast tells the outcome.
 */
import { useMutation, useQueryClient } from "@tanstack/react-query";
import toast from "react-hot-toast";
import { api, errorMessage } from "../api/client";
import { useAlerts, type FeedItem } from "../stores/alerts";
import { useAuth } from "../stores/auth";
import { ALERTS_KEY, ANALYTICS_KEY, EVENTS_KEY } from "./useAlertFeed";

/** Whether the API can acknowledge pipeline events (`POST /events/{event_id}/acknowledge`). */
export const EVENTS_ACKNOWLEDGEABLE = true;

/** The API path that acknowledges the item, or null when it cannot be acknowledged. */
export function acknowledgePath(item: Pick<FeedItem, "kind" | "id" | "acknowledgedBy">): string | null {
  if (item.acknowledgedBy) return null;
  if (item.kind === "alert") return `/alerts/${encodeURIComponent(item.id)}/acknowledge`;
  return EVENTS_ACKNOWLEDGEABLE ? `/events/${encodeURIComponent(item.id)}/acknowledge` : null;
}

interface Acknowledged {
  acknowledged_by?: string | null;
  acknowledged_at?: string | null;
  data?: Record<string, unknown>;
}

export function useAcknowledge() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: async (item: FeedItem) => {
      const path = acknowledgePath(item);
      if (!path) throw new Error("This item cannot be acknowledged");
      return (await api<Acknowledged | undefined>(path, { method: "POST" })) ?? {};
    },
    onSuccess: (result, item) => {
      const by =
        result.acknowledged_by ??
        (typeof result.data?.acknowledged_by === "string" ? result.data.acknowledged_by : null) ??
        useAuth.getState().user?.username ??
        null;
      useAlerts.getState().acknowledge(item.key, by, result.acknowledged_at ?? undefined);
      const keep = { cancelRefetch: false };
      void client.invalidateQueries({ queryKey: [...(item.kind === "alert" ? ALERTS_KEY : EVENTS_KEY)] }, keep);
      void client.invalidateQueries({ queryKey: [...ANALYTICS_KEY] }, keep);
      toast.success(`Acknowledged: ${item.title}`);
    },
    onError: (error) => {
      toast.error(errorMessage(error));
    },
  });
}
