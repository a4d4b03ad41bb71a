/** Sign in and out with the API's JWT flow. */
import { api, refreshTokens } from "./client";
import type { TokenResponse, User } from "./types";
import { useAuth } from "../stores/auth";

export async function login(username: string, password: string): Promise<User> {
  const tokens = await api<TokenResponse>("/auth/login", {
    method: "POST",
    body: { username, password },
    noRefresh: true,
  });
  useAuth.getState().setTokens(tokens);
  return tokens.user;
}

/** Revoke the refresh token (and its family) on the server, then forget the session. */
export async function logout(): Promise<void> {
  const refreshToken = useAuth.getState().refreshToken;
  try {
    if (refreshToken) {
      await api("/auth/logout", { method: "POST", body: { refresh_token: refreshToken }, noRefresh: true });
    }
  } catch {
    // signed out locally whatever the server says
  } finally {
    useAuth.getState().signOutLocally();
  }
}

/** A valid access token for a WebSocket handshake (refreshed first if it is about to expire). */
export async function freshAccessToken(): Promise<string | null> {
  const { accessToken, accessExpiresAt } = useAuth.getState();
  if (accessToken && accessExpiresAt && accessExpiresAt - Date.now() > 30_000) return accessToken;
  if (await refreshTokens()) return useAuth.getState().accessToken;
  return accessToken;
}
