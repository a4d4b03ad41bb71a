/** Today's pipeline events, newest first, with their snapshot thumbnails. */
import clsx from "clsx";
import { ImageOff } from "lucide-react";
import { useState } from "react";
import { Link } from "react-router-dom";
import type { EventRecord } from "../../api/types";
import { acknowledgePath, useAcknowledge } from "../../hooks/useAcknowledge";
import { useAuthorizedBlobUrl } from "../../hooks/useAuthorizedBlob";
import { useInView } from "../../hooks/useInView";
import { clock, dateTime } from "../../lib/format";
import { eventItem } from "../../stores/alerts";
import { useCan } from "../../stores/auth";
import { Button, EmptyState, Modal } from "../ui";
import { severityStyle } from "./severity";

/** Rows shown at first, and added by "Show more". */
const PAGE = 15;

function Thumbnail({ url, label }: { url: string | null; label: string }) {
  const [ref, inView] = useInView<HTMLDivElement>();
  const { src, failed } = useAuthorizedBlobUrl(inView ? url : null);
  const [open, setOpen] = useState(false);
  if (!url || !inView) return <div ref={ref} className="h-12 w-16 shrink-0 rounded bg-slate-100" aria-hidden />;
  if (failed)
    return (
      <div className="flex h-12 w-16 shrink-0 items-center justify-center rounded bg-slate-100 text-slate-400" title="Snapshot unavailable">
        <ImageOff className="h-4 w-4" aria-hidden />
      </div>
    );
  return (
    <>
      <button type="button" className="h-12 w-16 shrink-0 overflow-hidden rounded bg-slate-200" onClick={() => setOpen(true)} aria-label={`Open snapshot of ${label}`}>
        {src && <img src={src} alt={`Snapshot: ${label}`} className="h-full w-full object-cover" data-testid="event-thumbnail" />}
      </button>
      <Modal title={`Snapshot: ${label}`} open={open} onClose={() => setOpen(false)} wide>
        {src && <img src={src} alt={`Snapshot: ${label}`} className="mx-auto max-h-[70vh]" />}
      </Modal>
    </>
  );
}

export function TodayEvents({
  events,
  pipelineNames,
  deviceNames,
  more,
}: {
  events: EventRecord[];
  pipelineNames: Record<string, string>;
  deviceNames: Record<string, string>;
  more: boolean;
}) {
  const canAck = useCan("operator");
  const ack = useAcknowledge();
  const [shown, setShown] = useState(PAGE);
  if (events.length === 0) return <EmptyState>No events today yet.</EmptyState>;
  return (
    <div>
      <table className="w-full text-sm" aria-label="Today's events">
        <thead>
          <tr className="border-b border-slate-200 text-left text-xs uppercase tracking-wide text-slate-500">
            <th className="py-1.5 pr-2 font-medium">Snapshot</th>
            <th className="py-1.5 pr-2 font-medium">Time</th>
            <th className="py-1.5 pr-2 font-medium">Event</th>
            <th className="py-1.5 pr-2 font-medium">Pipeline</th>
            <th className="py-1.5 pr-2 font-medium">Device</th>
            <th className="py-1.5 font-medium">
              <span className="sr-only">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody className="divide-y divide-slate-100">
          {events.slice(0, shown).map((event) => {
            const item = eventItem(event, pipelineNames[event.pipeline_id]);
            const style = severityStyle(event.severity);
            const ackable = canAck && acknowledgePath(item) !== null;
            return (
              <tr key={event.id} data-testid="event-row" data-event-id={event.id}>
                <td className="py-1.5 pr-2">
                  <Thumbnail url={item.snapshotUrl ?? null} label={`${item.title} at ${clock(event.time)}`} />
                </td>
                <td className="whitespace-nowrap py-1.5 pr-2 tabular-nums text-slate-600" title={dateTime(event.time)}>
                  {dateTime(event.time).slice(11)}
                </td>
                <td className="py-1.5 pr-2">
                  <span className="font-medium text-slate-800">{item.title}</span>
                  <span className={clsx("ml-1.5 rounded px-1 text-xs ring-1", style.chip)}>{event.severity}</span>
                </td>
                <td className="py-1.5 pr-2">
                  <Link to={`/pipelines/${encodeURIComponent(event.pipeline_id)}`} className="text-sky-700 hover:underline">
                    {item.source}
                  </Link>
                </td>
                <td className="py-1.5 pr-2 text-slate-600">
                  {event.source_id ? (
                    <Link to={`/fleet/${encodeURIComponent(event.source_id)}`} className="hover:underline">
                      {deviceNames[event.source_id] ?? event.source_id}
                    </Link>
                  ) : (
                    "—"
                  )}
                </td>
                <td className="py-1.5 text-right">
                  {item.acknowledgedBy ? (
                    <span className="text-xs text-emerald-700">Ack. by {item.acknowledgedBy}</span>
                  ) : ackable ? (
                    <Button
                      variant="ghost"
                      className="px-2 py-0.5 text-xs"
                      aria-label={`Acknowledge ${item.title} at ${clock(event.time)}`}
                      busy={ack.isPending && ack.variables?.key === item.key}
                      onClick={() => ack.mutate(item)}
                    >
                      Acknowledge
                    </Button>
                  ) : null}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <div className="mt-2 flex items-center gap-3 text-xs text-slate-400">
        {shown < events.length && (
          <Button variant="ghost" className="text-xs" onClick={() => setShown((n) => n + PAGE)}>
            Show more
          </Button>
        )}
        {more && shown >= events.length && <span>Showing the newest {events.length} events of today.</span>}
      </div>
    </div>
  );
}
