/**
 * The world outline drawn under the device markers, bundled with the console (Natural Earth
 * 1:110m countries from world-atlas): the map needs no tile server and works offline.
 */
import type { FeatureCollection, Geometry } from "geojson";
import { feature } from "topojson-client";
import type { GeometryCollection, Topology } from "topojson-specification";
import countries from "world-atlas/countries-110m.json";

let cached: FeatureCollection<Geometry, { name?: string }> | null = null;

/** The countries as GeoJSON (converted once). */
export function worldOutline(): FeatureCollection<Geometry, { name?: string }> {
  if (cached === null) {
    const topology = countries as unknown as Topology<{ countries: GeometryCollection<{ name?: string }> }>;
    cached = feature(topology, topology.objects.countries) as FeatureCollection<Geometry, { name?: string }>;
  }
  return cached;
}
