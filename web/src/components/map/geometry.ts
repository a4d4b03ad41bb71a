/** What the device map shows, decided apart from Leaflet (unit-tested). */
import { STATUS_COLOURS, type DeviceStatus } from "../ui";

export interface GeoPoint {
  lat: number;
  lon: number;
}

export interface MapDevice {
  id: string;
  name: string;
  status: string;
  location?: GeoPoint | null;
}

export type LocatedDevice = MapDevice & { location: GeoPoint };

/** Closest zoom when fitting the markers (a site's devices tens of metres apart separate). */
export const MAX_FIT_ZOOM = 16;
/** Zoom on a single marker: the region around it. */
export const POINT_ZOOM = 8;
export const WORLD_VIEW = { center: [20, 0] as [number, number], zoom: 2 };

function valid(p: GeoPoint | null | undefined): p is GeoPoint {
  return (
    !!p &&
    Number.isFinite(p.lat) &&
    Number.isFinite(p.lon) &&
    Math.abs(p.lat) <= 90 &&
    Math.abs(p.lon) <= 180
  );
}

/** The devices with a usable position. */
export function locatedDevices<T extends MapDevice>(devices: readonly T[]): (T & { location: GeoPoint })[] {
  return devices.filter((d): d is T & { location: GeoPoint } => valid(d.location));
}

/** The marker's fill: green online, yellow warning, grey offline (and for anything else). */
export function markerColour(status: string): string {
  return STATUS_COLOURS[(status in STATUS_COLOURS ? status : "offline") as DeviceStatus];
}

export type FitTarget =
  | { kind: "world" }
  | { kind: "point"; center: [number, number] }
  | { kind: "bounds"; bounds: [[number, number], [number, number]] };

/** Where to look: the world (no markers), one place, or the box around all markers. */
export function fitTarget(devices: readonly MapDevice[]): FitTarget {
  const points = locatedDevices(devices).map((d) => d.location);
  if (points.length === 0) return { kind: "world" };
  const lats = points.map((p) => p.lat);
  const lons = points.map((p) => p.lon);
  const south = Math.min(...lats);
  const north = Math.max(...lats);
  const west = Math.min(...lons);
  const east = Math.max(...lons);
  if (south === north && west === east) return { kind: "point", center: [south, west] };
  return { kind: "bounds", bounds: [[south, west], [north, east]] };
}

/** Changes only when the set of placed markers changes (not on status updates). */
export function placementKey(devices: readonly MapDevice[]): string {
  return locatedDevices(devices)
    .map((d) => `${d.id}@${d.location.lat},${d.location.lon}`)
    .sort()
    .join("|");
}

/** Devices per status, for the legend. */
export function statusCounts(devices: readonly MapDevice[]): Record<DeviceStatus, number> {
  const counts: Record<DeviceStatus, number> = { online: 0, warning: 0, offline: 0 };
  for (const d of devices) {
    const status = (d.status in counts ? d.status : "offline") as DeviceStatus;
    counts[status] += 1;
  }
  return counts;
}
