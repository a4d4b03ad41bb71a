/**
 * Devices on a map that works offline: a bundled world outline (no tile server), one circle
 * per located device coloured by status, a popup with its name and status. The view fits the
 * markers when the set of placed devices changes; `focusId` centres one device and opens its
 * popup; `onSelect(id)` is called when a marker is clicked.
 */
import type { CircleMarker as LeafletCircleMarker, LatLngBoundsExpression, PathOptions } from "leaflet";
import { useEffect, useMemo, useRef } from "react";
import { CircleMarker, GeoJSON, MapContainer, Popup, ScaleControl, useMap } from "react-leaflet";
import { StatusBadge, STATUS_COLOURS, type DeviceStatus } from "../ui";
import {
  MAX_FIT_ZOOM,
  POINT_ZOOM,
  WORLD_VIEW,
  fitTarget,
  locatedDevices,
  markerColour,
  placementKey,
  statusCounts,
  type MapDevice,
} from "./geometry";
import { worldOutline } from "./world";

export type { MapDevice } from "./geometry";

export interface DeviceMapProps {
  devices: MapDevice[];
  /** Height in px (default 320). */
  height?: number;
  onSelect?: (id: string) => void;
  focusId?: string;
}

const OUTLINE_STYLE: PathOptions = {
  color: "#94a3b8",
  weight: 0.6,
  fillColor: "#f8fafc",
  fillOpacity: 1,
  interactive: false,
};

/** Fit the view to the markers when the placed set changes (not on every status refresh). */
function FitView({ devices }: { devices: MapDevice[] }) {
  const map = useMap();
  const key = placementKey(devices);
  const latest = useRef(devices);
  latest.current = devices;
  useEffect(() => {
    const target = fitTarget(latest.current);
    if (target.kind === "world") map.setView(WORLD_VIEW.center, WORLD_VIEW.zoom);
    else if (target.kind === "point") map.setView(target.center, POINT_ZOOM);
    else map.fitBounds(target.bounds as LatLngBoundsExpression, { padding: [32, 32], maxZoom: MAX_FIT_ZOOM });
  }, [key, map]);
  return null;
}

/** Keep Leaflet's idea of the container size right when the layout changes. */
function SizeWatcher() {
  const map = useMap();
  useEffect(() => {
    const container = map.getContainer();
    if (typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(() => map.invalidateSize());
    observer.observe(container);
    return () => observer.disconnect();
  }, [map]);
  return null;
}

function Marker({
  device,
  focused,
  onSelect,
}: {
  device: MapDevice & { location: { lat: number; lon: number } };
  focused: boolean;
  onSelect?: (id: string) => void;
}) {
  const ref = useRef<LeafletCircleMarker | null>(null);
  const map = useMap();
  useEffect(() => {
    if (!focused) return;
    map.setView([device.location.lat, device.location.lon], Math.max(map.getZoom(), POINT_ZOOM));
    ref.current?.openPopup();
  }, [focused, device.location.lat, device.location.lon, map]);
  return (
    <CircleMarker
      ref={ref}
      center={[device.location.lat, device.location.lon]}
      radius={focused ? 11 : 8}
      pathOptions={{
        color: focused ? "#0f172a" : "#ffffff",
        weight: 2,
        fillColor: markerColour(device.status),
        fillOpacity: 0.95,
      }}
      // read once, when Leaflet creates the path: the marker is keyed by status
      className={`device-marker device-marker-${device.status}`}
      eventHandlers={{ click: () => onSelect?.(device.id) }}
    >
      <Popup>
        <div className="min-w-36 text-sm" data-testid="device-popup">
          <div className="font-semibold text-slate-800">{device.name}</div>
          <div className="mb-1 font-mono text-xs text-slate-500">{device.id}</div>
          <StatusBadge status={device.status} />
        </div>
      </Popup>
    </CircleMarker>
  );
}

export function DeviceMap({ devices, height = 320, onSelect, focusId }: DeviceMapProps) {
  const outline = useMemo(() => worldOutline(), []);
  const located = locatedDevices(devices);
  const counts = statusCounts(located);
  const unplaced = devices.length - located.length;
  return (
    <div
      role="region"
      aria-label="Device map"
      data-testid="device-map"
      className="relative isolate overflow-hidden rounded-md border border-slate-200"
      style={{ height }}
    >
      <MapContainer
        center={WORLD_VIEW.center}
        zoom={WORLD_VIEW.zoom}
        minZoom={1}
        maxZoom={18}
        worldCopyJump={false}
        attributionControl={false}
        style={{ height: "100%", width: "100%", background: "#dbeafe" }}
      >
        <GeoJSON data={outline} style={() => OUTLINE_STYLE} />
        {located.map((device) => (
          <Marker key={`${device.id}:${device.status}`} device={device} focused={device.id === focusId} onSelect={onSelect} />
        ))}
        <ScaleControl position="topright" imperial={false} />
        <FitView devices={devices} />
        <SizeWatcher />
      </MapContainer>
      <ul
        className="pointer-events-none absolute bottom-2 left-2 z-[500] flex gap-3 rounded bg-white/90 px-2 py-1 text-xs text-slate-600 shadow-sm"
        aria-label="Map legend"
      >
        {(Object.keys(counts) as DeviceStatus[]).map((status) => (
          <li key={status} className="flex items-center gap-1">
            <span className="h-2.5 w-2.5 rounded-full" style={{ background: STATUS_COLOURS[status] }} aria-hidden />
            {status} {counts[status]}
          </li>
        ))}
        {unplaced > 0 && <li className="text-slate-400">{unplaced} without location</li>}
      </ul>
    </div>
  );
}

export default DeviceMap;
