import { describe, expect, it } from "vitest";
import catalogJson from "./__fixtures__/catalog.json";
import type { NodeCatalog } from "./catalog";
import { formatLooseValue, parseLooseValue } from "./fields";
import {
  flattenErrors,
  issuesToErrorTree,
  isLineSchema,
  isPolygonSchema,
  nodeConfigIssues,
  normalizeSchema,
  pruneConfig,
  schemaDefaults,
} from "./schema";

const catalog = catalogJson as unknown as NodeCatalog;
const schemaOf = (type: string) => {
  const n = catalog.nodes.find((x) => x.type === type);
  if (!n) throw new Error(type);
  return n.config_schema;
};
type Obj = Record<string, Record<string, unknown>>;

describe("schema defaults", () => {
  it("collects top-level and nested defaults through $ref", () => {
    const d = schemaDefaults(schemaOf("aios/zone@1")) as Record<string, unknown>;
    expect(d.name).toBe("zone");
    expect(d.anchor).toBe("bottom_center");
    expect(d.emit_enter).toBe(true);
    expect(d.evidence).toEqual({ snapshot: true, clip: false, clip_pre_seconds: 3, clip_post_seconds: 3 });
    expect("polygon" in d).toBe(false);
  });

  it("follows $ref to the retry policy and keeps null defaults", () => {
    const d = schemaDefaults(schemaOf("aios/whatsapp@1")) as Record<string, unknown>;
    expect(d.retry).toMatchObject({ max_attempts: 3, interval_seconds: 2 });
    expect(d.template_name).toBeNull();
    expect(d.access_token_secret).toBe("whatsapp_access_token");
  });

  it("is undefined for a schema without defaults", () => {
    expect(schemaDefaults({ type: "object", properties: { a: { type: "string" } } })).toBeUndefined();
  });
});

describe("normalization", () => {
  it("finds the zone's polygon and the line-crossing's line", () => {
    const zone = normalizeSchema(schemaOf("aios/zone@1"));
    expect((zone.uiSchema.polygon as Record<string, unknown>)["ui:field"]).toBe("polygon");
    expect(isPolygonSchema(schemaOf("aios/zone@1").properties && (schemaOf("aios/zone@1").properties as Obj).polygon)).toBe(true);
    const line = normalizeSchema(schemaOf("aios/line_crossing@1"));
    expect((line.uiSchema.line as Record<string, unknown>)["ui:field"]).toBe("line");
    expect(isLineSchema((schemaOf("aios/line_crossing@1").properties as Obj).line)).toBe(true);
    // prefixItems became draft-07 tuples.
    expect(JSON.stringify(line.schema)).not.toContain("prefixItems");
    expect(Array.isArray((line.schema.properties as Obj).line.items)).toBe(true);
  });

  it("turns anyOf [T, null] into a nullable T and inlines $refs", () => {
    const { schema } = normalizeSchema(schemaOf("aios/analytics@1"));
    const field = (schema.properties as Obj).field;
    expect(field.type).toEqual(["string", "null"]);
    expect(field.pattern).toBeDefined();
    const zone = normalizeSchema(schemaOf("aios/zone@1")).schema;
    expect(JSON.stringify(zone)).not.toContain("$ref");
    expect(zone.$defs).toBeUndefined();
    expect((zone.properties as Obj).evidence.title).toBe("Evidence");
  });

  it("marks secret names, passwords, optional groups and free-form values", () => {
    const http = normalizeSchema(schemaOf("aios/http_post@1")).uiSchema as Obj;
    expect(http.signing_secret["ui:widget"]).toBe("secret");
    expect(http.authorization_secret["ui:widget"]).toBe("secret");
    expect(http.url?.["ui:widget"]).toBeUndefined();
    const wa = normalizeSchema(schemaOf("aios/whatsapp@1")).uiSchema as Obj;
    expect(wa.access_token_secret["ui:widget"]).toBe("secret");
    expect(wa.message["ui:widget"]).toBe("textarea");
    const hook = normalizeSchema(schemaOf("aios/webhook@1")).uiSchema as Obj;
    expect(hook.secret_name["ui:widget"]).toBe("secret");
    const rtsp = normalizeSchema(schemaOf("aios/camera.rtsp@1"));
    expect((rtsp.uiSchema as Obj).password["ui:widget"]).toBe("password");
    expect(JSON.stringify(rtsp.schema)).not.toContain("writeOnly");
    const cond = normalizeSchema(schemaOf("aios/conditional@1")).uiSchema as Obj;
    expect(cond.time_window["ui:field"]).toBe("optional");
    expect((cond.conditions.items as Obj).value["ui:field"]).toBe("anyValue");
  });

  it("titles the options of a tagged union and hides the tag", () => {
    const { schema, uiSchema } = normalizeSchema(schemaOf("aios/cv@1"));
    const items = (schema.properties as Obj).operations.items as { oneOf: Obj[] };
    expect(items.oneOf.map((o) => o.title)).toEqual(["Crop", "Resize", "Blur", "Annotate"]);
    expect((items.oneOf[0].properties as Obj).op).toMatchObject({ enum: ["crop"], default: "crop" });
    expect(((uiSchema.operations as Obj).items as Obj).op["ui:widget"]).toBe("hidden");
  });

  it("turns patternProperties into a map with checked key names", () => {
    const { schema } = normalizeSchema(schemaOf("aios/transform@1"));
    const fields = (schema.properties as Obj).fields;
    expect(fields.patternProperties).toBeUndefined();
    expect((fields.propertyNames as Record<string, unknown>).pattern).toBeDefined();
    expect((fields.additionalProperties as Record<string, unknown>).type).toBe("string");
  });
});

describe("saving", () => {
  const zone = schemaOf("aios/zone@1");
  it("keeps what was chosen and drops untouched defaults", () => {
    const value = {
      name: "zone",
      polygon: [[0, 0], [1, 0], [1, 1]],
      anchor: "center",
      classes: [],
      emit_enter: true,
      evidence: { snapshot: true, clip: false, clip_pre_seconds: 3, clip_post_seconds: 3 },
      exit_grace_seconds: undefined,
    };
    expect(pruneConfig(value, {}, zone)).toEqual({ polygon: [[0, 0], [1, 0], [1, 1]], anchor: "center" });
  });

  it("keeps members the config already had, even at their default", () => {
    const value = { name: "zone", polygon: [[0, 0], [1, 0], [1, 1]], classes: [] };
    expect(pruneConfig(value, { name: "zone", classes: [] }, zone)).toEqual(value);
  });
});

describe("API issues", () => {
  const details = [
    { code: "invalid_config", node_id: "z1", path: ["config", "polygon", 2], message: "must be <= 1" },
    { code: "invalid_config", node_id: "z1", path: ["config"], message: "give url or host" },
    { code: "invalid_config", node_id: "other", path: ["config", "name"], message: "x" },
    { code: "cycle", node_id: "z1", path: [], message: "cycle" },
  ];

  it("keeps this node's config issues and builds the error tree", () => {
    const issues = nodeConfigIssues(details, "z1");
    expect(issues).toEqual([
      { path: ["polygon", 2], message: "must be <= 1" },
      { path: [], message: "give url or host" },
    ]);
    const tree = issuesToErrorTree(issues);
    expect(tree.__errors).toEqual(["give url or host"]);
    expect(flattenErrors(tree)).toEqual([
      { path: "polygon.2", message: "must be <= 1" },
      { path: "", message: "give url or host" },
    ]);
    expect(issuesToErrorTree([{ path: ["config", "name"], message: "too long" }])).toEqual({ name: { __errors: ["too long"] } });
  });
});

describe("free-form values", () => {
  it("reads numbers, booleans, lists and text", () => {
    expect(parseLooseValue("12")).toBe(12);
    expect(parseLooseValue("-0.5")).toBe(-0.5);
    expect(parseLooseValue("true")).toBe(true);
    expect(parseLooseValue("[1, 0]")).toEqual([1, 0]);
    expect(parseLooseValue('"12"')).toBe("12");
    expect(parseLooseValue("{{ event.data.count }}")).toBe("{{ event.data.count }}");
    expect(parseLooseValue("[broken")).toBe("[broken");
    expect(parseLooseValue("  ")).toBeUndefined();
    expect(parseLooseValue("012")).toBe("012");
  });

  it("shows values back as typed", () => {
    expect(formatLooseValue("person")).toBe("person");
    expect(formatLooseValue(3)).toBe("3");
    expect(formatLooseValue([true, false])).toBe("[true,false]");
    expect(formatLooseValue(null)).toBe("");
  });
});
