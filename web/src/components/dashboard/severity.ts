/** Colours of an alert's or event's severity (info, warning, critical; anything else as info). */
export type Severity = "info" | "warning" | "critical";

const STYLES: Record<Severity, { chip: string; dot: string }> = {
  critical: { chip: "bg-red-50 text-red-700 ring-red-200", dot: "bg-red-500" },
  warning: { chip: "bg-amber-50 text-amber-800 ring-amber-200", dot: "bg-amber-400" },
  info: { chip: "bg-sky-50 text-sky-700 ring-sky-200", dot: "bg-sky-500" },
};

export function severityOf(value: string | null | undefined): Severity {
  const v = (value ?? "").toLowerCase();
  if (v === "critical" || v === "error" || v === "alarm") return "critical";
  if (v === "warning" || v === "warn") return "warning";
  return "info";
}

export function severityStyle(value: string | null | undefined): { chip: string; dot: string } {
  return STYLES[severityOf(value)];
}
