/**
 * From a node's config JSON Schema (pydantic's output) to what the form renders:
 *
 * - `$ref`s into `$defs` are inlined (a recursive reference is left as is);
 * - `anyOf [T, null]` becomes a nullable `T` (`type: [T, "null"]`) for scalars, and an
 *   optional value with a "set" switch for objects and arrays;
 * - other `anyOf`s (a value that may be text, a number or a boolean) and the empty schema
 *   get one free-form input that reads JSON-like text;
 * - `prefixItems` tuples become draft-07 `items` lists, `const` a one-value `enum`,
 *   `patternProperties` a map with `propertyNames`;
 * - the UI schema names the special inputs: polygon and line drawing, secret names,
 *   passwords, long templates.
 *
 * The result is valid draft-07 JSON Schema with the same meaning for the values the form
 * produces, so the same schema drives the form and the local validation (the server stays
 * the authority).
 */
import type { JsonSchema } from "./catalog";

export type UiSchema = Record<string, unknown>;

type S = Record<string, unknown>;

const SCALARS = new Set(["string", "number", "integer", "boolean"]);

function isObj(v: unknown): v is S {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isNullSchema(s: unknown): boolean {
  return isObj(s) && s.type === "null" && Object.keys(s).every((k) => k === "type" || k === "title");
}

/** A schema of one normalized point: `[x, y]`, two numbers in 0–1. */
export function isPointSchema(s: unknown): boolean {
  if (!isObj(s) || s.type !== "array") return false;
  const items = (s.prefixItems ?? s.items) as unknown;
  if (!Array.isArray(items) || items.length !== 2) return false;
  return items.every(
    (it) => isObj(it) && it.type === "number" && it.minimum === 0 && it.maximum === 1,
  );
}

/** A polygon: a list of points (a zone). */
export function isPolygonSchema(s: unknown): boolean {
  return isObj(s) && s.type === "array" && isPointSchema(s.items) && !Array.isArray(s.items);
}

/** A line: exactly two points (start, end). */
export function isLineSchema(s: unknown): boolean {
  if (!isObj(s) || s.type !== "array") return false;
  const items = (s.prefixItems ?? s.items) as unknown;
  return Array.isArray(items) && items.length === 2 && items.every(isPointSchema);
}

/** A field holding the name of a secret in the secrets store (never the secret itself). */
export function isSecretNameField(name: string, s: S): boolean {
  if (s.type !== "string" && !(Array.isArray(s.type) && s.type.includes("string"))) return false;
  if (/(^|_)secret$/.test(name) || name === "secret_name") return true;
  return typeof s.description === "string" && /name of (a|the) secret/i.test(s.description);
}

/** List items that are plain values go without a visible label (the list has one). */
function withHiddenLabel(item: S, ui: UiSchema): UiSchema {
  const type = Array.isArray(item.type) ? item.type.find((t) => t !== "null") : item.type;
  if (typeof type !== "string" || !SCALARS.has(type) || ui["ui:field"]) return ui;
  return { ...ui, "ui:options": { ...(ui["ui:options"] as S | undefined), label: false } };
}

interface Ctx {
  defs: S;
  /** $refs being inlined (recursion guard). */
  stack: string[];
}

function resolveRef(ref: string, ctx: Ctx): S | undefined {
  const m = /^#\/(\$defs|definitions)\/(.+)$/.exec(ref);
  if (!m) return undefined;
  const def = ctx.defs[decodeURIComponent(m[2])];
  return isObj(def) ? def : undefined;
}

/**
 * Normalize one schema node; returns the schema and the UI schema of the value it describes.
 * `name` is the property name (for secret detection).
 */
function walk(input: unknown, ctx: Ctx, name: string): [S, UiSchema] {
  if (!isObj(input)) return [{}, {}];
  let s: S = input;

  if (typeof s.$ref === "string") {
    const ref = s.$ref;
    const target = resolveRef(ref, ctx);
    if (!target || ctx.stack.includes(ref)) return [{ ...s }, {}];
    const { $ref: _ignored, ...siblings } = s;
    void _ignored;
    const [inner, ui] = walk(target, { ...ctx, stack: [...ctx.stack, ref] }, name);
    return [{ ...inner, ...siblings }, ui];
  }

  // anyOf: nullable T, or a free-form value.
  if (Array.isArray(s.anyOf)) {
    const options = s.anyOf as unknown[];
    const nonNull = options.filter((o) => !isNullSchema(o));
    const nullable = nonNull.length < options.length;
    const { anyOf: _a, ...rest } = s;
    void _a;
    if (nonNull.length === 1) {
      const [inner, ui] = walk(nonNull[0], ctx, name);
      if (!nullable) return [{ ...inner, ...rest }, ui];
      if (typeof inner.type === "string" && SCALARS.has(inner.type) && !inner.anyOf && !inner.oneOf) {
        const out: S = { ...inner, ...rest, type: [inner.type, "null"] };
        if (Array.isArray(inner.enum)) out.enum = [...inner.enum, null];
        return [out, ui];
      }
      // An optional object or array: shown with a switch that sets it or leaves it empty.
      return [
        { ...rest, anyOf: [inner, { type: "null" }] },
        { "ui:field": "optional", "ui:fieldReplacesAnyOrOneOf": true, "ui:options": { inner: ui } },
      ];
    }
    const normalized = nonNull.map((o) => walk(o, ctx, name)[0]);
    if (nullable) normalized.push({ type: "null" });
    return [
      { ...rest, anyOf: normalized },
      { "ui:field": "anyValue", "ui:fieldReplacesAnyOrOneOf": true, "ui:options": { nullable } },
    ];
  }

  // oneOf (a tagged union: pydantic's discriminator) — options inlined, the tag hidden.
  if (Array.isArray(s.oneOf)) {
    const { oneOf, discriminator, ...rest } = s;
    const tag = isObj(discriminator) && typeof discriminator.propertyName === "string" ? discriminator.propertyName : undefined;
    const ui: UiSchema = {};
    const options = (oneOf as unknown[]).map((o) => {
      const [opt, optUi] = walk(o, ctx, name);
      Object.assign(ui, optUi);
      const props = isObj(opt.properties) ? opt.properties : {};
      const tagSchema = tag ? props[tag] : undefined;
      if (tag && isObj(tagSchema) && Array.isArray(tagSchema.enum) && tagSchema.enum.length === 1) {
        ui[tag] = { "ui:widget": "hidden" };
        const value = String(tagSchema.enum[0]);
        opt.title = value.charAt(0).toUpperCase() + value.slice(1).replace(/_/g, " ");
      }
      return opt;
    });
    return [{ ...rest, oneOf: options }, ui];
  }

  s = { ...s };
  const ui: UiSchema = {};

  if ("const" in s) {
    s.enum = [s.const];
    if (s.default === undefined) s.default = s.const;
    delete s.const;
  }

  if (s.format === "password") {
    delete s.format;
    ui["ui:widget"] = "password";
  }
  delete s.writeOnly;

  const typeName = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;

  if (typeName === undefined && !s.enum && !s.properties && !s.items && !s.allOf) {
    // The empty schema: any JSON value.
    return [s, { "ui:field": "anyValue", "ui:options": { nullable: true } }];
  }

  if (typeName === "string") {
    if (isSecretNameField(name, s)) ui["ui:widget"] = "secret";
    else if (
      !ui["ui:widget"] &&
      !s.enum &&
      ((typeof s.maxLength === "number" && s.maxLength >= 5000) ||
        (typeof s.default === "string" && s.default.includes("\n")))
    ) {
      ui["ui:widget"] = "textarea";
    }
  }

  if (typeName === "array") {
    if (isLineSchema(s)) ui["ui:field"] = "line";
    else if (isPolygonSchema(s)) ui["ui:field"] = "polygon";
    if (Array.isArray(s.prefixItems)) {
      const parts = s.prefixItems.map((it) => walk(it, ctx, name));
      s.items = parts.map((p) => p[0]);
      s.additionalItems = false;
      delete s.prefixItems;
      // Tuples are short: one row, no add/remove.
      ui["ui:options"] = { ...(ui["ui:options"] as S | undefined), orderable: false, removable: false, addable: false };
      if (!ui["ui:field"]) ui.items = parts.map((p) => withHiddenLabel(p[0], p[1]));
    } else if (isObj(s.items)) {
      const [items, itemsUi] = walk(s.items, ctx, name);
      s.items = items;
      const itemUi = withHiddenLabel(items, itemsUi);
      if (Object.keys(itemUi).length) ui.items = itemUi;
    }
  }

  if (typeName === "object" || isObj(s.properties)) {
    if (isObj(s.properties)) {
      const props: S = {};
      for (const [key, value] of Object.entries(s.properties)) {
        const [p, pUi] = walk(value, ctx, key);
        props[key] = p;
        if (Object.keys(pUi).length) ui[key] = pUi;
      }
      s.properties = props;
    }
    if (isObj(s.patternProperties)) {
      const entries = Object.entries(s.patternProperties);
      if (entries.length === 1) {
        const [pattern, valueSchema] = entries[0];
        s.additionalProperties = walk(valueSchema, ctx, name)[0];
        s.propertyNames = { ...(isObj(s.propertyNames) ? s.propertyNames : {}), pattern };
      } else {
        s.additionalProperties = true;
      }
      delete s.patternProperties;
    } else if (isObj(s.additionalProperties)) {
      s.additionalProperties = walk(s.additionalProperties, ctx, name)[0];
    }
  }
  return [s, ui];
}

/** Normalize a node's config schema for the form; see the module's description. */
export function normalizeSchema(schema: JsonSchema): { schema: JsonSchema; uiSchema: UiSchema } {
  const defs = (isObj(schema.$defs) ? schema.$defs : isObj(schema.definitions) ? schema.definitions : {}) as S;
  const [out, ui] = walk(schema, { defs, stack: [] }, "");
  // Recursive references (none in today's catalog) still need their definitions.
  const text = JSON.stringify(out);
  if (!text.includes('"$ref"')) {
    delete out.$defs;
    delete out.definitions;
  }
  if (out.type === undefined) out.type = "object";
  return { schema: out, uiSchema: ui };
}

/**
 * The defaults a schema declares, as a value: an object's properties with a `default`, and
 * nested objects (with their own defaults) under properties without one. `$ref`s are followed.
 * Undefined when the schema declares none.
 */
export function schemaDefaults(schema: JsonSchema, root: JsonSchema = schema, depth = 0): unknown {
  if (depth > 20) return undefined;
  let s: S = schema;
  if (typeof s.$ref === "string") {
    const defs = (isObj(root.$defs) ? root.$defs : {}) as S;
    const target = resolveRef(s.$ref, { defs, stack: [] });
    if (!target) return s.default;
    s = { ...target, ...s };
    delete s.$ref;
  }
  if (s.default !== undefined) return structuredClone(s.default);
  if (!isObj(s.properties)) return undefined;
  const out: S = {};
  for (const [key, value] of Object.entries(s.properties)) {
    if (!isObj(value)) continue;
    const d = schemaDefaults(value, root, depth + 1);
    if (d !== undefined) out[key] = d;
  }
  return Object.keys(out).length ? out : undefined;
}

/** Deep equality of JSON values. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  if (isObj(a) && isObj(b)) {
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    return ka.length === kb.length && ka.every((k) => jsonEqual(a[k], b[k]));
  }
  return false;
}

/** Drop `undefined` members of objects, recursively (what JSON would drop). */
export function dropUndefined(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : dropUndefined(v)));
  if (isObj(value)) {
    const out: S = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = dropUndefined(v);
    return out;
  }
  return value;
}

/**
 * The config to save: the form's value without the members the node's config did not have
 * and that still hold their schema default (or are empty lists or objects), so a config
 * keeps only what was chosen and later default changes still apply.
 */
export function pruneConfig(
  value: Record<string, unknown>,
  original: Record<string, unknown>,
  schema: JsonSchema,
): Record<string, unknown> {
  const defaults = (schemaDefaults(schema) ?? {}) as S;
  const clean = dropUndefined(value) as S;
  const out: S = {};
  for (const [key, v] of Object.entries(clean)) {
    if (!(key in original)) {
      if (jsonEqual(v, defaults[key])) continue;
      if (Array.isArray(v) && v.length === 0) continue;
      if (isObj(v) && Object.keys(v).length === 0) continue;
      if (v === null && defaults[key] === undefined) continue;
    }
    out[key] = v;
  }
  return out;
}

/** A problem the API reported in a node's config (`path` relative to the config or with `config` first). */
export interface ConfigIssue {
  path: (string | number)[];
  message: string;
}

/** RJSF's error tree: `{field: {__errors: [...], nested: {...}}}`. */
export type ErrorTree = { __errors?: string[] } & { [key: string]: ErrorTree | string[] | undefined };

/** The API's issues as an error tree for the form (the leading `config` is dropped). */
export function issuesToErrorTree(issues: ConfigIssue[] | undefined): ErrorTree {
  const tree: ErrorTree = {};
  for (const issue of issues ?? []) {
    const path = issue.path[0] === "config" ? issue.path.slice(1) : issue.path;
    let node: ErrorTree = tree;
    for (const part of path) {
      const key = String(part);
      const next = node[key];
      if (!isObj(next)) node[key] = {} as ErrorTree;
      node = node[key] as ErrorTree;
    }
    node.__errors = [...(node.__errors ?? []), issue.message];
  }
  return tree;
}

/**
 * The config issues of one node among the `details` of a `pipeline_invalid` API error
 * (each `{node_id, path: ["config", ...], message}`).
 */
export function nodeConfigIssues(details: unknown, nodeId: string): ConfigIssue[] {
  if (!Array.isArray(details)) return [];
  return details
    .filter((d): d is S => isObj(d) && d.node_id === nodeId && Array.isArray(d.path) && d.path[0] === "config")
    .map((d) => ({ path: (d.path as (string | number)[]).slice(1), message: String(d.message ?? "invalid") }));
}

/** Every message in an error tree, with its dotted path ("" for the root). */
export function flattenErrors(tree: unknown, prefix = ""): { path: string; message: string }[] {
  if (!isObj(tree)) return [];
  const out: { path: string; message: string }[] = [];
  for (const [key, value] of Object.entries(tree)) {
    if (key === "__errors" && Array.isArray(value)) {
      for (const m of value) out.push({ path: prefix, message: String(m) });
    } else if (isObj(value)) {
      out.push(...flattenErrors(value, prefix ? `${prefix}.${key}` : key));
    }
  }
  return out;
}
