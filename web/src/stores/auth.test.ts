import { roleAllows, useAuth } from "./auth";

describe("auth store", () => {
  it("orders roles viewer < operator < admin", () => {
    expect(roleAllows("viewer", "viewer")).toBe(true);
    expect(roleAllows("viewer", "operator")).toBe(false);
    expect(roleAllows("operator", "operator")).toBe(true);
    expect(roleAllows("operator", "admin")).toBe(false);
    expect(roleAllows("admin", "operator")).toBe(true);
    expect(roleAllows(null, "viewer")).toBe(false);
  });

  it("keeps the session across reloads in localStorage and forgets it on sign-out", () => {
    useAuth.getState().setTokens({
      access_token: "a",
      refresh_token: "r",
      token_type: "Bearer",
      expires_in: 900,
      refresh_expires_at: "2030-01-01T00:00:00Z",
      user: { id: "u", username: "ana", display_name: "Ana", email: null, role: "operator", disabled: false, locked_until: null, created_at: "", updated_at: "", version: 1 },
    });
    const stored = JSON.parse(localStorage.getItem("aios.auth") ?? "{}");
    expect(stored.state.refreshToken).toBe("r");
    expect(stored.state.user.username).toBe("ana");
    expect(useAuth.getState().accessExpiresAt).toBeGreaterThan(Date.now() + 800_000);
    useAuth.getState().signOutLocally();
    expect(JSON.parse(localStorage.getItem("aios.auth") ?? "{}").state.refreshToken).toBeNull();
  });
});
