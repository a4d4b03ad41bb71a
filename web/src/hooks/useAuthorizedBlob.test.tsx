import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { renderHook, waitFor } from "@testing-library/react";
import type { ReactNode } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { useAuth } from "../stores/auth";
import { apiRelativePath, useAuthorizedBlobUrl } from "./useAuthorizedBlob";

function wrapper({ children }: { children: ReactNode }) {
  const client = new QueryClient({ defaultOptions: { queries: { retry: false } } });
  return <QueryClientProvider client={client}>{children}</QueryClientProvider>;
}

describe("useAuthorizedBlobUrl", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    vi.restoreAllMocks();
  });

  it("keeps only paths of this API", () => {
    expect(apiRelativePath("/api/v1/runs/r1/media/snapshots/a.jpg")).toBe("/runs/r1/media/snapshots/a.jpg");
    expect(apiRelativePath("https://elsewhere.example/a.jpg")).toBeNull();
    expect(apiRelativePath("/api/v10/x")).toBeNull();
    expect(apiRelativePath(null)).toBeNull();
  });

  it("fetches the media with the bearer token and shows it through a blob URL", async () => {
    useAuth.setState({ accessToken: "tok", refreshToken: "r" });
    const fetchMock = vi.fn(async () => new Response(new TextEncoder().encode("jpeg"), { status: 200, headers: { "Content-Type": "image/jpeg" } }));
    vi.stubGlobal("fetch", fetchMock);
    const create = vi.fn(() => "blob:snap-1");
    const revoke = vi.fn();
    Object.assign(URL, { createObjectURL: create, revokeObjectURL: revoke });

    const { result, unmount } = renderHook(() => useAuthorizedBlobUrl("/api/v1/runs/r1/media/snapshots/a.jpg"), { wrapper });
    await waitFor(() => expect(result.current.src).toBe("blob:snap-1"));
    const [url, init] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("/api/v1/runs/r1/media/snapshots/a.jpg");
    expect((init.headers as Record<string, string>).Authorization).toBe("Bearer tok");
    unmount();
    expect(revoke).toHaveBeenCalledWith("blob:snap-1");
  });

  it("reports a failure for missing media and for foreign URLs", async () => {
    useAuth.setState({ accessToken: "tok", refreshToken: "r" });
    vi.stubGlobal("fetch", vi.fn(async () => new Response(JSON.stringify({ error: { code: "not_found", message: "gone" } }), { status: 404, headers: { "Content-Type": "application/json" } })));
    const missing = renderHook(() => useAuthorizedBlobUrl("/api/v1/runs/r1/media/snapshots/b.jpg"), { wrapper });
    await waitFor(() => expect(missing.result.current.failed).toBe(true));
    expect(missing.result.current.src).toBeNull();
    const foreign = renderHook(() => useAuthorizedBlobUrl("http://elsewhere.example/x.jpg"), { wrapper });
    expect(foreign.result.current).toEqual({ src: null, failed: true });
  });
});
