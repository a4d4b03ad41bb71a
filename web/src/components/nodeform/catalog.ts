/**
 * The node catalog as served by `GET /api/v1/nodes` (and printed by `aios nodes --json`):
 * one manifest per node type, with its ports and the JSON Schema of its configuration.
 */

/** What flows on an edge; an edge joins compatible kinds only (see `compatible_kinds`). */
export type PortKind = "frames" | "detections" | "event" | "data";

export interface CatalogPort {
  name: string;
  kind: PortKind | string;
  title: string;
  description: string;
  /** An input the node cannot run without. */
  required: boolean;
  /** Several edges may end (inputs) or start (outputs) here. */
  multiple: boolean;
}

/** A JSON Schema object (pydantic's output: `$defs`, `anyOf [T, null]`, `prefixItems`…). */
export type JsonSchema = Record<string, unknown>;

export interface CatalogNode {
  /** Versioned type id, e.g. `aios/zone@1`. */
  type: string;
  /** Palette group. */
  category: "input" | "processing" | "logic" | "output" | string;
  /** `stream`: per frame in a stream worker; `event`: per event in the event workflow. */
  tier: "stream" | "event" | string;
  title: string;
  description: string;
  /** A lucide icon name in kebab case, e.g. `chart-line`. */
  icon: string;
  inputs: CatalogPort[];
  outputs: CatalogPort[];
  /** The node needs at least one input edge even if no single input is required. */
  requires_any_input?: boolean;
  /** Role in the event workflow (`processor`, `action`…), null for stream nodes. */
  event_role?: string | null;
  /** JSON Schema of the node's `config` object. */
  config_schema: JsonSchema;
}

/** The whole answer of `GET /api/v1/nodes`. */
export interface NodeCatalog {
  schema_version: number;
  port_kinds: string[];
  /** For each output kind, the input kinds it may connect to. */
  compatible_kinds: Record<string, string[]>;
  nodes: CatalogNode[];
}

/** A node of a pipeline document, as the editor holds it. */
export interface PipelineNodeLike {
  id: string;
  type: string;
  config: Record<string, unknown>;
}

/** Find a node type's manifest in the catalog (undefined when the type is unknown). */
export function findCatalogNode(catalog: NodeCatalog | undefined, type: string): CatalogNode | undefined {
  return catalog?.nodes.find((n) => n.type === type);
}

/** Whether an output of kind `from` may feed an input of kind `to`. */
export function kindsCompatible(catalog: Pick<NodeCatalog, "compatible_kinds">, from: string, to: string): boolean {
  return (catalog.compatible_kinds[from] ?? []).includes(to);
}

/** Node types that produce camera frames and that a snapshot can be taken from. */
export const CAMERA_TYPES = ["aios/camera.device@1", "aios/camera.rtsp@1", "aios/camera.webcam@1", "aios/file.input@1"];

/** Whether a node type is a video source (a camera or a video file). */
export function isCameraType(type: string): boolean {
  return CAMERA_TYPES.includes(type) || /^aios\/camera\./.test(type);
}
