/** Formatters shared by the pages (date-fns; times shown in the browser's time zone). */
import { formatDistanceToNowStrict, format, parseISO, isValid } from "date-fns";

function toDate(value: string | number | Date | null | undefined): Date | null {
  if (value === null || value === undefined || value === "") return null;
  const date = typeof value === "string" ? parseISO(value) : new Date(value);
  return isValid(date) ? date : null;
}

/** "3 min ago"; "never" for no time. */
export function timeAgo(value: string | number | Date | null | undefined, now: Date = new Date()): string {
  const date = toDate(value);
  if (!date) return "never";
  if (Math.abs(now.getTime() - date.getTime()) < 5000) return "just now";
  return formatDistanceToNowStrict(date, { addSuffix: true });
}

/** "2026-11-30 14:05:09" in local time; "—" for no time. */
export function dateTime(value: string | number | Date | null | undefined): string {
  const date = toDate(value);
  return date ? format(date, "yyyy-MM-dd HH:mm:ss") : "—";
}

/** "14:05" in local time. */
export function clock(value: string | number | Date | null | undefined): string {
  const date = toDate(value);
  return date ? format(date, "HH:mm") : "—";
}

/** Seconds as "3 d 4 h", "2 h 05 min", "4 min 10 s", "12 s". */
export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m > 0) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

/** A ratio 0..1 as "97.5 %"; "—" for none. */
export function percent(ratio: number | null | undefined, digits = 1): string {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return "—";
  return `${(ratio * 100).toFixed(digits)} %`;
}

/** 1234567 → "1,234,567". */
export function count(value: number | null | undefined): string {
  if (value === null || value === undefined) return "—";
  return value.toLocaleString("en-US");
}
