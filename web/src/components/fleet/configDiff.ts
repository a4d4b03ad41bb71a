/**
 * Desired versus reported configuration, key by key: the configuration objects are
 * flattened to dotted paths (`registers.0.name`), and each path is marked `same`,
 * `changed`, `desired` (set, not yet reported) or `reported` (reported, no longer desired).
 */

export type DiffState = "same" | "changed" | "desired" | "reported";

export interface DiffRow {
  path: string;
  desired: unknown;
  reported: unknown;
  state: DiffState;
}

type Json = unknown;

function isPlainObject(value: Json): value is Record<string, Json> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `{a: {b: 1}, c: [2]}` → `{"a.b": 1, "c.0": 2}`; empty objects and arrays are kept as leaves. */
export function flatten(value: Json, prefix = "", out: Record<string, Json> = {}): Record<string, Json> {
  if (isPlainObject(value) || Array.isArray(value)) {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
    if (entries.length === 0 && prefix) out[prefix] = value;
    for (const [key, child] of entries) flatten(child, prefix ? `${prefix}.${key}` : key, out);
    return out;
  }
  if (prefix) out[prefix] = value;
  return out;
}

/** Deep equality of JSON values (key order does not matter). */
export function jsonEqual(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  if (isPlainObject(a) && isPlainObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => k in b && jsonEqual(a[k], b[k]));
  }
  return false;
}

/** Every path of either configuration, sorted, with its state. */
export function diffConfig(desired: Record<string, Json> | null | undefined, reported: Record<string, Json> | null | undefined): DiffRow[] {
  const d = flatten(desired ?? {});
  const r = flatten(reported ?? {});
  const paths = Array.from(new Set([...Object.keys(d), ...Object.keys(r)])).sort();
  return paths.map((path) => {
    const inD = path in d;
    const inR = path in r;
    const state: DiffState = inD && inR ? (jsonEqual(d[path], r[path]) ? "same" : "changed") : inD ? "desired" : "reported";
    return { path, desired: d[path], reported: r[path], state };
  });
}

/** Whether the device has yet to apply what is desired (a newer version or a difference). */
export function configPending(desiredVersion: number, reportedVersion: number, rows: DiffRow[]): boolean {
  return desiredVersion > reportedVersion || rows.some((row) => row.state === "changed" || row.state === "desired");
}

/** A leaf as text: strings as they are, everything else as JSON; absent as "—". */
export function showValue(value: unknown): string {
  if (value === undefined) return "—";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}
