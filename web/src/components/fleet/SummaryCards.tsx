/** The fleet in four numbers: total, online, offline, warnings (`GET /analytics/devices`). */
import clsx from "clsx";
import { count } from "../../lib/format";
import { STATUS_COLOURS } from "../ui";
import type { DeviceAnalytics, DeviceStatusName } from "./types";

interface CardSpec {
  key: "total" | DeviceStatusName;
  label: string;
  colour?: string;
}

const CARDS: CardSpec[] = [
  { key: "total", label: "Total devices" },
  { key: "online", label: "Online", colour: STATUS_COLOURS.online },
  { key: "offline", label: "Offline", colour: STATUS_COLOURS.offline },
  { key: "warning", label: "Warnings", colour: STATUS_COLOURS.warning },
];

export function SummaryCards({
  analytics,
  active,
  onPick,
}: {
  analytics: DeviceAnalytics | undefined;
  /** The status filter in force (its card is shown pressed). */
  active?: DeviceStatusName | "";
  /** Filter the list by a status (or clear the filter with "total"). */
  onPick?: (key: CardSpec["key"]) => void;
}) {
  return (
    <div className="mb-5 grid grid-cols-2 gap-3 lg:grid-cols-4" aria-label="Fleet summary" role="group">
      {CARDS.map((card) => {
        const pressed = card.key === "total" ? !active : active === card.key;
        return (
          <button
            key={card.key}
            type="button"
            data-testid={`summary-${card.key}`}
            aria-pressed={pressed}
            onClick={() => onPick?.(card.key)}
            className={clsx(
              "rounded-lg border bg-white p-4 text-left shadow-sm transition-colors hover:border-sky-300",
              pressed ? "border-sky-400 ring-1 ring-sky-300" : "border-slate-200",
            )}
          >
            <div className="flex items-center gap-2 text-xs font-medium uppercase tracking-wide text-slate-500">
              {card.colour && <span className="h-2.5 w-2.5 rounded-full" style={{ background: card.colour }} aria-hidden />}
              {card.label}
            </div>
            <div className="mt-1 text-2xl font-semibold text-slate-900" data-testid={`summary-${card.key}-value`}>
              {analytics ? count(analytics[card.key]) : "—"}
            </div>
          </button>
        );
      })}
    </div>
  );
}
