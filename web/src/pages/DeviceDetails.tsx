/**
 * One device: its status (live from `/ws/devices`), kind, site, firmware, last seen, the
 * connector it is reached through and the devices it connects; then, in tabs, metrics,
 * configuration (desired vs reported), events, commands, alert rules, its place on the map
 * and, for cameras, the live view. Viewers see everything but no edit or command control.
 */
import { useQuery, useQueryClient } from "@tanstack/react-query";
import clsx from "clsx";
import { ArrowLeft, Trash } from "lucide-react";
import { lazy, Suspense, useCallback, useMemo, useState, type ReactNode } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router-dom";
import { api, ApiError } from "../api/client";
import type { Page } from "../api/types";
import { DeleteDeviceModal } from "../components/fleet/DeleteDeviceModal";
import { AlertRulesPanel } from "../components/fleet/details/AlertRulesPanel";
import { CommandsPanel } from "../components/fleet/details/CommandsPanel";
import { ConfigurationPanel } from "../components/fleet/details/ConfigurationPanel";
import { EventsPanel } from "../components/fleet/details/EventsPanel";
import { LocationPanel } from "../components/fleet/details/LocationPanel";
import { MetricsPanel, type HealthSample } from "../components/fleet/details/MetricsPanel";
import { KindIcon, KindTag } from "../components/fleet/KindIcon";
import { applyDeviceMessage, messageDeviceId } from "../components/fleet/live";
import { healthNumbers } from "../components/fleet/telemetry";
import type { Device, TelemetryPoint } from "../components/fleet/types";
import { Button, Card, EmptyState, ErrorNote, PageHeader, Spinner, StatusBadge, STATUS_COLOURS, type DeviceStatus } from "../components/ui";
import { useFeed, type FeedMessage } from "../hooks/useFeed";
import { useNow } from "../hooks/useNow";
import { dateTime, timeAgo } from "../lib/format";
import { useCan } from "../stores/auth";

type TabKey = "live" | "metrics" | "configuration" | "events" | "commands" | "alerts" | "location";

const TAB_LABELS: Record<TabKey, string> = {
  live: "Live view",
  metrics: "Metrics",
  configuration: "Configuration",
  events: "Events",
  commands: "Commands",
  alerts: "Alert rules",
  location: "Location",
};

const HEALTH_HISTORY = 360;

// The camera's live view (WebRTC), loaded only when its tab opens.
const LiveView = lazy(() => import("../components/live/LiveView").then((m) => ({ default: m.LiveView })));

function tabsFor(device: Device): TabKey[] {
  const tabs: TabKey[] = ["metrics", "configuration", "events", "commands", "alerts", "location"];
  return device.kind === "camera" ? ["live", ...tabs] : tabs;
}

export default function DeviceDetailsPage() {
  const { deviceId = "" } = useParams();
  const canOperate = useCan("operator");
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const now = useNow(10_000);
  const key = useMemo(() => ["devices", "one", deviceId], [deviceId]);

  const device = useQuery({
    queryKey: key,
    queryFn: ({ signal }) => api<Device>(`/devices/${encodeURIComponent(deviceId)}`, { signal }),
    refetchInterval: 60_000,
  });
  const children = useQuery({
    queryKey: ["devices", "list", { parent_id: deviceId, limit: 200 }],
    queryFn: ({ signal }) => api<Page<Device>>("/devices", { query: { parent_id: deviceId, limit: 200 }, signal }),
    enabled: device.data?.kind === "connector",
  });
  const parent = useQuery({
    queryKey: ["devices", "one", device.data?.parent_id ?? ""],
    queryFn: ({ signal }) => api<Device>(`/devices/${encodeURIComponent(device.data?.parent_id ?? "")}`, { signal }),
    enabled: Boolean(device.data?.parent_id),
    retry: false,
  });
  const metricNames = useQuery({
    queryKey: ["devices", "one", deviceId, "metric-names"],
    queryFn: async ({ signal }) => {
      const since = new Date(Date.now() - 15 * 60_000).toISOString();
      const page = await api<Page<TelemetryPoint>>(`/devices/${encodeURIComponent(deviceId)}/telemetry`, { query: { since, limit: 200 }, signal });
      return Array.from(new Set(page.items.map((p) => p.metric)));
    },
    staleTime: 60_000,
  });

  // --- live: status and heartbeats patch the device; events and commands reload their lists
  const [healthHistory, setHealthHistory] = useState<HealthSample[]>([]);
  const onMessage = useCallback(
    (message: FeedMessage) => {
      if (messageDeviceId(message) !== deviceId) return;
      if (message.type === "device.status" || message.type === "device.heartbeat") {
        queryClient.setQueryData<Device>(key, (d) => (d ? applyDeviceMessage(d, message) : d));
      }
      if (message.type === "device.heartbeat") {
        const values = healthNumbers(message.health as Record<string, unknown> | undefined);
        const t = typeof message.time === "string" ? Date.parse(message.time) : Date.now();
        setHealthHistory((h) => [...h.slice(-(HEALTH_HISTORY - 1)), { t, values }]);
      }
      if (message.type === "device.event") {
        void queryClient.invalidateQueries({ queryKey: [...key, "events", ""] });
        const type = (message.event as { type?: string } | undefined)?.type ?? "";
        if (type.startsWith("config.")) void queryClient.invalidateQueries({ queryKey: key, exact: true });
      }
      if (message.type === "device.command") void queryClient.invalidateQueries({ queryKey: [...key, "commands"] });
    },
    [deviceId, key, queryClient],
  );
  const onReconnect = useCallback(() => void queryClient.invalidateQueries({ queryKey: key }), [key, queryClient]);
  useFeed("/ws/devices", onMessage, onReconnect);

  const [deleting, setDeleting] = useState(false);

  if (device.isPending) return <Spinner label="Loading device…" />;
  if (device.isError) {
    const missing = device.error instanceof ApiError && device.error.status === 404;
    return (
      <div>
        <BackLink />
        {missing ? <EmptyState>No device with id “{deviceId}”.</EmptyState> : <ErrorNote error={device.error} />}
      </div>
    );
  }

  const d = device.data;
  const tabs = tabsFor(d);
  const requested = params.get("tab") as TabKey | null;
  const tab: TabKey = requested && tabs.includes(requested) ? requested : tabs[0];
  const kids = children.data?.items ?? [];

  return (
    <div>
      <BackLink />
      <PageHeader
        title={d.name}
        subtitle={
          <span className="inline-flex flex-wrap items-center gap-2">
            <KindIcon kind={d.kind} className="h-4 w-4 text-slate-500" />
            <span className="font-mono">{d.id}</span>
          </span>
        }
        actions={
          canOperate && (
            <Button variant="secondary" onClick={() => setDeleting(true)}>
              <Trash className="h-4 w-4" aria-hidden /> Delete device
            </Button>
          )
        }
      />

      <Card className="mb-4">
        <dl className="grid grid-cols-2 gap-x-6 gap-y-3 text-sm md:grid-cols-4" aria-label="Device summary">
          <Fact label="Status">
            <span data-testid="device-status" data-status={d.status}>
              <StatusBadge status={d.status} />
            </span>
            {d.status_reasons && d.status_reasons.length > 0 && <div className="mt-1 text-xs text-slate-500">{d.status_reasons.join("; ")}</div>}
            {d.status_since && <div className="mt-0.5 text-xs text-slate-400">since {timeAgo(d.status_since, now)}</div>}
          </Fact>
          <Fact label="Kind">
            <KindTag kind={d.kind} />
          </Fact>
          <Fact label="Site">{d.site || "—"}</Fact>
          <Fact label="Firmware">{d.firmware_version || "—"}</Fact>
          <Fact label="Last seen">
            <span title={dateTime(d.last_seen)} data-testid="last-seen">
              {timeAgo(d.last_seen, now)}
            </span>
          </Fact>
          <Fact label="Connected through">
            {d.parent_id ? (
              <Link to={`/fleet/${encodeURIComponent(d.parent_id)}`} className="text-sky-700 hover:underline">
                {parent.data?.name ?? d.parent_id}
              </Link>
            ) : (
              "—"
            )}
          </Fact>
          <Fact label="Tags">{d.tags && d.tags.length > 0 ? d.tags.join(", ") : "—"}</Fact>
          <Fact label="Registered">{dateTime(d.created_at)}</Fact>
          {d.kind === "connector" && (
            <div className="col-span-full">
              <dt className="text-xs font-medium uppercase tracking-wide text-slate-500">Devices behind this connector</dt>
              <dd className="mt-1 flex flex-wrap gap-2" aria-label="Child devices">
                {kids.length === 0 && <span className="text-slate-400">none</span>}
                {kids.map((k) => (
                  <Link
                    key={k.id}
                    to={`/fleet/${encodeURIComponent(k.id)}`}
                    className="inline-flex items-center gap-1.5 rounded-full border border-slate-200 px-2 py-0.5 text-xs hover:border-sky-300"
                  >
                    <span className="h-2 w-2 rounded-full" data-status={k.status} style={{ background: STATUS_COLOURS[k.status as DeviceStatus] ?? STATUS_COLOURS.offline }} aria-hidden />
                    <KindIcon kind={k.kind} className="h-3.5 w-3.5 text-slate-500" />
                    {k.name}
                  </Link>
                ))}
              </dd>
            </div>
          )}
        </dl>
      </Card>

      <div role="tablist" aria-label="Device sections" className="mb-4 flex flex-wrap gap-1 border-b border-slate-200">
        {tabs.map((t) => (
          <button
            key={t}
            type="button"
            role="tab"
            id={`tab-${t}`}
            aria-selected={tab === t}
            aria-controls={`panel-${t}`}
            className={clsx(
              "-mb-px border-b-2 px-3 py-2 text-sm font-medium",
              tab === t ? "border-sky-600 text-sky-700" : "border-transparent text-slate-500 hover:text-slate-800",
            )}
            onClick={() =>
              setParams(
                (p) => {
                  const next = new URLSearchParams(p);
                  next.set("tab", t);
                  return next;
                },
                { replace: true },
              )
            }
          >
            {TAB_LABELS[t]}
          </button>
        ))}
      </div>

      <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`}>
        {tab === "live" && (
          <Card title="Live view">
            <Suspense fallback={<Spinner label="Loading the live view…" />}>
              <LiveView deviceId={d.id} />
            </Suspense>
          </Card>
        )}
        {tab === "metrics" && <MetricsPanel device={d} healthHistory={healthHistory} />}
        {tab === "configuration" && <ConfigurationPanel device={d} canOperate={canOperate} />}
        {tab === "events" && <EventsPanel deviceId={d.id} now={now} />}
        {tab === "commands" && <CommandsPanel device={d} canOperate={canOperate} />}
        {tab === "alerts" && <AlertRulesPanel device={d} canOperate={canOperate} metrics={metricNames.data ?? []} />}
        {tab === "location" && <LocationPanel device={d} connected={kids} canOperate={canOperate} />}
      </div>

      {canOperate && <DeleteDeviceModal device={deleting ? d : null} onClose={() => setDeleting(false)} onDeleted={() => navigate("/fleet")} />}
    </div>
  );
}

function BackLink() {
  return (
    <Link to="/fleet" className="mb-3 inline-flex items-center gap-1 text-sm text-slate-500 hover:text-slate-800">
      <ArrowLeft className="h-4 w-4" aria-hidden /> Fleet
    </Link>
  );
}

function Fact({ label, children }: { label: string; children: ReactNode }) {
  return (
    <div>
      <dt className="text-xs font-medium uppercase tracking-wide text-slate-500">{label}</dt>
      <dd className="mt-0.5 text-slate-800">{children}</dd>
    </div>
  );
}
