import { describe, expect, it } from "vitest";
import type { Alert, EventRecord } from "../api/types";
import { alertItem, eventItem } from "../stores/alerts";
import { acknowledgePath } from "./useAcknowledge";
import { announceGate, notificationKeys, shouldAnnounce, toastId } from "./useAlertFeed";

const alert = {
  id: "a 1",
  device_id: "cam",
  rule_id: "r",
  kind: "offline",
  message: "Camera offline",
  severity: "critical",
  state: "active",
} as Alert;
const event = {
  id: "e1",
  pipeline_id: "p1",
  node_id: "zone",
  type: "zone.enter",
  time: "2026-11-30T10:00:00Z",
  severity: "critical",
  data: {},
} as EventRecord;

describe("alert feed", () => {
  it("refreshes the lists a notification touches", () => {
    expect(notificationKeys({ channel: "notifications", type: "alert.raised" })).toEqual([["alerts"], ["analytics"]]);
    expect(notificationKeys({ channel: "notifications", type: "pipeline.event" })).toEqual([["events"], ["analytics"]]);
    expect(notificationKeys({ channel: "notifications", type: "event.acknowledged" })).toEqual([["events"]]);
    expect(notificationKeys({ channel: "notifications", type: "something.else" })).toEqual([]);
  });

  it("announces new critical items that are active and unacknowledged", () => {
    expect(shouldAnnounce(alertItem(alert))).toBe(true);
    expect(shouldAnnounce(alertItem({ ...alert, severity: "warning" }))).toBe(false);
    expect(shouldAnnounce(alertItem({ ...alert, state: "cleared" }))).toBe(false);
    expect(shouldAnnounce(alertItem({ ...alert, acknowledged_by: "op" }))).toBe(false);
    expect(shouldAnnounce(eventItem(event))).toBe(true);
    expect(shouldAnnounce(null)).toBe(false);
  });

  it("toasts one per alert and one per pipeline", () => {
    expect(toastId(alertItem(alert))).toBe("alert:a 1");
    expect(toastId(eventItem(event))).toBe("pipeline-events:p1");
    expect(toastId(eventItem({ ...event, id: "e2" }))).toBe("pipeline-events:p1");
  });

  it("acknowledges alerts and events at their API paths, once", () => {
    expect(acknowledgePath(alertItem(alert))).toBe("/alerts/a%201/acknowledge");
    expect(acknowledgePath(eventItem(event))).toBe("/events/e1/acknowledge");
    expect(acknowledgePath(alertItem({ ...alert, acknowledged_by: "op" }))).toBeNull();
  });
});

describe("announceGate", () => {
  it("pops a pipeline's events up at most once a minute, device alerts every time", () => {
    let now = 0;
    const gate = announceGate(60_000, () => now);
    const first = eventItem(event);
    expect(gate(first)).toBe(true);
    now = 30_000;
    expect(gate(eventItem({ ...event, id: "e9" }))).toBe(false);
    now = 61_000;
    expect(gate(first)).toBe(true);
    const raised = alertItem(alert);
    expect(gate(raised)).toBe(true);
    expect(gate(raised)).toBe(true);
  });
});
