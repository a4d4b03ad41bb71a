import { describe, expect, it } from "vitest";
import intrusion from "../../../../examples/pipelines/intrusion.json";
import {
  connectionProblem,
  defaultConfig,
  documentToFlow,
  flowToDocument,
  idBase,
  indexIssues,
  kindsCompatible,
  uniqueEdgeId,
  uniqueNodeId,
  type FlowEdge,
  type FlowNode,
  type PipelineDocument,
} from "./document";
import { groupByCategory } from "./catalog";
import { TEST_CATALOG } from "./testCatalog";

const node = (id: string, nodeType: string): FlowNode => ({
  id,
  type: "pipeline",
  position: { x: 0, y: 0 },
  data: { nodeType, config: {} },
});

const edge = (id: string, source: string, sourceHandle: string, target: string, targetHandle: string): FlowEdge => ({
  id,
  source,
  sourceHandle,
  target,
  targetHandle,
  data: { docId: id },
});

describe("document ↔ flow", () => {
  it("round-trips the shipped intrusion pipeline unchanged", () => {
    const doc = intrusion as unknown as PipelineDocument;
    const { meta, nodes, edges } = documentToFlow(doc);
    expect(nodes).toHaveLength(doc.nodes.length);
    expect(edges).toHaveLength(doc.edges.length);
    expect(nodes[0]).toMatchObject({ id: "camera", type: "pipeline", position: { x: 0, y: 160 } });
    expect(nodes[0].data).toMatchObject({ nodeType: "aios/file.input@1", label: "Courtyard camera" });
    expect(edges[0]).toMatchObject({ id: "e1", source: "camera", sourceHandle: "frames", target: "motion", targetHandle: "frames" });
    expect(flowToDocument(meta, nodes, edges)).toEqual(doc);
  });

  it("round-trips what the API stores (explicit nulls, edges without ids, no labels)", () => {
    const stored: PipelineDocument = {
      schemaVersion: 1,
      name: "Door",
      description: "",
      metadata: { site: "north", tags: ["a"] },
      nodes: [
        { id: "cam", type: "aios/camera.rtsp@1", label: null, config: { url: "rtsp://cam/1" }, position: { x: 1.5, y: -2 } },
        { id: "det", type: "aios/object_detection@1", config: {}, position: { x: 200, y: 0 } },
      ],
      edges: [
        { id: null, source: "cam", sourceHandle: "frames", target: "det", targetHandle: "frames" },
        { source: "cam", sourceHandle: "frames", target: "det", targetHandle: "frames" },
      ],
    };
    const { meta, nodes, edges } = documentToFlow(stored);
    expect(new Set(edges.map((e) => e.id)).size).toBe(2);
    const back = flowToDocument(meta, nodes, edges);
    expect(back).toEqual(stored);
    expect("label" in back.nodes[1]).toBe(false);
    expect("id" in back.edges[1]).toBe(false);
    expect(back.edges[0].id).toBeNull();
  });

  it("keeps the loaded document independent of later edits", () => {
    const doc = JSON.parse(JSON.stringify(intrusion)) as PipelineDocument;
    const { nodes } = documentToFlow(doc);
    (nodes[0].data.config as Record<string, unknown>).path = "other.avi";
    expect(doc.nodes[0].config.path).toBe("asset:vtest.avi");
  });

  it("writes edits: moved node, new edge id, changed config", () => {
    const doc = JSON.parse(JSON.stringify(intrusion)) as PipelineDocument;
    const { meta, nodes, edges } = documentToFlow(doc);
    nodes[1] = { ...nodes[1], position: { x: 5, y: 6 } };
    nodes[2] = { ...nodes[2], data: { ...nodes[2].data, config: { classes: ["car"] } } };
    const extra = edge("e12", "restricted", "events", "whatsapp", "events");
    const back = flowToDocument({ ...meta, name: "Renamed" }, nodes, [...edges, extra]);
    expect(back.name).toBe("Renamed");
    expect(back.nodes[1].position).toEqual({ x: 5, y: 6 });
    expect(back.nodes[2].config).toEqual({ classes: ["car"] });
    expect(back.edges.at(-1)).toEqual({ id: "e12", source: "restricted", sourceHandle: "events", target: "whatsapp", targetHandle: "events" });
    expect(back.metadata).toEqual(doc.metadata);
  });
});

describe("connections", () => {
  const nodes = [
    node("cam", "aios/camera.rtsp@1"),
    node("det", "aios/object_detection@1"),
    node("zone", "aios/zone@1"),
    node("cond", "aios/conditional@1"),
    node("wa", "aios/whatsapp@1"),
  ];

  it("follows the catalog's compatible kinds", () => {
    expect(kindsCompatible(TEST_CATALOG, "frames", "detections")).toBe(true);
    expect(kindsCompatible(TEST_CATALOG, "frames", "event")).toBe(false);
    expect(kindsCompatible(TEST_CATALOG, "detections", "frames")).toBe(false);
    expect(kindsCompatible(TEST_CATALOG, "nope", "event")).toBe(false);
  });

  it("accepts compatible ports", () => {
    const c = { source: "cam", sourceHandle: "frames", target: "det", targetHandle: "frames" };
    expect(connectionProblem(c, nodes, [], TEST_CATALOG)).toBeNull();
    const z = { source: "zone", sourceHandle: "events", target: "cond", targetHandle: "events" };
    expect(connectionProblem(z, nodes, [], TEST_CATALOG)).toBeNull();
  });

  it("refuses incompatible kinds, naming both ends", () => {
    const c = { source: "cam", sourceHandle: "frames", target: "wa", targetHandle: "events" };
    expect(connectionProblem(c, nodes, [], TEST_CATALOG)).toBe(
      "Camera RTSP · Frames (frames) cannot connect to WhatsApp · Events (event).",
    );
    const d = { source: "zone", sourceHandle: "inside", target: "cond", targetHandle: "events" };
    expect(connectionProblem(d, nodes, [], TEST_CATALOG)).toMatch(/cannot connect to/);
  });

  it("refuses self loops, duplicates, unknown ports and a second edge into a single input", () => {
    expect(connectionProblem({ source: "cond", sourceHandle: "true", target: "cond", targetHandle: "events" }, nodes, [], TEST_CATALOG)).toMatch(
      /itself/,
    );
    const existing = [edge("e1", "cam", "frames", "det", "frames")];
    expect(connectionProblem({ source: "cam", sourceHandle: "frames", target: "det", targetHandle: "frames" }, nodes, existing, TEST_CATALOG)).toMatch(
      /already connected/,
    );
    const other = [...nodes, node("cam2", "aios/camera.rtsp@1")];
    expect(connectionProblem({ source: "cam2", sourceHandle: "frames", target: "det", targetHandle: "frames" }, other, existing, TEST_CATALOG)).toMatch(
      /one connection only/,
    );
    expect(connectionProblem({ source: "cam", sourceHandle: "nope", target: "det", targetHandle: "frames" }, nodes, [], TEST_CATALOG)).toMatch(
      /no output 'nope'/,
    );
    expect(connectionProblem({ source: "cam", sourceHandle: "frames", target: "ghost", targetHandle: "frames" }, nodes, [], TEST_CATALOG)).toMatch(
      /must be nodes/,
    );
  });

  it("allows fan-in where the input takes several edges", () => {
    const existing = [edge("e1", "zone", "events", "wa", "events")];
    expect(connectionProblem({ source: "cond", sourceHandle: "true", target: "wa", targetHandle: "events" }, nodes, existing, TEST_CATALOG)).toBeNull();
  });
});

describe("new nodes", () => {
  it("makes readable, unique, valid ids", () => {
    expect(idBase("aios/camera.rtsp@1")).toBe("camera_rtsp");
    expect(uniqueNodeId("aios/zone@1", [])).toBe("zone");
    expect(uniqueNodeId("aios/zone@1", ["zone", "zone_2"])).toBe("zone_3");
    expect(uniqueNodeId("weird", ["weird"])).toBe("weird_2");
    for (const id of [uniqueNodeId("aios/camera.rtsp@1", []), uniqueNodeId("x/..@1", [])]) {
      expect(id).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/);
    }
  });

  it("fills the schema's non-null defaults", () => {
    const rtsp = TEST_CATALOG.nodes.find((m) => m.type === "aios/camera.rtsp@1")!;
    expect(defaultConfig(rtsp.config_schema)).toEqual({ port: 554, path: "/" });
    const zone = TEST_CATALOG.nodes.find((m) => m.type === "aios/zone@1")!;
    expect(defaultConfig(zone.config_schema)).toEqual({ name: "zone" });
    expect(defaultConfig(undefined)).toEqual({});
    const schema = { properties: { list: { default: [1, 2] } } };
    const a = defaultConfig(schema);
    (a.list as number[]).push(3);
    expect(defaultConfig(schema)).toEqual({ list: [1, 2] });
  });

  it("numbers new edges past the ones in use", () => {
    expect(uniqueEdgeId([])).toBe("e1");
    expect(uniqueEdgeId([edge("e2", "a", "x", "b", "y")])).toBe("e3");
    expect(uniqueEdgeId([edge("e2", "a", "x", "b", "y"), edge("e3", "a", "x", "b", "y")])).toBe("e4");
  });
});

describe("validation issues", () => {
  it("places issues on nodes, on edges by id or index, and the rest as general", () => {
    const edges = [edge("e1", "cam", "frames", "det", "frames"), { ...edge("edge-2", "det", "detections", "zone", "detections"), data: {} }];
    const index = indexIssues(
      [
        { code: "invalid_config", message: "Field required", node_id: "zone", path: ["config", "polygon"], location: "node 'zone' config.polygon" },
        { code: "incompatible_ports", message: "bad", edge_id: "e1", edge_index: 0, location: "edge" },
        { code: "dangling_edge", message: "gone", edge_id: null, edge_index: 1, location: "edge #1" },
        { code: "no_input", message: "no input node", location: "document" },
        { code: "invalid_config", message: "stale", node_id: "deleted", location: "node 'deleted'" },
      ],
      edges,
      ["cam", "det", "zone"],
    );
    expect(index.byNode.zone.map((i) => i.message)).toEqual(["Field required"]);
    expect(index.byEdge.e1.map((i) => i.message)).toEqual(["bad"]);
    expect(index.byEdge["edge-2"].map((i) => i.message)).toEqual(["gone"]);
    expect(index.general.map((i) => i.message)).toEqual(["no input node", "stale"]);
  });
});

describe("palette groups", () => {
  it("groups by category in palette order, unknown categories last, and searches", () => {
    const groups = groupByCategory(TEST_CATALOG.nodes);
    expect(groups.map((g) => g.id)).toEqual(["input", "processing", "logic", "output", "experimental"]);
    expect(groups[0].nodes.map((n) => n.title)).toEqual(["Camera RTSP", "File Input", "Sensor Data"]);
    expect(groupByCategory(TEST_CATALOG.nodes, "whats").flatMap((g) => g.nodes.map((n) => n.type))).toEqual(["aios/whatsapp@1"]);
    expect(groupByCategory(TEST_CATALOG.nodes, "zone node")).toHaveLength(1);
    expect(groupByCategory(TEST_CATALOG.nodes, "nothing like this")).toEqual([]);
  });
});
