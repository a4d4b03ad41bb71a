/**
 * The node catalog (`GET /nodes`, the same export as `aios nodes --json`): port kinds, which
 * kinds may feed which, and one manifest per node type with the JSON Schema of its config.
 * The palette, the nodes drawn on the canvas and the configuration forms render from it.
 */
import { useQuery } from "@tanstack/react-query";
import { api } from "../../api/client";

export type PortKind = "frames" | "detections" | "event" | "data" | (string & {});
export type NodeCategory = "input" | "processing" | "logic" | "output" | (string & {});

/** One input or output of a node type. `name` is the handle id on the canvas. */
export interface PortSpec {
  name: string;
  kind: PortKind;
  title: string;
  description: string;
  required: boolean;
  /** Inputs: whether more than one edge may arrive at this port. */
  multiple: boolean;
}

/** JSON Schema, as the catalog publishes it (draft 2020-12 subset written by pydantic). */
export type JsonSchema = Record<string, unknown> & {
  properties?: Record<string, JsonSchema>;
  required?: string[];
  default?: unknown;
};

/** One node type of the catalog. */
export interface NodeManifest {
  type: string;
  category: NodeCategory;
  tier: string;
  title: string;
  description: string;
  /** A lucide icon name, e.g. "chart-line". */
  icon: string;
  inputs: PortSpec[];
  outputs: PortSpec[];
  config_schema: JsonSchema;
  requires_any_input?: boolean;
  event_role?: string | null;
  [key: string]: unknown;
}

export interface NodeCatalog {
  schema_version?: number;
  port_kinds: PortKind[];
  /** Source port kind → target port kinds it may connect to. */
  compatible_kinds: Record<string, string[]>;
  nodes: NodeManifest[];
}

/** The order categories are shown in the palette, with their headings. */
export const CATEGORIES: { id: NodeCategory; title: string }[] = [
  { id: "input", title: "Inputs" },
  { id: "processing", title: "Processing" },
  { id: "logic", title: "Logic" },
  { id: "output", title: "Outputs" },
];

/** The catalog, fetched once per session (it only changes with the server's version). */
export function useCatalog() {
  return useQuery({
    queryKey: ["nodes"],
    queryFn: () => api<NodeCatalog>("/nodes"),
    staleTime: Infinity,
  });
}

/** Manifests by type id. */
export function manifestIndex(catalog: NodeCatalog | undefined): Map<string, NodeManifest> {
  return new Map((catalog?.nodes ?? []).map((m) => [m.type, m]));
}

/** Node types grouped by category in palette order (unknown categories last), each group
 *  sorted by title; `search` filters on title, type id and description (case-insensitive). */
export function groupByCategory(
  nodes: NodeManifest[],
  search = "",
): { id: NodeCategory; title: string; nodes: NodeManifest[] }[] {
  const needle = search.trim().toLowerCase();
  const matches = nodes.filter(
    (m) =>
      !needle ||
      m.title.toLowerCase().includes(needle) ||
      m.type.toLowerCase().includes(needle) ||
      m.description.toLowerCase().includes(needle),
  );
  const known = CATEGORIES.map((c) => c.id);
  const extra = [...new Set(matches.map((m) => m.category))].filter((c) => !known.includes(c)).sort();
  const groups = [
    ...CATEGORIES,
    ...extra.map((id) => ({ id, title: id.charAt(0).toUpperCase() + id.slice(1) })),
  ];
  return groups
    .map((g) => ({
      ...g,
      nodes: matches.filter((m) => m.category === g.id).sort((a, b) => a.title.localeCompare(b.title)),
    }))
    .filter((g) => g.nodes.length > 0);
}
