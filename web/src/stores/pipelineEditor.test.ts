import { beforeEach, describe, expect, it } from "vitest";
import intrusion from "../../../examples/pipelines/intrusion.json";
import type { PipelineDocument } from "../components/pipeline/document";
import { TEST_CATALOG } from "../components/pipeline/testCatalog";
import { usePipelineEditor } from "./pipelineEditor";

const store = () => usePipelineEditor.getState();
const doc = () => JSON.parse(JSON.stringify(intrusion)) as PipelineDocument;

beforeEach(() => {
  store().reset();
  store().setCatalog(TEST_CATALOG);
});

describe("pipeline editor store", () => {
  it("loads a document clean and gives it back unchanged", () => {
    store().load(doc(), { pipelineId: "pl-1", latestRevision: 3 });
    expect(store().dirty).toBe(false);
    expect(store().pipelineId).toBe("pl-1");
    expect(store().latestRevision).toBe(3);
    expect(store().shownRevision).toBe(3);
    expect(store().nodes).toHaveLength(11);
    expect(store().document()).toEqual(doc());
  });

  it("does not count selection or measuring as an edit", () => {
    store().load(doc());
    store().onNodesChange([{ type: "select", id: "camera", selected: true }]);
    store().onNodesChange([{ type: "dimensions", id: "camera", dimensions: { width: 100, height: 40 } }]);
    store().onEdgesChange([{ type: "select", id: "e1", selected: true }]);
    expect(store().dirty).toBe(false);
    expect(store().nodes.find((n) => n.id === "camera")?.selected).toBe(true);
    store().onNodesChange([{ type: "position", id: "camera", position: { x: 10, y: 20 } }]);
    expect(store().dirty).toBe(true);
    expect(store().document().nodes[0].position).toEqual({ x: 10, y: 20 });
  });

  it("adds nodes with unique ids and the schema's defaults", () => {
    const a = store().addNode("aios/camera.rtsp@1", { x: 10.4, y: 20.6 });
    const b = store().addNode("aios/camera.rtsp@1", { x: 0, y: 0 });
    expect([a, b]).toEqual(["camera_rtsp", "camera_rtsp_2"]);
    expect(store().dirty).toBe(true);
    const first = store().document().nodes[0];
    expect(first).toEqual({ id: "camera_rtsp", type: "aios/camera.rtsp@1", config: { port: 554, path: "/" }, position: { x: 10, y: 21 } });
  });

  it("connects compatible ports and refuses the rest without changing the graph", () => {
    store().addNode("aios/camera.rtsp@1", { x: 0, y: 0 });
    store().addNode("aios/object_detection@1", { x: 200, y: 0 });
    store().addNode("aios/whatsapp@1", { x: 400, y: 0 });
    expect(store().connect({ source: "camera_rtsp", sourceHandle: "frames", target: "object_detection", targetHandle: "frames" })).toBeNull();
    expect(store().connect({ source: "camera_rtsp", sourceHandle: "frames", target: "whatsapp", targetHandle: "events" })).toMatch(
      /cannot connect to/,
    );
    expect(store().connect({ source: "camera_rtsp", sourceHandle: "frames", target: "object_detection", targetHandle: "frames" })).toMatch(
      /already connected/,
    );
    expect(store().connect({ source: "whatsapp", sourceHandle: "events", target: "whatsapp", targetHandle: "events" })).toMatch(/itself/);
    expect(store().edges).toHaveLength(1);
    expect(store().document().edges).toEqual([
      { id: "e1", source: "camera_rtsp", sourceHandle: "frames", target: "object_detection", targetHandle: "frames" },
    ]);
  });

  it("removes nodes with their edges, and selected elements", () => {
    store().load(doc());
    store().removeElements(["restricted"], []);
    expect(store().nodes.some((n) => n.id === "restricted")).toBe(false);
    expect(store().edges.some((e) => e.source === "restricted" || e.target === "restricted")).toBe(false);
    expect(store().edges).toHaveLength(8);
    expect(store().dirty).toBe(true);

    store().load(doc());
    store().onEdgesChange([{ type: "select", id: "e1", selected: true }]);
    store().onNodesChange([{ type: "select", id: "dashboard", selected: true }]);
    store().removeSelected();
    expect(store().edges.map((e) => e.id)).toEqual(["e2", "e3", "e4", "e6", "e7", "e8", "e9", "e10"]);
    expect(store().nodes).toHaveLength(10);

    store().load(doc());
    store().onNodesChange([{ type: "remove", id: "camera" }]);
    expect(store().edges.some((e) => e.source === "camera")).toBe(false);
  });

  it("updates a node's config and the name", () => {
    store().load(doc(), { pipelineId: "pl-1", latestRevision: 1 });
    store().updateNodeConfig("detect", { classes: ["car"] });
    store().setName("New name");
    const out = store().document();
    expect(out.name).toBe("New name");
    expect(out.nodes.find((n) => n.id === "detect")?.config).toEqual({ classes: ["car"] });
    expect(out.nodes.find((n) => n.id === "camera")?.config).toEqual(doc().nodes[0].config);
    expect(store().dirty).toBe(true);
  });

  it("places validation errors by node and edge, and clears them on load", () => {
    store().load(doc());
    store().setIssues([
      { code: "invalid_config", message: "Field required", node_id: "restricted", path: ["config", "polygon"], location: "node 'restricted' config.polygon" },
      { code: "incompatible_ports", message: "bad", edge_id: "e3", edge_index: 2, location: "edge 'e3'" },
    ]);
    expect(store().issueIndex.byNode.restricted).toHaveLength(1);
    expect(store().issueIndex.byEdge.e3).toHaveLength(1);
    store().load(doc());
    expect(store().issues).toBeNull();
    expect(store().issueIndex.byNode).toEqual({});
  });

  it("marks saved with the new revision", () => {
    store().addNode("aios/zone@1", { x: 0, y: 0 });
    expect(store().dirty).toBe(true);
    store().markSaved("pl-9", 1);
    expect(store()).toMatchObject({ dirty: false, pipelineId: "pl-9", latestRevision: 1, shownRevision: 1 });
  });

  it("shows an older revision as unsaved, based on the latest", () => {
    store().load(doc(), { pipelineId: "pl-1", latestRevision: 5, shownRevision: 2, dirty: true });
    expect(store()).toMatchObject({ latestRevision: 5, shownRevision: 2, dirty: true });
  });

  it("resets to an empty document", () => {
    store().load(doc(), { pipelineId: "pl-1", latestRevision: 5 });
    store().setCounters({ frames: { camera: 3 } });
    store().reset("Fresh");
    expect(store().document()).toEqual({ schemaVersion: 1, name: "Fresh", description: "", metadata: {}, nodes: [], edges: [] });
    expect(store()).toMatchObject({ pipelineId: null, latestRevision: null, dirty: false, counters: null });
  });
});
