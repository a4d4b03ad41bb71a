import clsx from "clsx";
import { Loader2 } from "lucide-react";
import { isActive, RUN_STATUS_STYLE } from "./runs";

/** A run's status as a chip ("running" green, "failed" red…); "not running" without a run. */
export function RunStatusBadge({ status }: { status: string | null | undefined }) {
  const label = status ?? "not running";
  return (
    <span
      data-testid="run-status"
      data-status={status ?? "none"}
      className={clsx(
        "inline-flex items-center gap-1 rounded-full px-2 py-0.5 text-xs font-medium ring-1",
        RUN_STATUS_STYLE[status ?? ""] ?? "bg-slate-50 text-slate-500 ring-slate-200",
      )}
    >
      {isActive(status) && status !== "running" && <Loader2 className="h-3 w-3 animate-spin" aria-hidden />}
      {status === "running" && <span className="h-2 w-2 animate-pulse rounded-full bg-emerald-500" aria-hidden />}
      {label}
    </span>
  );
}
