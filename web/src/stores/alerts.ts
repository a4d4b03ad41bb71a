/**
 * The live alert feed shared by the header's bell and the dashboard: device alerts (raised,
 * cleared, acknowledged on `/ws/notifications`, seeded from `GET /alerts`) and the pipeline
 * events that dashboard nodes record (`pipeline.event`), newest first, at most
 * {@link MAX_ITEMS}.
 *
 * Unread: an active alert nobody acknowledged, or an event that arrived live and was not yet
 * seen (opening the bell marks events seen; alerts stay counted until acknowledged).
 */
import { create } from "zustand";
import type { Alert, EventRecord } from "../api/types";

export const MAX_ITEMS = 100;

export type FeedItemKind = "alert" | "event";

export interface FeedItem {
  /** `alert:<id>` or `event:<id>`: unique in the feed. */
  key: string;
  kind: FeedItemKind;
  id: string;
  /** What happened: the alert's message, or the event's type. */
  title: string;
  /** Where: the device id of an alert, the pipeline's name of an event. */
  source: string;
  severity: string;
  /** When it was raised or recorded (ISO 8601). */
  time: string;
  /** Alerts: still active (not cleared). Events: always true. */
  active: boolean;
  acknowledgedBy: string | null;
  acknowledgedAt: string | null;
  /** Seen in the bell's list (events; alerts count until acknowledged). */
  read: boolean;
  deviceId?: string | null;
  pipelineId?: string;
  runId?: string | null;
  /** API path of the event's snapshot (`data.snapshot_url`). */
  snapshotUrl?: string | null;
}

/** A message of `/ws/notifications` (the fields this store reads). */
export interface NotificationMessage {
  type: string;
  alert?: Alert;
  event?: EventRecord;
  event_id?: string;
  pipeline_id?: string;
  pipeline_name?: string;
  run_id?: string | null;
  acknowledged_by?: string | null;
  acknowledged_at?: string | null;
  [key: string]: unknown;
}

function str(value: unknown): string | null {
  return typeof value === "string" && value !== "" ? value : null;
}

/** The feed item of a device alert. */
export function alertItem(alert: Alert, read = false): FeedItem {
  const id = alert.id ?? `${alert.device_id}:${alert.rule_id}:${alert.raised_at ?? ""}`;
  return {
    key: `alert:${id}`,
    kind: "alert",
    id,
    title: alert.message,
    source: alert.device_id,
    severity: alert.severity ?? "warning",
    time: alert.raised_at ?? new Date().toISOString(),
    active: (alert.state ?? "active") === "active",
    acknowledgedBy: alert.acknowledged_by ?? null,
    acknowledgedAt: alert.acknowledged_at ?? null,
    read,
    deviceId: alert.device_id,
  };
}

/** "zone.entered" → "Zone entered"; "person_loitering" → "Person loitering". */
export function eventTitle(type: string): string {
  const words = type.replace(/[._-]+/g, " ").trim();
  return words ? words.charAt(0).toUpperCase() + words.slice(1) : "Event";
}

/** The feed item of a pipeline event (`pipelineName` when the message carried it). */
export function eventItem(event: EventRecord, pipelineName?: string | null, read = false): FeedItem {
  const data = (event.data ?? {}) as Record<string, unknown>;
  const record = event as EventRecord & Record<string, unknown>;
  return {
    key: `event:${event.id}`,
    kind: "event",
    id: event.id,
    title: eventTitle(event.type),
    source: pipelineName || event.pipeline_id,
    severity: event.severity ?? "info",
    time: event.time,
    active: true,
    acknowledgedBy: str(record.acknowledged_by) ?? str(data.acknowledged_by),
    acknowledgedAt: str(record.acknowledged_at) ?? str(data.acknowledged_at),
    read,
    deviceId: event.source_id ?? null,
    pipelineId: event.pipeline_id,
    runId: event.run_id ?? null,
    snapshotUrl: str(data.snapshot_url),
  };
}

/** Whether the item counts in the bell's badge. */
export function isUnread(item: FeedItem): boolean {
  if (item.acknowledgedBy) return false;
  return item.kind === "alert" ? item.active : !item.read;
}

export function unreadCount(items: readonly FeedItem[]): number {
  return items.reduce((n, item) => n + (isUnread(item) ? 1 : 0), 0);
}

function newestFirst(a: FeedItem, b: FeedItem): number {
  const ta = Date.parse(a.time);
  const tb = Date.parse(b.time);
  if (ta !== tb) return (Number.isNaN(tb) ? 0 : tb) - (Number.isNaN(ta) ? 0 : ta);
  return a.key < b.key ? 1 : a.key > b.key ? -1 : 0;
}

/**
 * `items` with `incoming` merged in (an item already there is updated, keeping its `read`
 * flag unless the new one is read), newest first, at most {@link MAX_ITEMS}.
 */
export function mergeItems(items: readonly FeedItem[], incoming: readonly FeedItem[]): FeedItem[] {
  const byKey = new Map(items.map((item) => [item.key, item]));
  for (const item of incoming) {
    const old = byKey.get(item.key);
    byKey.set(item.key, old ? { ...old, ...item, read: old.read || item.read } : item);
  }
  return [...byKey.values()].sort(newestFirst).slice(0, MAX_ITEMS);
}

interface AlertsState {
  items: FeedItem[];
  /** Merge what the API lists (already seen: not unread unless active alerts). */
  seed: (alerts: readonly Alert[], events?: readonly EventRecord[]) => void;
  /**
   * Apply one `/ws/notifications` message; returns the item when it is new to the feed
   * (so the caller can announce it), else null.
   */
  receive: (message: NotificationMessage) => FeedItem | null;
  /** Record an acknowledgement (after the API accepted it). */
  acknowledge: (key: string, by: string | null, at?: string) => void;
  /** The bell was opened: every event is seen. */
  markAllRead: () => void;
  /** Signed out: forget everything. */
  reset: () => void;
}

export const useAlerts = create<AlertsState>()((set, get) => ({
  items: [],
  seed: (alerts, events = []) =>
    set((state) => ({
      items: mergeItems(state.items, [
        ...alerts.map((a) => alertItem(a, true)),
        ...events.map((e) => eventItem(e, null, true)),
      ]),
    })),
  receive: (message) => {
    let item: FeedItem | null = null;
    if (message.type.startsWith("alert.") && message.alert) {
      item = alertItem(message.alert);
    } else if (message.type === "pipeline.event" && message.event) {
      item = eventItem(message.event, message.pipeline_name);
    } else if (message.type === "event.acknowledged") {
      const id = message.event?.id ?? message.event_id;
      if (!id) return null;
      const record = (message.event ?? {}) as Record<string, unknown>;
      get().acknowledge(
        `event:${id}`,
        str(message.acknowledged_by) ?? str(record.acknowledged_by) ?? "someone",
        str(message.acknowledged_at) ?? str(record.acknowledged_at) ?? undefined,
      );
      return null;
    }
    if (!item) return null;
    const isNew = !get().items.some((i) => i.key === item!.key);
    const incoming = item;
    set((state) => ({ items: mergeItems(state.items, [incoming]) }));
    return isNew ? item : null;
  },
  acknowledge: (key, by, at) =>
    set((state) => ({
      items: state.items.map((item) =>
        item.key === key
          ? { ...item, acknowledgedBy: by ?? "you", acknowledgedAt: at ?? new Date().toISOString(), read: true }
          : item,
      ),
    })),
  markAllRead: () =>
    set((state) =>
      state.items.some((i) => !i.read) ? { items: state.items.map((i) => (i.read ? i : { ...i, read: true })) } : state,
    ),
  reset: () => set({ items: [] }),
}));

/** The badge's count, for components. */
export function useUnreadCount(): number {
  return useAlerts((state) => unreadCount(state.items));
}
