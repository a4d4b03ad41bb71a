import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import type { ReactNode } from "react";
import { MemoryRouter } from "react-router-dom";
import { useAuth } from "../stores/auth";
import DocumentationPage from "./Documentation";
import SettingsPage from "./Settings";

function signInAs(role: "admin" | "operator" | "viewer") {
  useAuth.getState().setTokens({
    access_token: "a",
    refresh_token: "r",
    token_type: "Bearer",
    expires_in: 900,
    refresh_expires_at: "2030-01-01T00:00:00Z",
    user: { id: "u1", username: role, display_name: "", email: null, role, disabled: false, locked_until: null, created_at: "", updated_at: "", version: 1 },
  } as never);
}

function wrap(ui: ReactNode) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return render(
    <QueryClientProvider client={client}>
      <MemoryRouter>{ui}</MemoryRouter>
    </QueryClientProvider>,
  );
}

const json = (body: unknown) => new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" } });

describe("Settings tabs by role", { timeout: 20_000 }, () => {
  beforeEach(() => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) => {
        if (url.startsWith("/api/v1/users")) {
          return json({ items: [{ id: "u1", username: "admin", display_name: "Admin", email: null, role: "admin", disabled: false, locked_until: "2099-01-01T00:00:00Z", created_at: "", updated_at: "", version: 1 }] });
        }
        return json({ items: [] });
      }),
    );
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    useAuth.getState().signOutLocally();
  });

  it("shows administrators every section, users first, with lockouts", async () => {
    signInAs("admin");
    wrap(<SettingsPage />);
    const tabs = within(screen.getByRole("tablist")).getAllByRole("tab").map((t) => t.textContent);
    expect(tabs).toEqual(["Users and roles", "Integrations", "Alert policies", "Backup and restore", "Audit log"]);
    expect(await screen.findByText(/Locked until/)).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "New user" })).toBeInTheDocument();
  });

  it("shows a viewer a notice, no admin sections and no edit controls", async () => {
    signInAs("viewer");
    wrap(<SettingsPage />);
    const tabs = within(screen.getByRole("tablist")).getAllByRole("tab").map((t) => t.textContent);
    expect(tabs).toEqual(["Alert policies"]);
    expect(screen.getByTestId("admin-notice")).toHaveTextContent("Viewer");
    expect(await screen.findByText("No alert rules yet.")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "New alert rule" })).toBeNull();
  });

  it("lets an operator add alert rules", async () => {
    signInAs("operator");
    wrap(<SettingsPage />);
    fireEvent.click(screen.getByRole("tab", { name: "Alert policies" }));
    expect(await screen.findByRole("button", { name: "New alert rule" })).toBeInTheDocument();
  });
});

describe("Users and roles", { timeout: 20_000 }, () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    useAuth.getState().signOutLocally();
  });

  it("changes a role and disables an account with the version read, and shows API field errors on the form", async () => {
    const bob = { id: "u2", username: "bob", display_name: "Bob", email: "bob@x.io", role: "operator", disabled: false, locked_until: null, created_at: "", updated_at: "", version: 3 };
    const sent: { method: string; url: string; body: unknown }[] = [];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init: RequestInit = {}) => {
        const method = init.method ?? "GET";
        if (method !== "GET") sent.push({ method, url, body: JSON.parse(String(init.body)) });
        if (method === "PUT") return json({ ...bob, role: "viewer", disabled: true, version: 4 });
        if (method === "POST") {
          return new Response(
            JSON.stringify({ error: { code: "validation_error", message: "invalid", details: [{ field: "body.email", message: "String should match pattern" }] } }),
            { status: 422, headers: { "Content-Type": "application/json" } },
          );
        }
        return json({ items: [bob] });
      }),
    );
    signInAs("admin");
    wrap(<SettingsPage />);
    fireEvent.click(await screen.findByRole("button", { name: "Edit bob" }));
    const dialog = screen.getByRole("dialog", { name: "Edit bob" });
    fireEvent.change(within(dialog).getByRole("combobox"), { target: { value: "viewer" } });
    fireEvent.click(within(dialog).getByRole("checkbox"));
    fireEvent.click(within(dialog).getByRole("button", { name: "Save" }));
    await waitFor(() => expect(sent).toHaveLength(1));
    expect(sent[0]).toEqual({ method: "PUT", url: "/api/v1/users/u2", body: { version: 3, role: "viewer", disabled: true } });
    await waitFor(() => expect(screen.queryByRole("dialog")).toBeNull());

    // the API's field errors land on the create form's fields
    fireEvent.click(screen.getByRole("button", { name: "New user" }));
    const create = screen.getByRole("dialog", { name: "New user" });
    fireEvent.change(within(create).getByLabelText(/^Username/), { target: { value: "carol" } });
    fireEvent.change(within(create).getByLabelText(/^E-mail/), { target: { value: "carol@x" } });
    fireEvent.change(within(create).getByLabelText(/^Initial password/), { target: { value: "long-enough-1" } });
    fireEvent.click(within(create).getByRole("button", { name: "Create user" }));
    expect(await within(create).findByText("String should match pattern")).toBeInTheDocument();
    expect(sent[1]).toMatchObject({ method: "POST", url: "/api/v1/users", body: { username: "carol", email: "carol@x", role: "viewer" } });
  });
});

describe("Documentation", () => {
  it("renders the guide with anchored headings, contents and the API reference outside the console", () => {
    const { container } = wrap(<DocumentationPage />);
    const heading = container.querySelector("h2#fleet-management");
    expect(heading).toHaveTextContent("Fleet Management");
    const contents = container.querySelector('nav[aria-label="Contents"]');
    expect(contents?.querySelector('a[href="#fleet-management"]')).toHaveTextContent("Fleet Management");
    expect(contents?.querySelector('a[href="/docs"]')).toHaveTextContent("API reference");
    // every entry of the contents has its heading
    for (const link of contents?.querySelectorAll('a[href^="#"]') ?? []) {
      expect(container.querySelector(link.getAttribute("href") ?? "")).not.toBeNull();
    }
    expect(container.querySelectorAll("article table").length).toBeGreaterThan(3);
  }, 30_000);
});
