/**
 * The dashboard: key figures, trends (events per hour by type, device availability), the
 * devices on the map, the live alert feed and today's events. Live: `/ws/devices` refreshes
 * the fleet figures on status changes; `/ws/notifications` (listened to by the header's
 * bell) feeds the alert feed and refreshes alerts, events and analytics.
 */
import { useMemo, useRef } from "react";
import { AvailabilityChart, EventsPerHourChart } from "../components/dashboard/TrendCharts";
import { KpiCards } from "../components/dashboard/KpiCards";
import { LiveFeed } from "../components/dashboard/LiveFeed";
import { TodayEvents } from "../components/dashboard/TodayEvents";
import {
  availabilityRows,
  availabilitySample,
  eventsByHour,
  hourStarts,
  kpis as toKpis,
  startOfToday,
} from "../components/dashboard/data";
import {
  useAlerts24h,
  useAvailability,
  useDeviceAnalytics,
  useEventTrends,
  useMapDevices,
  usePerformance,
  usePipelineNames,
  useSystem,
  useTodayEvents,
} from "../components/dashboard/queries";
import { DeviceMap } from "../components/map/DeviceMap";
import { Card, ErrorNote, PageHeader, Spinner } from "../components/ui";
import { useAvailabilitySamples } from "../hooks/useAvailabilitySamples";
import type { FeedMessage } from "../hooks/useFeed";
import { useLiveInvalidation } from "../hooks/useLiveInvalidation";

/** The queries a `/ws/devices` message makes stale: status changes move the figures. */
export function deviceFeedKeys(message: FeedMessage): string[][] {
  if (message.type === "device.status") return [["devices"], ["analytics"]];
  return [];
}

function LiveDot({ state }: { state: string }) {
  const on = state === "open";
  return (
    <span className="inline-flex items-center gap-1.5 text-xs text-slate-500" data-testid="live-state" data-state={state}>
      <span className={on ? "h-2 w-2 rounded-full bg-emerald-500" : "h-2 w-2 rounded-full bg-slate-300"} aria-hidden />
      {on ? "Live" : state === "connecting" ? "Connecting…" : "Reconnecting…"}
    </span>
  );
}

export default function DashboardPage() {
  const feedState = useLiveInvalidation("/ws/devices", deviceFeedKeys, { reloadKeys: [["devices"], ["analytics"]] });

  const system = useSystem();
  const devices = useDeviceAnalytics();
  const performance = usePerformance();
  const alerts24h = useAlerts24h();
  const figures = toKpis({
    system: system.data,
    devices: devices.data,
    performance: performance.data,
    alerts24h: alerts24h.data,
  });

  const trends = useEventTrends();
  const chart = useMemo(() => {
    const all = trends.all.data;
    // the per-type counts first: charting before they come would show every event as "other"
    if (!all || trends.perType.some((q) => q.isPending && q.fetchStatus !== "idle")) return null;
    const perType: Record<string, { hour: string; count: number }[]> = {};
    trends.types.forEach((type, i) => {
      const data = trends.perType[i]?.data;
      if (data) perType[type] = data.by_hour;
    });
    return eventsByHour(hourStarts(all.since, all.until), all.by_hour, perType);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [trends.all.data, trends.types.join("|"), ...trends.perType.map((q) => q.dataUpdatedAt)]);

  // a refetch (every few seconds, with a new window) keeps the chart drawn until the new
  // counts are in, rather than a spinner in between
  const lastChart = useRef(chart);
  if (chart) lastChart.current = chart;
  const shownChart = chart ?? lastChart.current;

  const availability = useAvailability();
  const sample = devices.data ? availabilitySample(devices.data, new Date(devices.dataUpdatedAt).toISOString()) : null;
  const samples = useAvailabilitySamples(sample);
  const history = availability.data ? availabilityRows(availability.data.by_hour) : null;

  const mapDevices = useMapDevices();
  const pipelineNames = usePipelineNames();
  const today = useMemo(() => startOfToday(), []);
  const events = useTodayEvents(today);
  const deviceNames = useMemo(
    () => Object.fromEntries((mapDevices.data?.items ?? []).map((d) => [d.id, d.name])) as Record<string, string>,
    [mapDevices.data],
  );

  return (
    <div className="space-y-5">
      <PageHeader title="Dashboard" subtitle="The site at a glance, live." actions={<LiveDot state={feedState} />} />
      {devices.error ? <ErrorNote error={devices.error} /> : null}
      <KpiCards kpis={figures} loading={devices.isPending && system.isPending} />

      <div className="grid gap-5 lg:grid-cols-2">
        <Card title="Events per hour by type (24 h)">
          {trends.all.error ? <ErrorNote error={trends.all.error} /> : shownChart ? <EventsPerHourChart rows={shownChart.rows} series={shownChart.series} /> : <Spinner />}
        </Card>
        <Card title="Device availability">
          {history && history.length > 0 ? (
            <AvailabilityChart rows={sample ? [...history, sample] : history} note="Share of device-time per hour; the last point is now." />
          ) : (
            <AvailabilityChart rows={samples} note="Sampled while this console is open." />
          )}
        </Card>
      </div>

      <div className="grid gap-5 lg:grid-cols-3">
        <Card title="Device map" className="lg:col-span-2">
          {mapDevices.error ? (
            <ErrorNote error={mapDevices.error} />
          ) : (
            <DeviceMap
              devices={(mapDevices.data?.items ?? []).map((d) => ({ id: d.id, name: d.name, status: d.status, location: d.location }))}
              height={360}
            />
          )}
        </Card>
        <Card title="Live alert feed">
          <LiveFeed />
        </Card>
      </div>

      <Card title="Today's events">
        {events.error ? (
          <ErrorNote error={events.error} />
        ) : events.data ? (
          <TodayEvents
            events={events.data.items}
            pipelineNames={pipelineNames.data ?? {}}
            deviceNames={deviceNames}
            more={!!events.data.next_cursor}
          />
        ) : (
          <Spinner />
        )}
      </Card>
    </div>
  );
}
