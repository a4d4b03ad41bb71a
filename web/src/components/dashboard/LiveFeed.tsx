/** The dashboard's live alert feed: device alerts and dashboard events as they arrive. */
import clsx from "clsx";
import { useState } from "react";
import { useAlerts, type FeedItemKind } from "../../stores/alerts";
import { AlertFeedList } from "./AlertFeedList";

const FILTERS: { value: FeedItemKind | "all"; label: string }[] = [
  { value: "all", label: "All" },
  { value: "alert", label: "Alerts" },
  { value: "event", label: "Events" },
];

export function LiveFeed({ limit = 15 }: { limit?: number }) {
  const items = useAlerts((s) => s.items);
  const [filter, setFilter] = useState<FeedItemKind | "all">("all");
  const shown = items.filter((i) => filter === "all" || i.kind === filter).slice(0, limit);
  return (
    <div>
      <div role="group" aria-label="Show" className="mb-2 inline-flex rounded-md border border-slate-200 p-0.5 text-xs">
        {FILTERS.map((f) => (
          <button
            key={f.value}
            type="button"
            aria-pressed={filter === f.value}
            className={clsx("rounded px-2 py-0.5", filter === f.value ? "bg-slate-800 text-white" : "text-slate-600 hover:bg-slate-100")}
            onClick={() => setFilter(f.value)}
          >
            {f.label}
          </button>
        ))}
      </div>
      <div className="max-h-[22rem] overflow-y-auto" data-testid="live-feed">
        <AlertFeedList items={shown} empty="Waiting for alerts and events…" />
      </div>
    </div>
  );
}
