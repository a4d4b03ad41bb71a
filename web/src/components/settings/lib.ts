/**
 * Pure helpers of the Settings and Profile pages: role names and what each role may do,
 * form values → request bodies, API field errors → form fields, alert rule wording,
 * secret (integration) listings, and reading a backup file before it is sent to restore.
 */
import { ApiError } from "../../api/client";
import type { AlertRule, Role } from "../../api/types";

// ------------------------------------------------------------------------------ roles

export const ROLES: Role[] = ["viewer", "operator", "admin"];

const ROLE_LABELS: Record<Role, string> = { viewer: "Viewer", operator: "Operator", admin: "Administrator" };

/** What each role may do (the API's permission table, in words). */
export const ROLE_DESCRIPTIONS: Record<Role, string> = {
  viewer: "Reads everything: dashboard, fleet, pipelines, runs, events, alerts and alert policies.",
  operator:
    "A viewer who also manages devices and pipelines, plays and stops pipelines, sends device commands, acknowledges alerts and events, and edits alert policies.",
  admin:
    "An operator who also manages users and roles, integrations (secrets), site settings, backup and restore, and reads the audit log.",
};

/** "Administrator" for `admin`; an unknown role is shown as given. */
export function roleLabel(role: string | null | undefined): string {
  if (!role) return "—";
  return ROLE_LABELS[role as Role] ?? role;
}

// ------------------------------------------------------------------------------ API field errors

/**
 * The API's field errors (`{"body.email": "..."}`) keyed by form field (`email`); errors
 * of fields the form does not have are left out. `rename` maps an API field to a form field.
 */
export function formFieldErrors(
  error: unknown,
  fields: readonly string[],
  rename: Record<string, string> = {},
): Record<string, string> {
  if (!(error instanceof ApiError)) return {};
  const out: Record<string, string> = {};
  for (const [path, message] of Object.entries(error.fieldErrors())) {
    const name = path.replace(/^body\./, "");
    const field = rename[name] ?? name;
    if (fields.includes(field) && !(field in out)) out[field] = message;
  }
  return out;
}

// ------------------------------------------------------------------------------ users

export interface UserFormValues {
  username: string;
  display_name: string;
  email: string;
  role: Role;
  password: string;
}

/** POST /users body: trimmed; an empty email is left out. */
export function userCreateBody(values: UserFormValues): Record<string, unknown> {
  const body: Record<string, unknown> = {
    username: values.username.trim(),
    display_name: values.display_name.trim(),
    role: values.role,
    password: values.password,
  };
  const email = values.email.trim();
  if (email) body.email = email;
  return body;
}

export interface ProfileFormValues {
  display_name: string;
  email: string;
}

/**
 * PUT /users/{id} body for a name/email change: only what changed, with the version read.
 * An email emptied is sent as `null` (clears it). `null` when nothing changed.
 */
export function profileUpdateBody(
  values: ProfileFormValues,
  current: { display_name: string; email: string | null; version: number },
): Record<string, unknown> | null {
  const body: Record<string, unknown> = {};
  const name = values.display_name.trim();
  if (name !== current.display_name) body.display_name = name;
  const email = values.email.trim();
  if (email !== (current.email ?? "")) body.email = email === "" ? null : email;
  if (Object.keys(body).length === 0) return null;
  return { ...body, version: current.version };
}

/** Whether an account is locked now (after failed sign-ins). */
export function isLocked(lockedUntil: string | null | undefined, now: Date = new Date()): boolean {
  if (!lockedUntil) return false;
  const until = new Date(lockedUntil).getTime();
  return Number.isFinite(until) && until > now.getTime();
}

export const PASSWORD_MIN = 8;

/** A new password's problem, or `null`: long enough, confirmed, different from the current one. */
export function passwordProblem(next: string, confirm: string, current?: string): string | null {
  if (next.length < PASSWORD_MIN) return `Use at least ${PASSWORD_MIN} characters`;
  if (current !== undefined && next === current) return "Choose a password different from the current one";
  if (next !== confirm) return "The two passwords differ";
  return null;
}

// ------------------------------------------------------------------------------ alert rules

export type AlertRuleKind = AlertRule["kind"];

export const RULE_KINDS: { value: AlertRuleKind; label: string }[] = [
  { value: "offline", label: "Offline for N minutes" },
  { value: "metric_above", label: "Metric above a threshold" },
  { value: "metric_below", label: "Metric below a threshold" },
];

/** Metrics the fleet knows from heartbeats (telemetry metrics of a device work too). */
export const KNOWN_METRICS = [
  "cpu_percent",
  "memory_percent",
  "disk_percent",
  "temperature_c",
  "queue_depth",
  "fps",
  "poll_success_rate",
];

function minutes(value: number): string {
  const n = Number.isInteger(value) ? String(value) : String(Number(value.toFixed(2)));
  return `${n} min`;
}

/** "offline for 5 min", "cpu_percent above 90 for 2 min", "fps below 5". */
export function describeRule(rule: Pick<AlertRule, "kind" | "metric" | "threshold" | "for_minutes">): string {
  const span = rule.for_minutes ? ` for ${minutes(rule.for_minutes)}` : "";
  if (rule.kind === "offline") return `offline${span || " (at once)"}`;
  const direction = rule.kind === "metric_above" ? "above" : "below";
  return `${rule.metric ?? "?"} ${direction} ${rule.threshold ?? "?"}${span}`;
}

export interface RuleFormValues {
  device_id: string;
  kind: AlertRuleKind;
  metric: string;
  threshold: string;
  for_minutes: string;
  severity: "info" | "warning" | "critical";
  enabled: boolean;
}

/**
 * POST /devices/{id}/alert-rules body from the form, or the problems by field. An offline
 * rule carries no metric or threshold; a metric rule needs both.
 */
export function alertRuleBody(
  values: RuleFormValues,
): { body: Record<string, unknown>; errors: null } | { body: null; errors: Record<string, string> } {
  const errors: Record<string, string> = {};
  if (!values.device_id) errors.device_id = "Choose a device";
  const forMinutes = values.for_minutes.trim() === "" ? 0 : Number(values.for_minutes);
  if (!Number.isFinite(forMinutes) || forMinutes < 0 || forMinutes > 7 * 24 * 60) {
    errors.for_minutes = "Minutes from 0 to 10080 (one week)";
  }
  const body: Record<string, unknown> = {
    kind: values.kind,
    for_minutes: forMinutes,
    severity: values.severity,
    enabled: values.enabled,
  };
  if (values.kind !== "offline") {
    const metric = values.metric.trim();
    if (!metric) errors.metric = "Name the metric (e.g. cpu_percent)";
    const threshold = values.threshold.trim() === "" ? NaN : Number(values.threshold);
    if (!Number.isFinite(threshold)) errors.threshold = "Enter a number";
    body.metric = metric;
    body.threshold = threshold;
  }
  if (Object.keys(errors).length) return { body: null, errors };
  return { body, errors: null };
}

// ------------------------------------------------------------------------------ integrations

/** Where a pipeline names a secret. */
export interface SecretUse {
  pipeline_id: string;
  pipeline_name: string;
  node_id: string;
  node_type: string;
  field: string;
}

/**
 * One secret of the secrets store as the API lists it (`GET /integrations`): never its
 * value. `source`: where the nodes find it — `env` (the service's environment, wins),
 * `store` (set from the console), `file` (the service's secrets file), `null` (not set).
 */
export interface Integration {
  name: string;
  title?: string | null;
  description?: string | null;
  env_var?: string | null;
  set: boolean;
  source?: string | null;
  /** What to display: "••••wxyz", "•••• set", or null when not set. */
  masked?: string | null;
  hint?: string | null;
  /** A value set from the console is stored (it can be removed here). */
  stored?: boolean;
  updated_at?: string | null;
  updated_by?: string | null;
  used_by?: SecretUse[];
}

interface KnownSecret {
  name: string;
  group: string;
  label: string;
  help: string;
}

/** The secrets the shipped action nodes read by default, grouped by service. */
export const KNOWN_SECRETS: KnownSecret[] = [
  {
    name: "whatsapp_access_token",
    group: "WhatsApp",
    label: "WhatsApp Cloud API access token",
    help: "Read by WhatsApp nodes (access_token_secret).",
  },
  {
    name: "telegram_bot_token",
    group: "Telegram",
    label: "Telegram bot token",
    help: "Read by Telegram nodes (bot_token_secret), e.g. 123456:ABC…",
  },
  {
    name: "smtp_password",
    group: "SMTP",
    label: "SMTP password",
    help: "Read by e-mail nodes (password_secret).",
  },
];

/** The group a secret is shown in: its service, or "Webhooks and other secrets". */
export function secretGroup(name: string): string {
  const known = KNOWN_SECRETS.find((k) => k.name === name);
  if (known) return known.group;
  if (/whatsapp/i.test(name)) return "WhatsApp";
  if (/telegram/i.test(name)) return "Telegram";
  if (/smtp|email|mail/i.test(name)) return "SMTP";
  return "Webhooks and other secrets";
}

export const SECRET_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;

const MASK = "••••";

/**
 * The API's answer (`{items}`, or a bare list) as {@link Integration}s, with the known
 * secrets added (unset) when missing, sorted by group then name.
 */
export function normaliseIntegrations(answer: unknown): Integration[] {
  let raw: unknown[] = [];
  if (Array.isArray(answer)) raw = answer;
  else if (answer && typeof answer === "object" && Array.isArray((answer as { items?: unknown }).items)) {
    raw = (answer as { items: unknown[] }).items;
  }
  const byName = new Map<string, Integration>();
  for (const entry of raw) {
    if (!entry || typeof entry !== "object") continue;
    const e = entry as Record<string, unknown>;
    const name = typeof e.name === "string" ? e.name : null;
    if (!name) continue;
    const set = e.set === true;
    const hint = typeof e.hint === "string" ? e.hint : null;
    const masked = typeof e.masked === "string" ? e.masked : set ? (hint ? MASK + hint : `${MASK} set`) : null;
    byName.set(name, {
      ...(e as Partial<Integration>),
      name,
      set,
      hint,
      masked,
      source: typeof e.source === "string" ? e.source : null,
      stored: e.stored === true,
      used_by: Array.isArray(e.used_by) ? (e.used_by as SecretUse[]) : [],
    });
  }
  for (const known of KNOWN_SECRETS) {
    if (!byName.has(known.name)) byName.set(known.name, { name: known.name, set: false, hint: null, masked: null, source: null, stored: false, used_by: [] });
  }
  const order = ["WhatsApp", "Telegram", "SMTP", "Webhooks and other secrets"];
  return [...byName.values()].sort(
    (a, b) => order.indexOf(secretGroup(a.name)) - order.indexOf(secretGroup(b.name)) || a.name.localeCompare(b.name),
  );
}

/** The write-only input's placeholder: "•••• set" when a value is in effect. */
export function secretPlaceholder(integration: Pick<Integration, "set">): string {
  return integration.set ? `${MASK} set` : "Not set";
}

/** Where a secret's value comes from, in words. */
export function secretSource(integration: Pick<Integration, "source" | "env_var" | "name">): string | null {
  switch (integration.source) {
    case "env":
      return `from the service's environment (${integration.env_var ?? "AIOS_SECRET_…"})`;
    case "store":
      return "set here";
    case "file":
      return "from the service's secrets file";
    case null:
    case undefined:
      return null;
    default:
      return integration.source;
  }
}

// ------------------------------------------------------------------------------ backup

export const BACKUP_MAX_BYTES = 50 * 1024 * 1024;

export interface BackupSummary {
  /** Top-level lists and how many records each holds, e.g. `[["devices", 5], ...]`. */
  counts: [string, number][];
  /** Other top-level fields shown as they are (format, version, created_at…). */
  meta: [string, string][];
}

export type BackupParse =
  | { ok: true; document: Record<string, unknown>; summary: BackupSummary }
  | { ok: false; error: string };

/** The record lists of a backup file, in the order they are shown. */
const BACKUP_LISTS = ["devices", "pipelines", "alert_rules", "users", "integration_secrets"];

/**
 * Read a backup file's text before it is sent to restore: one JSON object with a
 * `schema_version` (what "Download backup" gives); says what it holds. The API validates
 * it fully.
 */
export function parseBackup(text: string, size = text.length): BackupParse {
  if (size > BACKUP_MAX_BYTES) return { ok: false, error: `The file is larger than ${BACKUP_MAX_BYTES / 1024 / 1024} MB` };
  if (!text.trim()) return { ok: false, error: "The file is empty" };
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `The file is not JSON (${err instanceof Error ? err.message : String(err)})` };
  }
  if (!document || typeof document !== "object" || Array.isArray(document)) {
    return { ok: false, error: "The file is not an AIOS backup: expected one JSON object" };
  }
  const doc = document as Record<string, unknown>;
  const version = doc.schema_version;
  if (typeof version !== "number" || !Number.isInteger(version) || version < 1) {
    return { ok: false, error: "The file is not an AIOS backup: it has no schema_version" };
  }
  const counts: [string, number][] = [];
  for (const key of BACKUP_LISTS) {
    const value = doc[key];
    if (value === undefined) continue;
    if (!Array.isArray(value)) return { ok: false, error: `The file is not an AIOS backup: ${key} is not a list` };
    counts.push([key, value.length]);
  }
  const meta: [string, string][] = [["schema_version", String(version)]];
  for (const key of ["exported_at", "exported_by"]) {
    if (typeof doc[key] === "string") meta.push([key, doc[key] as string]);
  }
  return { ok: true, document: doc, summary: { counts, meta } };
}

/** `aios-backup-2026-01-05-0930.json` (local time), or the name the server suggested. */
export function backupFileName(contentDisposition: string | null, now: Date = new Date()): string {
  const match = contentDisposition?.match(/filename\*?=(?:UTF-8'')?"?([^";]+)"?/i);
  if (match) {
    const name = decodeURIComponent(match[1]).replace(/[\\/]/g, "_").trim();
    if (name) return name;
  }
  const pad = (n: number) => String(n).padStart(2, "0");
  return `aios-backup-${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}-${pad(now.getHours())}${pad(now.getMinutes())}.json`;
}

export interface RestoreRow {
  kind: string;
  created: number;
  updated: number;
  unchanged: number;
}

/**
 * What a restore did: a row per kind of record (`{"devices": {"created": 1, ...}}`), and
 * the secrets the backup names that are not set here.
 */
export function restoreSummary(answer: unknown): { rows: RestoreRow[]; missingSecrets: string[] } {
  const rows: RestoreRow[] = [];
  const missingSecrets: string[] = [];
  if (!answer || typeof answer !== "object" || Array.isArray(answer)) return { rows, missingSecrets };
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  for (const [key, value] of Object.entries(answer as Record<string, unknown>)) {
    if (key === "missing_secrets" && Array.isArray(value)) {
      missingSecrets.push(...value.filter((v): v is string => typeof v === "string"));
    } else if (value && typeof value === "object" && !Array.isArray(value)) {
      const c = value as Record<string, unknown>;
      if (!["created", "updated", "unchanged"].some((k) => k in c)) continue;
      rows.push({ kind: key.replace(/_/g, " "), created: num(c.created), updated: num(c.updated), unchanged: num(c.unchanged) });
    }
  }
  return { rows, missingSecrets };
}

/** The problems of a refused restore: `[{path, message}]` from the API's details. */
export function restoreProblems(error: unknown): { path: string; message: string }[] {
  if (!(error instanceof ApiError)) return [];
  const out: { path: string; message: string }[] = [];
  for (const d of error.details ?? []) {
    const raw = d.field ?? d.path ?? d.loc ?? d.location;
    const path = Array.isArray(raw) ? raw.join(".") : typeof raw === "string" ? raw : "";
    out.push({ path: path.replace(/^body\.?/, "") || "(document)", message: String(d.message ?? d.msg ?? "invalid") });
  }
  return out;
}
