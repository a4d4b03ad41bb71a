/**
 * What the `/ws/devices` feed says about a device, applied to the device as last loaded:
 * `device.status` (derived status and its reasons), `device.heartbeat` (last seen, health).
 */
import type { FeedMessage } from "../../hooks/useFeed";
import type { Device } from "./types";

/** The device id a feed message is about, if any. */
export function messageDeviceId(message: FeedMessage): string | null {
  if (typeof message.device_id === "string") return message.device_id;
  const nested = (message.event ?? message.command) as { device_id?: unknown } | undefined;
  return nested && typeof nested.device_id === "string" ? nested.device_id : null;
}

/** The device after the message (the same object when the message changes nothing). */
export function applyDeviceMessage<D extends Device>(device: D, message: FeedMessage): D {
  if (message.device_id !== device.id) return device;
  if (message.type === "device.status" && typeof message.status === "string") {
    return {
      ...device,
      status: message.status as Device["status"],
      status_reasons: Array.isArray(message.reasons) ? (message.reasons as string[]) : [],
      status_since: typeof message.time === "string" ? message.time : device.status_since,
    };
  }
  if (message.type === "device.heartbeat") {
    return {
      ...device,
      last_seen: typeof message.time === "string" ? message.time : device.last_seen,
      health: message.health && typeof message.health === "object" ? (message.health as Record<string, unknown>) : device.health,
    };
  }
  return device;
}

/** A page of devices after the message (the same page when no row changed). */
export function applyToPage<P extends { items: Device[] }>(page: P | undefined, message: FeedMessage): P | undefined {
  if (!page) return page;
  let changed = false;
  const items = page.items.map((d) => {
    const next = applyDeviceMessage(d, message);
    if (next !== d) changed = true;
    return next;
  });
  return changed ? { ...page, items } : page;
}
