import { ApiError } from "../../api/client";
import type { components } from "../../api/schema";
import {
  alertRuleBody,
  backupFileName,
  describeRule,
  formFieldErrors,
  isLocked,
  normaliseIntegrations,
  parseBackup,
  passwordProblem,
  profileUpdateBody,
  restoreProblems,
  restoreSummary,
  roleLabel,
  secretGroup,
  secretPlaceholder,
  secretSource,
  userCreateBody,
  type RuleFormValues,
} from "./lib";

describe("roles", () => {
  it("labels the three roles and passes an unknown one through", () => {
    expect(roleLabel("admin")).toBe("Administrator");
    expect(roleLabel("operator")).toBe("Operator");
    expect(roleLabel("viewer")).toBe("Viewer");
    expect(roleLabel("auditor")).toBe("auditor");
    expect(roleLabel(undefined)).toBe("—");
  });
});

describe("API field errors on form fields", () => {
  const error = new ApiError(422, {
    code: "validation_error",
    message: "invalid",
    details: [
      { field: "body.email", message: "String should match pattern" },
      { field: "body.unknown_thing", message: "Extra inputs are not permitted" },
      { field: "query.limit", message: "too big" },
    ],
  });

  it("strips the body. prefix and keeps only the form's fields", () => {
    expect(formFieldErrors(error, ["email", "username"])).toEqual({ email: "String should match pattern" });
  });

  it("renames API fields to form fields", () => {
    expect(formFieldErrors(error, ["mail"], { email: "mail" })).toEqual({ mail: "String should match pattern" });
  });

  it("gives nothing for errors that are not API errors", () => {
    expect(formFieldErrors(new Error("network"), ["email"])).toEqual({});
  });
});

describe("user forms", () => {
  it("trims the create body and leaves an empty e-mail out", () => {
    expect(
      userCreateBody({ username: " ana ", display_name: " Ana Lima ", email: "  ", role: "operator", password: " p4ss word " }),
    ).toEqual({ username: "ana", display_name: "Ana Lima", role: "operator", password: " p4ss word " });
    expect(userCreateBody({ username: "b", display_name: "", email: " b@x.io ", role: "viewer", password: "12345678" }).email).toBe("b@x.io");
  });

  it("sends only what changed in the profile, with the version; an emptied e-mail clears it", () => {
    const current = { display_name: "Ana", email: "ana@x.io", version: 4 };
    expect(profileUpdateBody({ display_name: "Ana", email: "ana@x.io" }, current)).toBeNull();
    expect(profileUpdateBody({ display_name: " Ana L. ", email: "ana@x.io" }, current)).toEqual({ display_name: "Ana L.", version: 4 });
    expect(profileUpdateBody({ display_name: "Ana", email: "" }, current)).toEqual({ email: null, version: 4 });
    expect(profileUpdateBody({ display_name: "Ana", email: "new@x.io" }, { ...current, email: null })).toEqual({ email: "new@x.io", version: 4 });
  });

  it("says whether an account is locked now", () => {
    const now = new Date("2026-01-05T10:00:00Z");
    expect(isLocked(null, now)).toBe(false);
    expect(isLocked("2026-01-05T10:10:00Z", now)).toBe(true);
    expect(isLocked("2026-01-05T09:59:00Z", now)).toBe(false);
    expect(isLocked("not a date", now)).toBe(false);
  });

  it("checks a new password: length, different from the current one, confirmed", () => {
    expect(passwordProblem("short", "short")).toMatch(/at least 8/);
    expect(passwordProblem("same-password", "same-password", "same-password")).toMatch(/different/);
    expect(passwordProblem("new-password-1", "new-password-2", "old")).toMatch(/differ/);
    expect(passwordProblem("new-password-1", "new-password-1", "old")).toBeNull();
  });
});

describe("alert rules", () => {
  it("describes each kind of rule", () => {
    expect(describeRule({ kind: "offline", metric: null, threshold: null, for_minutes: 5 })).toBe("offline for 5 min");
    expect(describeRule({ kind: "offline", metric: null, threshold: null, for_minutes: 0 })).toBe("offline (at once)");
    expect(describeRule({ kind: "metric_above", metric: "cpu_percent", threshold: 90, for_minutes: 2.5 })).toBe(
      "cpu_percent above 90 for 2.5 min",
    );
    expect(describeRule({ kind: "metric_below", metric: "fps", threshold: 5, for_minutes: 0 })).toBe("fps below 5");
  });

  const form = (over: Partial<RuleFormValues>): RuleFormValues => ({
    device_id: "plc-1",
    kind: "offline",
    metric: "",
    threshold: "",
    for_minutes: "10",
    severity: "critical",
    enabled: true,
    ...over,
  });

  it("builds an offline rule without metric or threshold", () => {
    expect(alertRuleBody(form({ metric: "ignored", threshold: "3" }))).toEqual({
      body: { kind: "offline", for_minutes: 10, severity: "critical", enabled: true },
      errors: null,
    });
  });

  it("builds a metric rule with numbers", () => {
    expect(alertRuleBody(form({ kind: "metric_above", metric: " temperature_c ", threshold: "75.5", for_minutes: "" })).body).toEqual({
      kind: "metric_above",
      metric: "temperature_c",
      threshold: 75.5,
      for_minutes: 0,
      severity: "critical",
      enabled: true,
    });
  });

  it("names each missing or invalid field", () => {
    const result = alertRuleBody(form({ device_id: "", kind: "metric_below", metric: "", threshold: "abc", for_minutes: "-1" }));
    expect(result.body).toBeNull();
    expect(Object.keys(result.errors ?? {}).sort()).toEqual(["device_id", "for_minutes", "metric", "threshold"]);
    expect(alertRuleBody(form({ for_minutes: "20000" })).errors).toHaveProperty("for_minutes");
  });
});

describe("integrations", () => {
  // the API's own shape (generated from its OpenAPI document)
  const item = (over: Partial<components["schemas"]["IntegrationSecretOut"]> & { name: string }): components["schemas"]["IntegrationSecretOut"] => ({
    title: "t",
    description: "d",
    env_var: "AIOS_SECRET_X",
    set: false,
    source: null,
    masked: null,
    hint: null,
    stored: false,
    updated_at: null,
    updated_by: null,
    used_by: [],
    ...over,
  });

  it("reads the list, adds the known secrets as unset and sorts by service", () => {
    const list = normaliseIntegrations({
      items: [
        item({ name: "webhook_token", set: true, source: "store", stored: true, masked: "••••abcd", hint: "abcd" }),
        item({ name: "telegram_bot_token", set: true, source: "env", masked: "•••• set" }),
        item({ name: "" }),
        "junk" as never,
      ],
    });
    expect(list.map((i) => i.name)).toEqual(["whatsapp_access_token", "telegram_bot_token", "smtp_password", "webhook_token"]);
    expect(list.find((i) => i.name === "whatsapp_access_token")).toMatchObject({ set: false, stored: false, masked: null });
    expect(list.find((i) => i.name === "telegram_bot_token")).toMatchObject({ set: true, source: "env", stored: false, masked: "•••• set" });
    expect(list.find((i) => i.name === "webhook_token")).toMatchObject({ set: true, stored: true, masked: "••••abcd" });
  });

  it("masks a set secret that came without a mask, and accepts a bare list", () => {
    const list = normaliseIntegrations([{ name: "smtp_password", set: true }, { name: "x_key", set: true, hint: "wxyz" }]);
    expect(list.find((i) => i.name === "smtp_password")?.masked).toBe("•••• set");
    expect(list.find((i) => i.name === "x_key")?.masked).toBe("••••wxyz");
    expect(normaliseIntegrations(null).every((i) => !i.set)).toBe(true);
  });

  it("groups secrets by service", () => {
    expect(secretGroup("whatsapp_access_token")).toBe("WhatsApp");
    expect(secretGroup("telegram_other_bot")).toBe("Telegram");
    expect(secretGroup("smtp_relay_password")).toBe("SMTP");
    expect(secretGroup("webhook_token")).toBe("Webhooks and other secrets");
  });

  it("shows a set secret only as a placeholder, and says where it comes from", () => {
    expect(secretPlaceholder({ set: false })).toBe("Not set");
    expect(secretPlaceholder({ set: true })).toBe("•••• set");
    expect(secretSource({ name: "a", source: "env", env_var: "AIOS_SECRET_A" })).toBe("from the service's environment (AIOS_SECRET_A)");
    expect(secretSource({ name: "a", source: "store" })).toBe("set here");
    expect(secretSource({ name: "a", source: "file" })).toBe("from the service's secrets file");
    expect(secretSource({ name: "a", source: null })).toBeNull();
  });
});

describe("backup files", () => {
  it("reads a backup and says what it holds", () => {
    const text = JSON.stringify({
      schema_version: 1,
      exported_at: "2026-01-05T10:00:00Z",
      exported_by: "admin",
      devices: [{ id: "a" }, { id: "b" }],
      pipelines: [{ id: "p" }],
      alert_rules: [],
      settings: { fleet: {} },
      users: [{ id: "u" }],
      integration_secrets: ["smtp_password"],
    });
    const parsed = parseBackup(text);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.summary.counts).toEqual([
      ["devices", 2],
      ["pipelines", 1],
      ["alert_rules", 0],
      ["users", 1],
      ["integration_secrets", 1],
    ]);
    expect(parsed.summary.meta).toEqual([
      ["schema_version", "1"],
      ["exported_at", "2026-01-05T10:00:00Z"],
      ["exported_by", "admin"],
    ]);
    expect(parsed.document.devices).toHaveLength(2);
  });

  it("refuses what is not a backup, saying why", () => {
    expect(parseBackup("")).toEqual({ ok: false, error: "The file is empty" });
    const notJson = parseBackup("{devices: [");
    expect(notJson.ok).toBe(false);
    expect(!notJson.ok && notJson.error).toMatch(/not JSON/);
    expect(parseBackup("[1, 2]")).toMatchObject({ ok: false, error: expect.stringMatching(/one JSON object/) });
    expect(parseBackup('{"devices": []}')).toMatchObject({ ok: false, error: expect.stringMatching(/no schema_version/) });
    expect(parseBackup('{"schema_version": "1"}')).toMatchObject({ ok: false, error: expect.stringMatching(/no schema_version/) });
    expect(parseBackup('{"schema_version": 1, "devices": {}}')).toMatchObject({ ok: false, error: expect.stringMatching(/devices is not a list/) });
    expect(parseBackup("{}", 60 * 1024 * 1024)).toMatchObject({ ok: false, error: expect.stringMatching(/larger than 50 MB/) });
  });

  it("names the download after the server's suggestion or the local time", () => {
    expect(backupFileName('attachment; filename="aios-backup-site.json"')).toBe("aios-backup-site.json");
    expect(backupFileName("attachment; filename*=UTF-8''a%20b.json")).toBe("a b.json");
    expect(backupFileName('attachment; filename="../../etc/x.json"')).toBe(".._.._etc_x.json");
    expect(backupFileName(null, new Date(2026, 0, 5, 9, 7))).toBe("aios-backup-2026-01-05-0907.json");
  });

  it("reads what a restore did, per kind of record", () => {
    const answer: components["schemas"]["RestoreOut"] = {
      mode: "merge",
      devices: { created: 2, updated: 1, unchanged: 4 },
      pipelines: { created: 0, updated: 1, unchanged: 0 },
      alert_rules: { created: 1, updated: 0, unchanged: 0 },
      settings: { created: 0, updated: 0, unchanged: 1 },
      users: { created: 0, updated: 0, unchanged: 2 },
      missing_secrets: ["telegram_bot_token"],
    };
    expect(restoreSummary(answer)).toEqual({
      rows: [
        { kind: "devices", created: 2, updated: 1, unchanged: 4 },
        { kind: "pipelines", created: 0, updated: 1, unchanged: 0 },
        { kind: "alert rules", created: 1, updated: 0, unchanged: 0 },
        { kind: "settings", created: 0, updated: 0, unchanged: 1 },
        { kind: "users", created: 0, updated: 0, unchanged: 2 },
      ],
      missingSecrets: ["telegram_bot_token"],
    });
    // tolerant of partial counts, odd entries and unknown parts
    expect(restoreSummary({ devices: { created: 1 }, missing_secrets: ["a", 3], other: { x: 1 } })).toEqual({
      rows: [{ kind: "devices", created: 1, updated: 0, unchanged: 0 }],
      missingSecrets: ["a"],
    });
    expect(restoreSummary("ok")).toEqual({ rows: [], missingSecrets: [] });
  });

  it("lists the problems of a refused restore with their paths", () => {
    const error = new ApiError(422, {
      code: "validation_error",
      message: "the backup is invalid",
      details: [
        { field: "body.pipelines.0.nodes", message: "Field required" },
        { path: ["devices", 2, "kind"], message: "Input should be 'camera'" } as never,
        { message: "unknown format" },
      ],
    });
    expect(restoreProblems(error)).toEqual([
      { path: "pipelines.0.nodes", message: "Field required" },
      { path: "devices.2.kind", message: "Input should be 'camera'" },
      { path: "(document)", message: "unknown format" },
    ]);
    expect(restoreProblems(new Error("x"))).toEqual([]);
  });
});
