/** The live alert feed's rows (the dashboard's feed and the header bell's dropdown). */
import clsx from "clsx";
import { AlertTriangle, Bell, Check, Cpu, Workflow } from "lucide-react";
import { acknowledgePath, useAcknowledge } from "../../hooks/useAcknowledge";
import { dateTime, timeAgo } from "../../lib/format";
import type { FeedItem } from "../../stores/alerts";
import { isUnread } from "../../stores/alerts";
import { useCan } from "../../stores/auth";
import { Button, EmptyState } from "../ui";
import { severityOf, severityStyle } from "./severity";

export function AlertFeedList({
  items,
  compact = false,
  empty = "No alerts or events yet.",
}: {
  items: FeedItem[];
  compact?: boolean;
  empty?: string;
}) {
  const canAck = useCan("operator");
  const ack = useAcknowledge();
  if (items.length === 0) return <EmptyState>{empty}</EmptyState>;
  return (
    <ul className="divide-y divide-slate-100" aria-label="Alert feed">
      {items.map((item) => {
        const style = severityStyle(item.severity);
        const ackable = canAck && acknowledgePath(item) !== null;
        const Icon = item.kind === "alert" ? (severityOf(item.severity) === "critical" ? AlertTriangle : Bell) : Workflow;
        return (
          <li
            key={item.key}
            data-testid="feed-item"
            data-kind={item.kind}
            data-unread={isUnread(item) ? "true" : "false"}
            className={clsx("flex items-start gap-2.5", compact ? "px-3 py-2" : "py-2.5")}
          >
            <span className={clsx("mt-0.5 rounded-full p-1 ring-1", style.chip)} aria-hidden>
              <Icon className="h-3.5 w-3.5" />
            </span>
            <div className="min-w-0 flex-1">
              <div className="flex items-baseline justify-between gap-2">
                <p className={clsx("truncate text-sm", isUnread(item) ? "font-semibold text-slate-900" : "text-slate-700")}>
                  {item.title}
                </p>
                <time className="shrink-0 text-xs text-slate-400" dateTime={item.time} title={dateTime(item.time)}>
                  {timeAgo(item.time)}
                </time>
              </div>
              <p className="flex items-center gap-1 truncate text-xs text-slate-500">
                {item.kind === "alert" ? <Cpu className="h-3 w-3" aria-hidden /> : null}
                <span className="truncate">
                  {item.source}
                  {item.kind === "event" && item.deviceId ? ` · ${item.deviceId}` : ""}
                </span>
                <span className={clsx("ml-1 rounded px-1 ring-1", style.chip)}>{item.severity}</span>
                {item.kind === "alert" && !item.active && <span className="ml-1 text-slate-400">cleared</span>}
              </p>
              {item.acknowledgedBy ? (
                <p className="mt-0.5 flex items-center gap-1 text-xs text-emerald-700">
                  <Check className="h-3 w-3" aria-hidden /> Acknowledged by {item.acknowledgedBy}
                </p>
              ) : null}
            </div>
            {ackable && (
              <Button
                variant="secondary"
                className="shrink-0 px-2 py-0.5 text-xs"
                aria-label={`Acknowledge ${item.title} (${item.source})`}
                busy={ack.isPending && ack.variables?.key === item.key}
                onClick={() => ack.mutate(item)}
              >
                Acknowledge
              </Button>
            )}
          </li>
        );
      })}
    </ul>
  );
}
