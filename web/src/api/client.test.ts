import { api, ApiError, buildUrl } from "./client";
import { useAuth } from "../stores/auth";

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const tokens = (access: string) => ({
  access_token: access,
  refresh_token: `r-${access}`,
  token_type: "Bearer",
  expires_in: 900,
  refresh_expires_at: "2030-01-01T00:00:00Z",
  user: { id: "u1", username: "admin", display_name: "Admin", email: null, role: "admin", disabled: false, locked_until: null, created_at: "", updated_at: "", version: 1 },
});

describe("api client", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("builds query strings, repeating list values and dropping empty ones", () => {
    expect(buildUrl("/devices", { status: ["online", "warning"], q: "", limit: 50, site: null })).toBe(
      "/api/v1/devices?status=online&status=warning&limit=50",
    );
  });

  it("refreshes once on 401 for concurrent callers and retries with the new token", async () => {
    useAuth.getState().setTokens(tokens("old") as never);
    const seen: string[] = [];
    let refreshes = 0;
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string, init: RequestInit) => {
        if (url.endsWith("/auth/refresh")) {
          refreshes += 1;
          return json(200, tokens("new"));
        }
        const auth = (init.headers as Record<string, string>).Authorization;
        seen.push(auth);
        return auth === "Bearer new" ? json(200, { ok: true }) : json(401, { error: { code: "unauthorized", message: "expired" } });
      }),
    );
    const answers = await Promise.all([api("/devices"), api("/pipelines")]);
    expect(answers).toEqual([{ ok: true }, { ok: true }]);
    expect(refreshes).toBe(1);
    expect(useAuth.getState().accessToken).toBe("new");
  });

  it("signs out when the refresh token is refused", async () => {
    useAuth.getState().setTokens(tokens("old") as never);
    vi.stubGlobal(
      "fetch",
      vi.fn(async (url: string) =>
        url.endsWith("/auth/refresh") ? json(401, { error: { code: "unauthorized", message: "revoked" } }) : json(401, { error: { code: "unauthorized", message: "expired" } }),
      ),
    );
    await expect(api("/devices")).rejects.toBeInstanceOf(ApiError);
    expect(useAuth.getState().refreshToken).toBeNull();
  });

  it("turns the error shape into an ApiError with field errors", async () => {
    vi.stubGlobal(
      "fetch",
      vi.fn(async () =>
        json(422, { error: { code: "validation_error", message: "bad", details: [{ field: "body.name", message: "required" }], request_id: "r1" } }),
      ),
    );
    const err = (await api("/devices", { method: "POST", body: {} }).catch((e) => e)) as ApiError;
    expect(err.status).toBe(422);
    expect(err.fieldErrors()).toEqual({ "body.name": "required" });
    expect(err.requestId).toBe("r1");
  });
});
