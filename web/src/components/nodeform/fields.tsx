/**
 * Custom form fields: an optional group (a value that may be left unset), a free-form value
 * (text, number, boolean or JSON), and the zone / line drawing over a camera snapshot.
 */
import type { FieldProps, RegistryFieldsType } from "@rjsf/utils";
import clsx from "clsx";
import { useEffect, useState } from "react";
import { inputClass } from "../ui";
import { flattenErrors, type UiSchema } from "./schema";
import { ShapeEditor } from "./ShapeEditor";
import type { SnapshotState } from "./snapshot";

/** What the dialog hands to the fields through the form's context. */
export interface NodeFormContext {
  snapshot?: SnapshotState;
  /** Camera nodes the drawing may use, when there are several. */
  cameras?: { label: string }[];
  selectedCamera?: number;
  selectCamera?: (index: number) => void;
}

function fieldErrors(props: FieldProps): string[] {
  const own = flattenErrors(props.errorSchema).map((e) => (e.path ? `${e.path}: ${e.message}` : e.message));
  return [...new Set([...(props.rawErrors ?? []), ...own])];
}

function labelOf(props: FieldProps): string {
  return (props.uiSchema?.["ui:title"] as string | undefined) ?? props.schema.title ?? props.name;
}

// ----- free-form value ------------------------------------------------------------------

/** Show a JSON value as text: strings as they are, anything else as JSON. */
export function formatLooseValue(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

/**
 * Read typed text as a JSON value: `true`/`false`, numbers, `null`, JSON lists/objects and
 * quoted strings as JSON; anything else as text. Empty text is `undefined` (unset).
 */
export function parseLooseValue(text: string): unknown {
  const t = text.trim();
  if (t === "") return undefined;
  if (t === "true") return true;
  if (t === "false") return false;
  if (t === "null") return null;
  if (/^-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?$/.test(t)) return Number(t);
  if (/^[[{"]/.test(t)) {
    try {
      return JSON.parse(t) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

function AnyValueField(props: FieldProps) {
  const { idSchema, formData, onChange, disabled, readonly, schema, required } = props;
  const id = idSchema.$id;
  const [text, setText] = useState(() => formatLooseValue(formData));
  useEffect(() => {
    // Follow outside changes (not the ones typed here).
    setText((current) => (formatLooseValue(parseLooseValue(current)) === formatLooseValue(formData) ? current : formatLooseValue(formData)));
  }, [formData]);
  const errors = fieldErrors(props);
  return (
    <div className="min-w-0">
      <label htmlFor={id} className="mb-1 block text-xs font-medium text-slate-700">
        {labelOf(props)}
        {required && (
          <span className="ml-0.5 text-red-600" aria-hidden>
            *
          </span>
        )}
      </label>
      <input
        id={id}
        className={clsx(inputClass, "font-mono", errors.length && "border-red-400")}
        value={text}
        disabled={disabled}
        readOnly={readonly}
        placeholder="text, number, true/false or [list]"
        aria-describedby={`${id}__description`}
        onChange={(e) => {
          setText(e.target.value);
          onChange(parseLooseValue(e.target.value));
        }}
      />
      <span id={`${id}__description`} className="mt-0.5 block text-xs leading-snug text-slate-500">
        {schema.description}
      </span>
      {errors.length > 0 && (
        <ul className="mt-0.5 text-xs text-red-600">
          {errors.map((e, i) => (
            <li key={i}>{e}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

// ----- optional group -------------------------------------------------------------------

function OptionalField(props: FieldProps) {
  const { schema, uiSchema, formData, onChange, registry, idSchema, disabled, readonly } = props;
  const options = (schema.anyOf ?? []) as Record<string, unknown>[];
  const inner = options.find((o) => o.type !== "null") ?? {};
  const innerUi = ((uiSchema?.["ui:options"] as { inner?: UiSchema } | undefined)?.inner ?? {}) as UiSchema;
  const isSet = formData !== undefined && formData !== null;
  const { SchemaField } = registry.fields;
  const label = labelOf(props);
  const id = idSchema.$id;
  const errors = isSet ? [] : fieldErrors(props);
  return (
    <div className="rounded-md border border-slate-200 p-3">
      <div className="flex items-start gap-2">
        <input
          id={`${id}__set`}
          type="checkbox"
          className="mt-0.5 h-4 w-4 rounded border-slate-300 text-sky-600"
          checked={isSet}
          disabled={disabled || readonly}
          onChange={(e) =>
            onChange(e.target.checked ? (registry.schemaUtils.getDefaultFormState(inner as never, undefined) ?? (inner.type === "array" ? [] : {})) : null)
          }
        />
        <div>
          <label htmlFor={`${id}__set`} className="text-sm font-medium text-slate-700">
            {label}
          </label>
          {schema.description && <span className="block text-xs leading-snug text-slate-500">{schema.description}</span>}
        </div>
      </div>
      {isSet && (
        <div className="mt-2">
          <SchemaField
            {...props}
            schema={{ ...inner, title: (inner.title as string | undefined) ?? label }}
            uiSchema={{ ...innerUi, "ui:options": { ...(innerUi["ui:options"] as object | undefined), label: false, flat: true } }}
          />
        </div>
      )}
      {errors.length > 0 && (
        <ul className="mt-1 text-xs text-red-600">
          {errors.map((e, i) => (
            <li key={i}>{e}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

// ----- drawing --------------------------------------------------------------------------

function shapeField(mode: "polygon" | "line") {
  return function DrawingField(props: FieldProps) {
    const { idSchema, formData, onChange, disabled, readonly, schema, required, formContext } = props;
    const ctx = (formContext ?? {}) as NodeFormContext;
    const picker =
      ctx.cameras && ctx.cameras.length > 1 && ctx.selectCamera ? (
        <label className="flex items-center gap-1 text-xs text-slate-600">
          Snapshot from
          <select
            className={clsx(inputClass, "w-auto py-0.5 text-xs")}
            value={ctx.selectedCamera ?? 0}
            onChange={(e) => ctx.selectCamera?.(Number(e.target.value))}
          >
            {ctx.cameras.map((c, i) => (
              <option key={i} value={i}>
                {c.label}
              </option>
            ))}
          </select>
        </label>
      ) : null;
    return (
      <ShapeEditor
        id={idSchema.$id}
        mode={mode}
        label={labelOf(props)}
        description={schema.description}
        required={required}
        value={formData}
        onChange={(points) => onChange(points)}
        disabled={disabled || readonly}
        maxPoints={typeof schema.maxItems === "number" ? schema.maxItems : undefined}
        errors={fieldErrors(props)}
        snapshot={ctx.snapshot}
        toolbarExtra={picker}
      />
    );
  };
}

export const fields: RegistryFieldsType = {
  anyValue: AnyValueField,
  optional: OptionalField,
  polygon: shapeField("polygon"),
  line: shapeField("line"),
};
