/**
 * Media the API serves behind the bearer token (event snapshots): an `<img>` cannot send the
 * header, so the file is fetched with the API client and shown through a blob URL, revoked
 * when the component lets go of it.
 */
import { useQuery } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { API_PREFIX, api } from "../api/client";

/**
 * The API-relative path of a media URL as events carry it (`/api/v1/runs/…` → `/runs/…`);
 * null for anything that is not a path of this API (another host, a bare name).
 */
export function apiRelativePath(url: string | null | undefined): string | null {
  if (!url) return null;
  if (url.startsWith(`${API_PREFIX}/`)) return url.slice(API_PREFIX.length);
  return null;
}

async function fetchBlob(path: string): Promise<Blob> {
  const response = await api<Response>(path, { asResponse: true });
  const type = response.headers.get("Content-Type") ?? "application/octet-stream";
  return new Blob([await response.arrayBuffer()], { type });
}

/** A blob URL of the media at `url` (an API path), or null while loading / on error. */
export function useAuthorizedBlobUrl(url: string | null | undefined): { src: string | null; failed: boolean } {
  const path = apiRelativePath(url);
  const query = useQuery({
    queryKey: ["media", path],
    queryFn: () => fetchBlob(path!),
    enabled: path !== null,
    staleTime: Infinity,
    gcTime: 5 * 60_000,
    retry: false,
  });
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => {
    if (!query.data) {
      setSrc(null);
      return;
    }
    const objectUrl = URL.createObjectURL(query.data);
    setSrc(objectUrl);
    return () => URL.revokeObjectURL(objectUrl);
  }, [query.data]);
  return { src, failed: query.isError || (url != null && path === null) };
}
