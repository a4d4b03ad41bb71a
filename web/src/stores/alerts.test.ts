import { beforeEach, describe, expect, it } from "vitest";
import type { Alert, EventRecord } from "../api/types";
import { MAX_ITEMS, eventTitle, isUnread, mergeItems, unreadCount, useAlerts, alertItem, eventItem } from "./alerts";

function alert(over: Partial<Alert> = {}): Alert {
  return {
    id: "a1",
    device_id: "cam-1",
    rule_id: "r1",
    kind: "offline",
    severity: "critical",
    message: "Camera offline",
    state: "active",
    raised_at: "2026-11-30T10:00:00Z",
    cleared_at: null,
    acknowledged_by: null,
    acknowledged_at: null,
    value: null,
    ...over,
  };
}

function event(over: Partial<EventRecord> = {}): EventRecord {
  return {
    id: "e1",
    pipeline_id: "p1",
    run_id: "run-1",
    node_id: "zone",
    source_id: "cam-1",
    type: "zone.entered",
    time: "2026-11-30T10:05:00Z",
    severity: "warning",
    data: { snapshot_url: "/api/v1/runs/run-1/media/snapshots/e1.jpg" },
    ...over,
  };
}

beforeEach(() => useAlerts.getState().reset());

describe("feed items", () => {
  it("an alert becomes an item keyed by its id", () => {
    const item = alertItem(alert());
    expect(item).toMatchObject({ key: "alert:a1", kind: "alert", title: "Camera offline", source: "cam-1", active: true });
    expect(alertItem(alert({ state: "cleared" })).active).toBe(false);
  });

  it("an event takes the pipeline's name and the snapshot path", () => {
    const item = eventItem(event(), "Intrusion");
    expect(item).toMatchObject({
      key: "event:e1",
      title: "Zone entered",
      source: "Intrusion",
      snapshotUrl: "/api/v1/runs/run-1/media/snapshots/e1.jpg",
      deviceId: "cam-1",
    });
    expect(eventItem(event({ data: {} })).source).toBe("p1");
    expect(eventItem(event({ data: {} })).snapshotUrl).toBeNull();
  });

  it("titles events from their type", () => {
    expect(eventTitle("person_loitering")).toBe("Person loitering");
    expect(eventTitle("line-crossed.in")).toBe("Line crossed in");
    expect(eventTitle("")).toBe("Event");
  });

  it("counts active unacknowledged alerts and unseen events as unread", () => {
    const items = [
      alertItem(alert(), true),
      alertItem(alert({ id: "a2", state: "cleared" })),
      alertItem(alert({ id: "a3", acknowledged_by: "admin" })),
      eventItem(event()),
      eventItem(event({ id: "e2" }), null, true),
    ];
    expect(items.map(isUnread)).toEqual([true, false, false, true, false]);
    expect(unreadCount(items)).toBe(2);
  });

  it("merges newest first, updates in place and keeps at most MAX_ITEMS", () => {
    const older = eventItem(event({ id: "old", time: "2026-11-30T09:00:00Z" }));
    const newer = eventItem(event({ id: "new", time: "2026-11-30T11:00:00Z" }));
    const merged = mergeItems([older], [newer]);
    expect(merged.map((i) => i.id)).toEqual(["new", "old"]);
    const seen = mergeItems([{ ...older, read: true }], [older]);
    expect(seen).toHaveLength(1);
    expect(seen[0].read).toBe(true);
    const many = Array.from({ length: MAX_ITEMS + 20 }, (_, n) =>
      eventItem(event({ id: `e${n}`, time: new Date(Date.UTC(2026, 10, 30, 0, n)).toISOString() })),
    );
    const capped = mergeItems([], many);
    expect(capped).toHaveLength(MAX_ITEMS);
    expect(capped[0].id).toBe(`e${MAX_ITEMS + 19}`);
  });
});

describe("useAlerts", () => {
  it("receives raised, acknowledged and cleared alerts", () => {
    const { receive } = useAlerts.getState();
    const first = receive({ type: "alert.raised", alert: alert() });
    expect(first?.key).toBe("alert:a1");
    expect(unreadCount(useAlerts.getState().items)).toBe(1);

    // the same alert again is not new
    expect(receive({ type: "alert.raised", alert: alert() })).toBeNull();
    expect(useAlerts.getState().items).toHaveLength(1);

    receive({ type: "alert.acknowledged", alert: alert({ acknowledged_by: "op", acknowledged_at: "2026-11-30T10:01:00Z" }) });
    expect(useAlerts.getState().items[0].acknowledgedBy).toBe("op");
    expect(unreadCount(useAlerts.getState().items)).toBe(0);

    receive({ type: "alert.cleared", alert: alert({ id: "a9", state: "cleared" }) });
    expect(useAlerts.getState().items.find((i) => i.id === "a9")?.active).toBe(false);
  });

  it("receives pipeline events and ignores other messages", () => {
    const { receive } = useAlerts.getState();
    const item = receive({ type: "pipeline.event", pipeline_id: "p1", pipeline_name: "Intrusion", run_id: "run-1", event: event() });
    expect(item?.source).toBe("Intrusion");
    expect(receive({ type: "pipeline.event" })).toBeNull();
    expect(receive({ type: "device.status" })).toBeNull();
    expect(useAlerts.getState().items).toHaveLength(1);
  });

  it("marks events read when the bell opens; alerts stay until acknowledged", () => {
    const { receive, markAllRead } = useAlerts.getState();
    receive({ type: "pipeline.event", event: event() });
    receive({ type: "alert.raised", alert: alert() });
    expect(unreadCount(useAlerts.getState().items)).toBe(2);
    markAllRead();
    expect(unreadCount(useAlerts.getState().items)).toBe(1);
    useAlerts.getState().acknowledge("alert:a1", "admin");
    expect(unreadCount(useAlerts.getState().items)).toBe(0);
  });

  it("takes event acknowledgements from the feed", () => {
    const { receive } = useAlerts.getState();
    receive({ type: "pipeline.event", event: event() });
    receive({ type: "event.acknowledged", event_id: "e1", acknowledged_by: "op" });
    expect(useAlerts.getState().items[0].acknowledgedBy).toBe("op");
    expect(receive({ type: "event.acknowledged" })).toBeNull();
  });

  it("seeds from the API as already seen and resets on sign-out", () => {
    useAlerts.getState().seed([alert(), alert({ id: "a2", state: "cleared" })], [event()]);
    const state = useAlerts.getState();
    expect(state.items).toHaveLength(3);
    expect(unreadCount(state.items)).toBe(1); // the active alert only
    state.reset();
    expect(useAlerts.getState().items).toEqual([]);
  });
});
