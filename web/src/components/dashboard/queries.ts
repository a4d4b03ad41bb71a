/** The dashboard's server state (TanStack Query); keys under "analytics", "events", "alerts",
 * "devices" and "pipelines" so the live feeds' invalidations reach them. */
import { useQueries, useQuery } from "@tanstack/react-query";
import { ApiError, api } from "../../api/client";
import type {
  Alert,
  Device,
  DeviceAnalytics,
  EventAnalytics,
  EventRecord,
  Page,
  PerformanceOut,
  PipelineSummary,
} from "../../api/types";
import { topTypes, type AvailabilityOut, type SystemInfo } from "./data";

const REFRESH_MS = 30_000;

/** An endpoint this API may not have yet: null on 404/405 instead of an error. */
async function optional<T>(path: string, query?: Record<string, string>): Promise<T | null> {
  try {
    return await api<T>(path, { query });
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) return null;
    throw error;
  }
}

export function useSystem() {
  return useQuery({
    queryKey: ["analytics", "system"],
    queryFn: () => optional<SystemInfo>("/system"),
    refetchInterval: REFRESH_MS,
  });
}

export function useDeviceAnalytics() {
  return useQuery({
    queryKey: ["analytics", "devices"],
    queryFn: () => api<DeviceAnalytics>("/analytics/devices"),
    refetchInterval: REFRESH_MS,
  });
}

export function usePerformance() {
  return useQuery({
    queryKey: ["analytics", "performance"],
    queryFn: () => api<PerformanceOut>("/analytics/performance", { query: { limit: 50 } }),
    refetchInterval: REFRESH_MS,
  });
}

export function useAvailability() {
  return useQuery({
    queryKey: ["analytics", "availability"],
    queryFn: () => optional<AvailabilityOut>("/analytics/availability"),
    refetchInterval: 5 * 60_000,
  });
}

/** Device alerts raised in the last 24 hours (one page of 1000: `more` when there are more). */
export function useAlerts24h() {
  return useQuery({
    queryKey: ["alerts", "last-24h"],
    queryFn: async () => {
      const since = new Date(Date.now() - 24 * 3_600_000).toISOString();
      const page = await api<Page<Alert>>("/alerts", { query: { since, limit: 1000 } });
      return { count: page.items.length, more: !!page.next_cursor };
    },
    refetchInterval: REFRESH_MS,
  });
}

/** Event counts of the last 24 hours, and per hour for each of the most frequent types. */
export function useEventTrends() {
  const all = useQuery({
    queryKey: ["analytics", "events", "24h"],
    queryFn: () => api<EventAnalytics>("/analytics/events"),
    refetchInterval: REFRESH_MS,
  });
  const types = all.data ? topTypes(all.data.by_type) : [];
  const since = all.data?.since;
  const until = all.data?.until;
  const perType = useQueries({
    queries: types.map((type) => ({
      queryKey: ["analytics", "events", "24h", type, since, until],
      queryFn: () => api<EventAnalytics>("/analytics/events", { query: { type, since, until } }),
      enabled: !!since,
      staleTime: REFRESH_MS,
    })),
  });
  return { all, types, perType };
}

export function useTodayEvents(since: string, limit = 50) {
  return useQuery({
    queryKey: ["events", "today", since, limit],
    queryFn: () => api<Page<EventRecord>>("/events", { query: { since, limit } }),
    refetchInterval: 15_000,
  });
}

/** Every device (up to 1000) for the map and the names in lists. */
export function useMapDevices() {
  return useQuery({
    queryKey: ["devices", "dashboard-map"],
    queryFn: () => api<Page<Device>>("/devices", { query: { limit: 1000 } }),
    refetchInterval: REFRESH_MS,
  });
}

export function usePipelineNames() {
  return useQuery({
    queryKey: ["pipelines", "dashboard-names"],
    queryFn: () => api<Page<PipelineSummary>>("/pipelines", { query: { limit: 1000 } }),
    staleTime: 60_000,
    select: (page) => Object.fromEntries(page.items.map((p) => [p.id, p.name])) as Record<string, string>,
  });
}
