/**
 * Fleet Management: the fleet in numbers, and every device in a list that scales to
 * thousands — searched by name or id (debounced), filtered by status, site and kind, paged
 * with the API's cursors. The filters and the page live in the URL; rows follow the live
 * `/ws/devices` feed without reloading. Operators register and delete devices.
 */
import { keepPreviousData, useQuery, useQueryClient } from "@tanstack/react-query";
import { ChevronLeft, ChevronRight, Plus, Search } from "lucide-react";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useLocation, useNavigate, useSearchParams } from "react-router-dom";
import { api } from "../api/client";
import type { Page } from "../api/types";
import { DeleteDeviceModal } from "../components/fleet/DeleteDeviceModal";
import { DeviceTable } from "../components/fleet/DeviceTable";
import { KIND_LABELS } from "../components/fleet/KindIcon";
import { applyToPage } from "../components/fleet/live";
import { listQuery, PAGE_SIZE, readFilters, writeFilters, type FleetFilters } from "../components/fleet/params";
import { RegisterDeviceModal } from "../components/fleet/RegisterDeviceModal";
import { SummaryCards } from "../components/fleet/SummaryCards";
import { DEVICE_KINDS, DEVICE_STATUSES, type Device, type DeviceAnalytics } from "../components/fleet/types";
import { Button, Card, EmptyState, ErrorNote, inputClass, PageHeader, Spinner } from "../components/ui";
import { useDebouncedValue } from "../hooks/useDebouncedValue";
import { useFeed, type FeedMessage } from "../hooks/useFeed";
import { useNow } from "../hooks/useNow";
import { count } from "../lib/format";
import { useCan } from "../stores/auth";

const STATUS_LABELS = { online: "Online", warning: "Warning", offline: "Offline" } as const;

interface TrailState {
  /** The cursors of the pages before this one (the first page's is ""). */
  trail?: string[];
}

export default function FleetPage() {
  const canOperate = useCan("operator");
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const location = useLocation();
  const [params, setParams] = useSearchParams();
  const filters = readFilters(params);
  const trail = ((location.state as TrailState | null)?.trail ?? []).filter((c) => typeof c === "string");
  const now = useNow(15_000);

  // --- search box: typed text → (300 ms pause) → URL → query
  const [text, setText] = useState(filters.q);
  const debounced = useDebouncedValue(text, 300);
  const written = useRef(filters.q);
  useEffect(() => {
    // the URL changed by navigation (Back, a link): show its search in the box
    if (filters.q !== written.current) {
      written.current = filters.q;
      setText(filters.q);
    }
  }, [filters.q]);
  const setFilters = useCallback(
    (change: Partial<FleetFilters>, options: { replace?: boolean; state?: TrailState } = {}) => {
      setParams((current) => writeFilters(current, change), { replace: options.replace, state: options.state ?? {} });
    },
    [setParams],
  );
  const urlQ = useRef(filters.q);
  urlQ.current = filters.q;
  const lastDebounced = useRef(debounced);
  useEffect(() => {
    // only a pause in typing writes the URL (not a navigation that changed the URL meanwhile)
    if (debounced === lastDebounced.current) return;
    lastDebounced.current = debounced;
    const q = debounced.trim();
    if (q !== urlQ.current.trim()) {
      written.current = q;
      setFilters({ q }, { replace: true });
    }
  }, [debounced, setFilters]);

  // --- data
  const query = listQuery(filters);
  const devices = useQuery({
    queryKey: ["devices", "list", query],
    queryFn: ({ signal }) => api<Page<Device>>("/devices", { query, signal }),
    placeholderData: keepPreviousData,
  });
  const analytics = useQuery({
    queryKey: ["analytics", "devices"],
    queryFn: ({ signal }) => api<DeviceAnalytics>("/analytics/devices", { signal }),
    refetchInterval: 60_000,
  });
  const connectors = useQuery({
    queryKey: ["devices", "connectors"],
    queryFn: ({ signal }) => api<Page<Device>>("/devices", { query: { kind: "connector", limit: 200 }, signal }),
    enabled: canOperate,
    staleTime: 60_000,
  });

  // --- live feed: statuses and last-seen times move in place; counts are reloaded (at most every 2 s)
  const recount = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(recount.current), []);
  const onMessage = useCallback(
    (message: FeedMessage) => {
      if (message.type !== "device.status" && message.type !== "device.heartbeat") return;
      queryClient.setQueriesData<Page<Device>>({ queryKey: ["devices", "list"] }, (page) => applyToPage(page, message));
      if (message.type === "device.status" && recount.current === undefined) {
        recount.current = setTimeout(() => {
          recount.current = undefined;
          void queryClient.invalidateQueries({ queryKey: ["analytics", "devices"] });
        }, 2000);
      }
    },
    [queryClient],
  );
  const onReconnect = useCallback(() => {
    void queryClient.invalidateQueries({ queryKey: ["devices"] });
    void queryClient.invalidateQueries({ queryKey: ["analytics", "devices"] });
  }, [queryClient]);
  const feed = useFeed("/ws/devices", onMessage, onReconnect);

  const sites = useMemo(() => {
    const names = new Set(Object.keys(analytics.data?.by_site ?? {}));
    if (filters.site) names.add(filters.site);
    return Array.from(names).sort();
  }, [analytics.data, filters.site]);

  const [registering, setRegistering] = useState(false);
  const [deleting, setDeleting] = useState<Device | null>(null);

  const items = devices.data?.items ?? [];
  const nextCursor = devices.data?.next_cursor ?? null;
  const pageNumber = trail.length + 1;
  const filtered = Boolean(filters.q || filters.status || filters.site || filters.kind);

  const goNext = () => {
    if (!nextCursor) return;
    setFilters({ cursor: nextCursor }, { state: { trail: [...trail, filters.cursor] } });
  };
  const goPrevious = () => {
    if (trail.length === 0) return;
    setFilters({ cursor: trail[trail.length - 1] }, { state: { trail: trail.slice(0, -1) } });
  };

  return (
    <div>
      <PageHeader
        title="Fleet Management"
        subtitle={
          <span>
            Connectors, cameras, PLCs and sensors.{" "}
            <span className="text-xs text-slate-400" data-testid="feed-state">
              {feed === "open" ? "Live" : feed === "connecting" ? "Connecting to live updates…" : "Live updates paused, reconnecting…"}
            </span>
          </span>
        }
        actions={
          canOperate && (
            <Button onClick={() => setRegistering(true)}>
              <Plus className="h-4 w-4" aria-hidden /> Register device
            </Button>
          )
        }
      />

      <SummaryCards
        analytics={analytics.data}
        active={filters.status}
        onPick={(key) => setFilters({ status: key === "total" ? "" : key === filters.status ? "" : key })}
      />

      <Card>
        <div className="mb-3 flex flex-wrap items-end gap-3" role="search">
          <label className="relative min-w-56 flex-1 text-sm">
            <span className="sr-only">Search devices</span>
            <Search className="pointer-events-none absolute left-2.5 top-2 h-4 w-4 text-slate-400" aria-hidden />
            <input
              type="search"
              className={`${inputClass} pl-8`}
              placeholder="Search by name or id"
              aria-label="Search devices"
              value={text}
              onChange={(e) => setText(e.target.value)}
            />
          </label>
          <label className="text-sm">
            <span className="mb-1 block text-xs font-medium text-slate-500">Status</span>
            <select className={inputClass} aria-label="Status" value={filters.status} onChange={(e) => setFilters({ status: e.target.value as FleetFilters["status"] })}>
              <option value="">All statuses</option>
              {DEVICE_STATUSES.map((s) => (
                <option key={s} value={s}>
                  {STATUS_LABELS[s]}
                </option>
              ))}
            </select>
          </label>
          <label className="text-sm">
            <span className="mb-1 block text-xs font-medium text-slate-500">Site</span>
            <select className={inputClass} aria-label="Site" value={filters.site} onChange={(e) => setFilters({ site: e.target.value })}>
              <option value="">All sites</option>
              {sites.map((s) => (
                <option key={s} value={s}>
                  {s} {analytics.data?.by_site?.[s] !== undefined ? `(${count(analytics.data.by_site[s])})` : ""}
                </option>
              ))}
            </select>
          </label>
          <label className="text-sm">
            <span className="mb-1 block text-xs font-medium text-slate-500">Kind</span>
            <select className={inputClass} aria-label="Kind" value={filters.kind} onChange={(e) => setFilters({ kind: e.target.value as FleetFilters["kind"] })}>
              <option value="">All kinds</option>
              {DEVICE_KINDS.map((k) => (
                <option key={k} value={k}>
                  {KIND_LABELS[k]}
                </option>
              ))}
            </select>
          </label>
          {filtered && (
            <Button
              variant="ghost"
              onClick={() => {
                written.current = "";
                setText("");
                setParams(new URLSearchParams(), { state: {} });
              }}
            >
              Clear filters
            </Button>
          )}
        </div>

        {devices.isError && <ErrorNote error={devices.error} />}
        {devices.isPending && <Spinner label="Loading devices…" />}
        {devices.data && items.length === 0 && (
          <EmptyState>
            {filtered ? "No device matches these filters on this page." : "No devices yet."}
            {nextCursor && " More may follow on the next page."}
          </EmptyState>
        )}
        {items.length > 0 && (
          <div className={devices.isPlaceholderData ? "opacity-60 transition-opacity" : undefined} aria-busy={devices.isFetching}>
            <DeviceTable devices={items} now={now} onDelete={canOperate ? setDeleting : undefined} />
          </div>
        )}

        <nav className="mt-3 flex items-center justify-between text-sm text-slate-500" aria-label="Pages">
          <span data-testid="page-info">
            Page {pageNumber}
            {items.length > 0 && ` · ${items.length} device${items.length === 1 ? "" : "s"} shown`}
            {filters.status && items.length < PAGE_SIZE && nextCursor ? " · filtered by status, pages may hold fewer" : ""}
          </span>
          <div className="flex gap-2">
            <Button variant="secondary" onClick={goPrevious} disabled={trail.length === 0} aria-label="Previous page">
              <ChevronLeft className="h-4 w-4" aria-hidden /> Previous
            </Button>
            <Button variant="secondary" onClick={goNext} disabled={!nextCursor} aria-label="Next page">
              Next <ChevronRight className="h-4 w-4" aria-hidden />
            </Button>
          </div>
        </nav>
      </Card>

      {canOperate && (
        <>
          <RegisterDeviceModal
            open={registering}
            onClose={() => setRegistering(false)}
            connectors={connectors.data?.items ?? []}
            onCreated={(d) => navigate(`/fleet/${encodeURIComponent(d.id)}`)}
          />
          <DeleteDeviceModal device={deleting} onClose={() => setDeleting(null)} />
        </>
      )}
    </div>
  );
}
