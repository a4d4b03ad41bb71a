import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import catalogJson from "./__fixtures__/catalog.json";
import type { CatalogNode, NodeCatalog } from "./catalog";
import { NodeConfigDialog } from "./NodeConfigDialog";
import { normalizeSchema } from "./schema";

const catalog = catalogJson as unknown as NodeCatalog;

function manifest(type: string): CatalogNode {
  const m = catalog.nodes.find((n) => n.type === type);
  if (!m) throw new Error(`no ${type} in the fixture`);
  return m;
}

/** The label a top-level property is shown with. */
function labelOf(schema: Record<string, unknown>, key: string): string {
  const prop = (schema.properties as Record<string, Record<string, unknown>>)[key];
  return (prop.title as string | undefined) ?? key;
}

afterEach(() => vi.restoreAllMocks());

describe("NodeConfigDialog", () => {
  it("the fixture holds the whole catalog", () => {
    expect(catalog.nodes.length).toBeGreaterThanOrEqual(27);
    for (const t of ["aios/zone@1", "aios/line_crossing@1", "aios/camera.device@1", "aios/whatsapp@1"]) expect(manifest(t).config_schema).toBeTruthy();
  });

  it.each(catalog.nodes.map((n) => [n.type, n] as const))("renders the form of %s with every field's label", (_type, m) => {
    const errors = vi.spyOn(console, "error");
    render(<NodeConfigDialog open onClose={() => {}} node={{ id: "n1", type: m.type, config: {} }} manifest={m} onSave={() => {}} />);
    const dialog = screen.getByRole("dialog");
    expect(within(dialog).getByText(m.description)).toBeInTheDocument();
    const { schema } = normalizeSchema(m.config_schema);
    const keys = Object.keys((schema.properties as object | undefined) ?? {});
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      expect(within(dialog).getAllByText(labelOf(schema, key), { exact: true }).length, `${m.type} ${key}`).toBeGreaterThan(0);
    }
    expect(errors).not.toHaveBeenCalled();
  });

  it("draws a zone on the image, closes it and saves it in normalized coordinates", { timeout: 30000 }, async () => {
    const onSave = vi.fn();
    render(<NodeConfigDialog open onClose={() => {}} node={{ id: "zone1", type: "aios/zone@1", config: { name: "dock" } }} manifest={manifest("aios/zone@1")} onSave={onSave} />);
    const area = screen.getByRole("application", { name: /Drawing area: Polygon/ });
    vi.spyOn(area, "getBoundingClientRect").mockReturnValue({ left: 0, top: 0, width: 800, height: 450, right: 800, bottom: 450, x: 0, y: 0, toJSON: () => ({}) });
    for (const [x, y] of [[80, 45], [720, 45], [720, 405], [80, 405]]) fireEvent.pointerDown(area, { clientX: x, clientY: y, button: 0, pointerId: 1 });
    expect(screen.getByText(/then the first point or Enter to close/)).toBeInTheDocument();
    fireEvent.keyDown(area, { key: "Enter" });
    expect(screen.getByText(/Drag a point to move it/)).toBeInTheDocument();
    // Drag the third point.
    fireEvent.pointerDown(screen.getByTestId("vertex-2"), { clientX: 720, clientY: 405, button: 0, pointerId: 1 });
    fireEvent.pointerMove(area, { clientX: 760, clientY: 427.5, pointerId: 1 });
    fireEvent.pointerUp(area, { pointerId: 1 });
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    expect(onSave).toHaveBeenCalledTimes(1);
    expect(onSave.mock.calls[0][0]).toEqual({ name: "dock", polygon: [[0.1, 0.1], [0.9, 0.1], [0.95, 0.95], [0.1, 0.9]] });
  });

  it("refuses to save an invalid config and shows why on the field", { timeout: 30000 }, async () => {
    const onSave = vi.fn();
    render(<NodeConfigDialog open onClose={() => {}} node={{ id: "zone1", type: "aios/zone@1", config: { polygon: [[0.1, 0.1], [0.5, 0.5]] } }} manifest={manifest("aios/zone@1")} onSave={onSave} />);
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    expect(onSave).not.toHaveBeenCalled();
    expect(screen.getAllByText(/needs at least 3 item/).length).toBeGreaterThan(0);
    expect(screen.getByText("Polygon: needs at least 3 item(s)")).toBeInTheDocument();
  });

  it("edits a line through the coordinates and saves it", { timeout: 30000 }, async () => {
    const onSave = vi.fn();
    render(<NodeConfigDialog open onClose={() => {}} node={{ id: "l1", type: "aios/line_crossing@1", config: { line: [[0.1, 0.5], [0.9, 0.5]] } }} manifest={manifest("aios/line_crossing@1")} onSave={onSave} />);
    expect(screen.getByTestId("line-direction")).toBeInTheDocument();
    const endY = screen.getByLabelText("End y");
    fireEvent.change(endY, { target: { value: "0.75" } });
    await userEvent.click(screen.getByRole("button", { name: "Swap direction" }));
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    expect(onSave.mock.calls[0][0]).toEqual({ line: [[0.9, 0.75], [0.1, 0.5]] });
  });

  it("names a missing required field by its title", { timeout: 30000 }, async () => {
    const onSave = vi.fn();
    render(<NodeConfigDialog open onClose={() => {}} node={{ id: "cam", type: "aios/camera.device@1", config: {} }} manifest={manifest("aios/camera.device@1")} onSave={onSave} />);
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    expect(onSave).not.toHaveBeenCalled();
    expect(screen.getByText("Camera: is required")).toBeInTheDocument();
  });

  it("shows secret names, never asks for the secret", () => {
    render(<NodeConfigDialog open onClose={() => {}} node={{ id: "wa", type: "aios/whatsapp@1", config: { access_token_secret: "site_whatsapp" } }} manifest={manifest("aios/whatsapp@1")} onSave={() => {}} />);
    const input = screen.getByLabelText("Access token secret") as HTMLInputElement;
    expect(input.value).toBe("site_whatsapp");
    expect(input.type).toBe("text");
  });

  it("read only: every input disabled and no Save", () => {
    render(<NodeConfigDialog open readOnly onClose={() => {}} node={{ id: "c", type: "aios/counter@1", config: { name: "people" } }} manifest={manifest("aios/counter@1")} onSave={() => {}} />);
    expect(screen.queryByRole("button", { name: "Save" })).toBeNull();
    expect(screen.getByLabelText("Counter name")).toBeDisabled();
    expect(screen.getAllByRole("button", { name: "Close" }).map((b) => b.textContent)).toContain("Close");
  });

  it("shows the API's issues on their fields and at the top", () => {
    render(
      <NodeConfigDialog
        open
        onClose={() => {}}
        node={{ id: "cam", type: "aios/camera.rtsp@1", config: { host: "cam.local" } }}
        manifest={manifest("aios/camera.rtsp@1")}
        onSave={() => {}}
        errors={[{ path: ["port"], message: "port refused by the server" }, { path: [], message: "give url or host, not both" }]}
      />,
    );
    expect(screen.getByText("port refused by the server")).toBeInTheDocument();
    expect(screen.getByText("give url or host, not both")).toBeInTheDocument();
  });

  it("Escape closes the dialog", () => {
    const onClose = vi.fn();
    render(<NodeConfigDialog open onClose={onClose} node={{ id: "c", type: "aios/counter@1", config: {} }} manifest={manifest("aios/counter@1")} onSave={() => {}} />);
    fireEvent.keyDown(screen.getByLabelText("Counter name"), { key: "Escape" });
    expect(onClose).toHaveBeenCalled();
  });

  it("draws over the fleet camera's snapshot", async () => {
    const fetchMock = vi.fn(async (_input: RequestInfo | URL, _init?: RequestInit) => new Response(new Uint8Array([0xff, 0xd8, 0xff]), { status: 200, headers: { "Content-Type": "image/jpeg" } }));
    vi.stubGlobal("fetch", fetchMock);
    const created = vi.fn(() => "blob:snapshot");
    const revoked = vi.fn();
    Object.assign(URL, { createObjectURL: created, revokeObjectURL: revoked });
    const view = render(
      <NodeConfigDialog
        open
        onClose={() => {}}
        node={{ id: "zone1", type: "aios/zone@1", config: {} }}
        manifest={manifest("aios/zone@1")}
        onSave={() => {}}
        pipelineNodes={[{ id: "cam1", type: "aios/camera.device@1", config: { device_id: "cam-1" } }, { id: "zone1", type: "aios/zone@1", config: {} }]}
      />,
    );
    await waitFor(() => expect(screen.getByTestId("zone-drawing").dataset.snapshot).not.toBe("loading"));
    expect(screen.getByTestId("zone-drawing").dataset.snapshot, screen.queryByRole("note")?.textContent ?? "").toBe("ready");
    expect(screen.getByAltText("Camera snapshot")).toHaveAttribute("src", "blob:snapshot");
    expect(fetchMock.mock.calls[0][0]).toBe("/api/v1/devices/cam-1/snapshot");
    view.unmount();
    expect(revoked).toHaveBeenCalledWith("blob:snapshot");
    vi.unstubAllGlobals();
  });

  it("draws on a blank frame with a notice when the camera gives no snapshot", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => new Response(JSON.stringify({ error: { code: "unreachable", message: "camera offline" } }), { status: 503, headers: { "Content-Type": "application/json" } })));
    render(
      <NodeConfigDialog
        open
        onClose={() => {}}
        node={{ id: "l1", type: "aios/line_crossing@1", config: {} }}
        manifest={manifest("aios/line_crossing@1")}
        onSave={() => {}}
        camera={{ type: "aios/camera.rtsp@1", config: { host: "10.0.0.9", username: "admin", password: "p@ss" } }}
      />,
    );
    expect(await screen.findByText(/No snapshot \(camera offline\)/)).toBeInTheDocument();
    expect(screen.queryByAltText("Camera snapshot")).toBeNull();
    vi.unstubAllGlobals();
  });
});
