/**
 * The console's one HTTP client: same-origin requests to `/api/v1`, the access token as a
 * bearer token, and a silent refresh (one at a time, shared by concurrent callers) when the
 * API answers 401 — the request is then sent once more with the new token. A refresh that
 * fails signs the user out.
 */
import type { ApiErrorBody, TokenResponse } from "./types";
import { useAuth } from "../stores/auth";

export const API_PREFIX = "/api/v1";

/** An error answer of the API: `status`, and the body's `code`, `message`, `details`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: ApiErrorBody["details"];
  readonly requestId: string | null;

  constructor(status: number, body: Partial<ApiErrorBody>) {
    super(body.message ?? `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code ?? "http_error";
    this.details = body.details ?? null;
    this.requestId = body.request_id ?? null;
  }

  /** The field errors as `path → message` (for forms). */
  fieldErrors(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const d of this.details ?? []) {
      if (d.field && d.message) out[d.field] = d.message;
    }
    return out;
  }
}

export type Query = Record<string, string | number | boolean | null | undefined | string[]>;

export interface RequestOptions {
  method?: string;
  query?: Query;
  body?: unknown;
  /** Raw body (e.g. a Blob) sent as is, with `contentType`. */
  raw?: BodyInit;
  contentType?: string;
  signal?: AbortSignal;
  /** Do not try to refresh on 401 (login and refresh themselves). */
  noRefresh?: boolean;
  /** Answer with the Response itself (binary media). */
  asResponse?: boolean;
}

/** `/api/v1/devices?limit=50&status=online&status=warning` from a path and a query. */
export function buildUrl(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => params.append(key, v));
    else params.append(key, String(value));
  }
  const qs = params.toString();
  return `${API_PREFIX}${path}${qs ? `?${qs}` : ""}`;
}

let refreshing: Promise<boolean> | null = null;

/** Trade the refresh token for new tokens; concurrent callers share one request. */
export function refreshTokens(): Promise<boolean> {
  if (refreshing) return refreshing;
  const refreshToken = useAuth.getState().refreshToken;
  if (!refreshToken) return Promise.resolve(false);
  refreshing = (async () => {
    try {
      const response = await fetch(`${API_PREFIX}/auth/refresh`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: refreshToken }),
      });
      if (!response.ok) {
        useAuth.getState().signOutLocally();
        return false;
      }
      useAuth.getState().setTokens((await response.json()) as TokenResponse);
      return true;
    } catch {
      return false; // network error: keep the session, the next call tries again
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function send(path: string, options: RequestOptions): Promise<Response> {
  const headers: Record<string, string> = {};
  const token = useAuth.getState().accessToken;
  if (token) headers.Authorization = `Bearer ${token}`;
  let body: BodyInit | undefined;
  if (options.raw !== undefined) {
    body = options.raw;
    if (options.contentType) headers["Content-Type"] = options.contentType;
  } else if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers["Content-Type"] = "application/json";
  }
  return fetch(buildUrl(path, options.query), {
    method: options.method ?? (body === undefined ? "GET" : "POST"),
    headers,
    body,
    signal: options.signal,
  });
}

/** Call the API; resolves to the JSON body (or `undefined` for 204), throws {@link ApiError}. */
export async function api<T = unknown>(path: string, options: RequestOptions = {}): Promise<T> {
  let response = await send(path, options);
  if (response.status === 401 && !options.noRefresh && useAuth.getState().refreshToken) {
    if (await refreshTokens()) response = await send(path, options);
  }
  if (!response.ok) {
    let body: Partial<ApiErrorBody> = {};
    try {
      const json = (await response.json()) as { error?: ApiErrorBody };
      body = json.error ?? {};
    } catch {
      body = { message: `${response.status} ${response.statusText}` };
    }
    if (response.status === 401 && !options.noRefresh) useAuth.getState().signOutLocally();
    throw new ApiError(response.status, body);
  }
  if (options.asResponse) return response as unknown as T;
  if (response.status === 204) return undefined as T;
  const type = response.headers.get("Content-Type") ?? "";
  if (!type.includes("json")) return (await response.text()) as unknown as T;
  return (await response.json()) as T;
}

/** A short message for a toast: the API's message, or the error's. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}
