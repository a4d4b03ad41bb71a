/** The device's history (`GET /devices/{id}/events`, newest first), paged with cursors. */
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import clsx from "clsx";
import { useState } from "react";
import { api } from "../../../api/client";
import type { Page } from "../../../api/types";
import { dateTime, timeAgo } from "../../../lib/format";
import { Button, Card, EmptyState, ErrorNote, Spinner } from "../../ui";
import type { DeviceEvent } from "../types";

const SEVERITY: Record<string, string> = {
  info: "bg-sky-50 text-sky-700 ring-sky-200",
  warning: "bg-amber-50 text-amber-800 ring-amber-200",
  critical: "bg-red-50 text-red-700 ring-red-200",
};

export const EVENTS_PAGE = 25;

export function EventsPanel({ deviceId, now }: { deviceId: string; now: Date }) {
  const [trail, setTrail] = useState<string[]>([]);
  const [cursor, setCursor] = useState("");
  const events = useQuery({
    queryKey: ["devices", "one", deviceId, "events", cursor],
    queryFn: ({ signal }) =>
      api<Page<DeviceEvent>>(`/devices/${encodeURIComponent(deviceId)}/events`, { query: { limit: EVENTS_PAGE, cursor: cursor || undefined }, signal }),
    placeholderData: keepPreviousData,
  });
  const items = events.data?.items ?? [];
  const next = events.data?.next_cursor ?? null;

  return (
    <Card title="Events">
      {events.isError && <ErrorNote error={events.error} />}
      {events.isPending && <Spinner label="Loading events…" />}
      {events.data && items.length === 0 && <EmptyState>No events yet.</EmptyState>}
      {items.length > 0 && (
        <ol className="divide-y divide-slate-100" aria-label="Device events">
          {items.map((e) => (
            <li key={e.id ?? `${e.time}-${e.type}`} className="flex items-start gap-3 py-2 text-sm" data-testid="device-event">
              <span className="w-40 shrink-0 text-xs text-slate-500" title={timeAgo(e.time, now)}>
                {dateTime(e.time)}
              </span>
              <span className={clsx("shrink-0 rounded-full px-2 py-0.5 text-xs ring-1", SEVERITY[e.severity ?? "info"] ?? SEVERITY.info)}>{e.severity ?? "info"}</span>
              <span className="shrink-0 font-mono text-xs text-slate-700">{e.type}</span>
              <span className="min-w-0 flex-1 break-words text-slate-600">{e.message}</span>
            </li>
          ))}
        </ol>
      )}
      <div className="mt-3 flex items-center justify-between text-sm text-slate-500">
        <span>Page {trail.length + 1}</span>
        <div className="flex gap-2">
          <Button
            variant="secondary"
            disabled={trail.length === 0}
            onClick={() => {
              setCursor(trail[trail.length - 1]);
              setTrail(trail.slice(0, -1));
            }}
          >
            Newer
          </Button>
          <Button
            variant="secondary"
            disabled={!next}
            onClick={() => {
              if (!next) return;
              setTrail([...trail, cursor]);
              setCursor(next);
            }}
          >
            Older
          </Button>
        </div>
      </div>
    </Card>
  );
}
