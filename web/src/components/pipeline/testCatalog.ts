/** A small node catalog for unit tests, in the shape `GET /nodes` returns (a subset of the
 *  real catalog's types, ports and kinds). */
import type { NodeCatalog, NodeManifest, PortSpec } from "./catalog";

const p = (name: string, kind: string, title: string, multiple = false): PortSpec => ({
  name,
  kind,
  title,
  description: `${title} port`,
  required: true,
  multiple,
});

const node = (
  type: string,
  category: string,
  title: string,
  icon: string,
  inputs: PortSpec[],
  outputs: PortSpec[],
  properties: Record<string, Record<string, unknown>> = {},
  required: string[] = [],
): NodeManifest => ({
  type,
  category,
  tier: "stream",
  title,
  description: `${title} node`,
  icon,
  inputs,
  outputs,
  config_schema: { type: "object", properties, required },
});

export const TEST_CATALOG: NodeCatalog = {
  schema_version: 1,
  port_kinds: ["frames", "detections", "event", "data"],
  compatible_kinds: {
    frames: ["detections", "frames"],
    detections: ["detections"],
    event: ["event"],
    data: ["data"],
  },
  nodes: [
    node("aios/camera.rtsp@1", "input", "Camera RTSP", "cctv", [], [p("frames", "frames", "Frames")], {
      url: { anyOf: [{ type: "string" }, { type: "null" }], default: null },
      port: { type: "integer", default: 554 },
      path: { type: "string", default: "/" },
    }),
    node("aios/file.input@1", "input", "File Input", "file-video", [], [p("frames", "frames", "Frames")], {
      path: { type: "string" },
      realtime: { type: "boolean", default: false },
    }, ["path"]),
    node("aios/object_detection@1", "processing", "Object Detection", "scan-search", [p("frames", "frames", "Frames")], [
      p("detections", "detections", "Detections"),
    ], {
      classes: { type: "array", items: { type: "string" } },
      min_confidence: { type: "number", default: 0.35 },
    }),
    node("aios/zone@1", "logic", "Zone", "square-dashed", [p("detections", "detections", "Detections")], [
      p("inside", "detections", "Inside"),
      p("events", "event", "Events"),
    ], {
      name: { type: "string", default: "zone" },
      polygon: { type: "array" },
      evidence: { $ref: "#/$defs/EvidenceConfig" },
    }, ["polygon"]),
    node("aios/conditional@1", "logic", "Conditional", "git-branch", [p("events", "event", "Events", true)], [
      p("true", "event", "True"),
      p("false", "event", "False"),
    ], { match: { type: "string", default: "all" }, conditions: { type: "array" } }),
    node("aios/whatsapp@1", "output", "WhatsApp", "message-circle", [p("events", "event", "Events", true)], [], {
      cooldown_seconds: { type: "number", default: 60 },
      recipients: { type: "array" },
    }),
    node("aios/sensor.data@1", "input", "Sensor Data", "thermometer", [], [p("events", "event", "Events")]),
    node("aios/custom@1", "experimental", "Custom thing", "no-such-icon", [p("in", "data", "In")], []),
  ],
};
