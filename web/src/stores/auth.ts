/**
 * Who is signed in. The refresh token (and the user record) persist in localStorage so a
 * reload keeps the session; the access token lives in memory and in the same store, and is
 * renewed silently by the API client. `role` decides which edit controls are shown; the API
 * enforces the same table (viewer < operator < admin).
 */
import { create } from "zustand";
import { persist } from "zustand/middleware";
import type { Role, TokenResponse, User } from "../api/types";

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

interface AuthState {
  accessToken: string | null;
  refreshToken: string | null;
  /** When the access token expires (ms since the epoch). */
  accessExpiresAt: number | null;
  user: User | null;
  setTokens: (tokens: TokenResponse) => void;
  setUser: (user: User) => void;
  signOutLocally: () => void;
}

export const useAuth = create<AuthState>()(
  persist(
    (set) => ({
      accessToken: null,
      refreshToken: null,
      accessExpiresAt: null,
      user: null,
      setTokens: (tokens) =>
        set({
          accessToken: tokens.access_token,
          refreshToken: tokens.refresh_token,
          accessExpiresAt: Date.now() + tokens.expires_in * 1000,
          user: tokens.user,
        }),
      setUser: (user) => set({ user }),
      signOutLocally: () =>
        set({ accessToken: null, refreshToken: null, accessExpiresAt: null, user: null }),
    }),
    {
      name: "aios.auth",
      partialize: (state) => ({
        refreshToken: state.refreshToken,
        accessToken: state.accessToken,
        accessExpiresAt: state.accessExpiresAt,
        user: state.user,
      }),
    },
  ),
);

/** Whether `role` is at or above `required` (the API's order: viewer < operator < admin). */
export function roleAllows(role: Role | undefined | null, required: Role): boolean {
  if (!role) return false;
  return RANK[role] >= RANK[required];
}

/** `can("operator")`: the signed-in user may use controls that need that role. */
export function useCan(required: Role): boolean {
  return useAuth((state) => roleAllows(state.user?.role, required));
}
