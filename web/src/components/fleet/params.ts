/**
 * The fleet list's filters live in the page's URL (`?q=sim&status=online&site=north&kind=plc
 * &cursor=…`), so a reload, a shared link and the browser's Back button show the same list.
 */
import type { Query } from "../../api/client";
import { DEVICE_KINDS, DEVICE_STATUSES, type DeviceKind, type DeviceStatusName } from "./types";

export interface FleetFilters {
  /** Part of a name or id. */
  q: string;
  status: DeviceStatusName | "";
  site: string;
  kind: DeviceKind | "";
  /** The page: a `next_cursor` the API gave; "" for the first page. */
  cursor: string;
}

export const PAGE_SIZE = 50;

export function readFilters(params: URLSearchParams): FleetFilters {
  const status = params.get("status") ?? "";
  const kind = params.get("kind") ?? "";
  return {
    q: params.get("q") ?? "",
    status: (DEVICE_STATUSES as string[]).includes(status) ? (status as DeviceStatusName) : "",
    site: params.get("site") ?? "",
    kind: (DEVICE_KINDS as string[]).includes(kind) ? (kind as DeviceKind) : "",
    cursor: params.get("cursor") ?? "",
  };
}

/**
 * The URL parameters after a change: empty values are left out, and any change of a filter
 * goes back to the first page (a cursor belongs to the filters it was made with).
 */
export function writeFilters(current: URLSearchParams, change: Partial<FleetFilters>): URLSearchParams {
  const next = new URLSearchParams(current);
  const filterChanged = (Object.keys(change) as (keyof FleetFilters)[]).some(
    (key) => key !== "cursor" && (change[key] ?? "") !== (current.get(key) ?? ""),
  );
  for (const [key, value] of Object.entries(change)) {
    if (value) next.set(key, value);
    else next.delete(key);
  }
  if (filterChanged && !("cursor" in change)) next.delete("cursor");
  return next;
}

/** The `GET /devices` query of the filters (search by substring of the name or id). */
export function listQuery(filters: FleetFilters, limit = PAGE_SIZE): Query {
  return {
    search: filters.q.trim() || undefined,
    status: filters.status || undefined,
    site: filters.site || undefined,
    kind: filters.kind || undefined,
    cursor: filters.cursor || undefined,
    limit,
  };
}
