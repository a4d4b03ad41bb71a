/**
 * A compact Tailwind theme for react-jsonschema-form: templates (field, object, array,
 * input, buttons, error list) and widgets (select, checkbox, textarea, password, secret name).
 */
import {
  ADDITIONAL_PROPERTY_FLAG,
  ariaDescribedByIds,
  canExpand,
  descriptionId,
  enumOptionsIndexForValue,
  enumOptionsValueForIndex,
  errorId,
  examplesId,
  getInputProps,
  getTemplate,
  getUiOptions,
  type ArrayFieldTemplateProps,
  type BaseInputTemplateProps,
  type ErrorListProps,
  type FieldTemplateProps,
  type IconButtonProps,
  type ObjectFieldTemplateProps,
  type RegistryWidgetsType,
  type TemplatesType,
  type WidgetProps,
  type WrapIfAdditionalTemplateProps,
} from "@rjsf/utils";
import clsx from "clsx";
import { ArrowDown, ArrowUp, ChevronRight, KeyRound, Plus, Trash2 } from "lucide-react";
import type { ChangeEvent, ReactNode } from "react";
import { inputClass } from "../ui";

type Props<P> = P;

const labelClass = "mb-1 block text-xs font-medium text-slate-700";
const helpClass = "mt-0.5 block text-xs leading-snug text-slate-500";

function RequiredMark({ required }: { required?: boolean }) {
  return required ? (
    <span className="ml-0.5 text-red-600" aria-hidden>
      *
    </span>
  ) : null;
}

function ErrorLines({ id, errors }: { id: string; errors?: string[] }) {
  const list = (errors ?? []).filter(Boolean);
  if (!list.length) return null;
  return (
    <ul id={errorId(id)} className="mt-0.5 text-xs text-red-600">
      {list.map((e, i) => (
        <li key={i}>{e}</li>
      ))}
    </ul>
  );
}

function FieldTemplate(props: Props<FieldTemplateProps>) {
  const { id, label, required, displayLabel, rawDescription, rawErrors, children, hidden, registry, uiSchema, schema } = props;
  const WrapIfAdditional = getTemplate("WrapIfAdditionalTemplate", registry, getUiOptions(uiSchema));
  if (hidden) return <div className="hidden">{children}</div>;
  // Objects, arrays, booleans and custom fields render their own label, help and errors.
  const ownsDecoration = !displayLabel;
  return (
    <WrapIfAdditional {...props}>
      <div className="min-w-0" data-field={id}>
        {displayLabel && label && (
          <label htmlFor={id} className={labelClass}>
            {label}
            <RequiredMark required={required} />
          </label>
        )}
        {children}
        {displayLabel && rawDescription && (
          <span id={descriptionId(id)} className={helpClass}>
            {rawDescription}
          </span>
        )}
        {(!ownsDecoration || schema.type === "boolean") && <ErrorLines id={id} errors={rawErrors} />}
      </div>
    </WrapIfAdditional>
  );
}

function WrapIfAdditionalTemplate(props: Props<WrapIfAdditionalTemplateProps>) {
  const { id, label, onKeyChange, onDropPropertyClick, schema, children, disabled, readonly } = props;
  if (!(ADDITIONAL_PROPERTY_FLAG in schema)) return <>{children}</>;
  return (
    <div className="flex items-end gap-2">
      <div className="w-2/5">
        <label htmlFor={`${id}-key`} className={labelClass}>
          Key
        </label>
        <input
          id={`${id}-key`}
          className={inputClass}
          defaultValue={label}
          disabled={disabled || readonly}
          onBlur={(e) => onKeyChange(e.target.value)}
        />
      </div>
      <div className="min-w-0 flex-1">{children}</div>
      <IconBtn label={`Remove ${label}`} disabled={disabled || readonly} onClick={onDropPropertyClick(label)}>
        <Trash2 className="h-4 w-4" aria-hidden />
      </IconBtn>
    </div>
  );
}

/** Whether a property takes the form's full width (lists, groups, long text, drawings). */
function isWide(schema: unknown, ui: unknown): boolean {
  const s = (schema ?? {}) as Record<string, unknown>;
  const u = (ui ?? {}) as Record<string, unknown>;
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  if (u["ui:field"] === "anyValue") return false;
  return (
    type === "array" ||
    type === "object" ||
    s.anyOf !== undefined ||
    s.oneOf !== undefined ||
    u["ui:field"] !== undefined ||
    u["ui:widget"] === "textarea"
  );
}

function ObjectFieldTemplate(props: Props<ObjectFieldTemplateProps>) {
  const { title, description, properties, required, idSchema, schema, uiSchema, registry, onAddClick, disabled, readonly, formData, errorSchema } = props;
  const isRoot = idSchema.$id === registry.rootSchema?.$id || idSchema.$id === "root";
  const propSchemas = (schema.properties ?? {}) as Record<string, unknown>;
  const grid = (
    <div className="grid grid-cols-1 gap-x-4 gap-y-3 sm:grid-cols-2">
      {properties.map((p) =>
        p.hidden ? (
          <div key={p.name} className="hidden">
            {p.content}
          </div>
        ) : (
          <div key={p.name} className={clsx(isWide(propSchemas[p.name], (uiSchema ?? {})[p.name]) && "sm:col-span-2")}>
            {p.content}
          </div>
        ),
      )}
      {canExpand(schema, uiSchema, formData) && (
        <div className="sm:col-span-2">
          <Button onClick={onAddClick(schema)} disabled={disabled || readonly}>
            <Plus className="h-3.5 w-3.5" aria-hidden /> Add {title ? title.toLowerCase() : "entry"}
          </Button>
        </div>
      )}
    </div>
  );
  if (isRoot || getUiOptions(uiSchema).flat === true) return grid;
  if (/_\d+$/.test(idSchema.$id)) {
    // An item of a list: always open, numbered.
    return (
      <div className="rounded-md border border-slate-200 bg-slate-50/60 p-3">
        {title && <p className="mb-2 text-xs font-semibold text-slate-600">{title.replace(/-(\d+)$/, " $1")}</p>}
        {grid}
      </div>
    );
  }
  const hasErrors = JSON.stringify(errorSchema ?? {}).includes("__errors");
  return (
    <details className="group rounded-md border border-slate-200 bg-slate-50/60" open={required || hasErrors || undefined}>
      <summary className="flex cursor-pointer select-none items-center gap-1 px-3 py-2 text-sm font-medium text-slate-700">
        <ChevronRight className="h-4 w-4 transition-transform group-open:rotate-90" aria-hidden />
        {title}
        <RequiredMark required={required} />
      </summary>
      <div className="border-t border-slate-200 px-3 py-3">
        {description && <p className={clsx(helpClass, "mb-2")}>{description}</p>}
        {grid}
      </div>
    </details>
  );
}

function ArrayFieldTemplate(props: Props<ArrayFieldTemplateProps>) {
  const { title, schema, items, canAdd, onAddClick, disabled, readonly, required, idSchema, rawErrors, uiSchema } = props;
  const label = (getUiOptions(uiSchema).title as string | undefined) ?? title ?? schema.title;
  const tuple = Array.isArray(schema.items);
  return (
    <fieldset className="min-w-0" aria-describedby={ariaDescribedByIds(idSchema.$id)}>
      {label && (
        <legend className={labelClass}>
          {label}
          <RequiredMark required={required} />
        </legend>
      )}
      <div className={clsx(tuple ? "flex gap-2" : "space-y-1.5")}>
        {items.map((item) => (
          <div key={item.key} className={clsx("flex items-start gap-1.5", tuple && "min-w-0 flex-1")}>
            <div className="min-w-0 flex-1">{item.children}</div>
            {item.hasToolbar && !tuple && (
              <div className="flex shrink-0 items-center">
                {(item.hasMoveUp || item.hasMoveDown) && (
                  <>
                    <IconBtn label={`Move item ${item.index + 1} up`} disabled={disabled || readonly || !item.hasMoveUp} onClick={item.onReorderClick(item.index, item.index - 1)}>
                      <ArrowUp className="h-3.5 w-3.5" aria-hidden />
                    </IconBtn>
                    <IconBtn label={`Move item ${item.index + 1} down`} disabled={disabled || readonly || !item.hasMoveDown} onClick={item.onReorderClick(item.index, item.index + 1)}>
                      <ArrowDown className="h-3.5 w-3.5" aria-hidden />
                    </IconBtn>
                  </>
                )}
                {item.hasRemove && (
                  <IconBtn label={`Remove item ${item.index + 1}`} disabled={disabled || readonly} onClick={item.onDropIndexClick(item.index)}>
                    <Trash2 className="h-3.5 w-3.5" aria-hidden />
                  </IconBtn>
                )}
              </div>
            )}
          </div>
        ))}
        {!tuple && items.length === 0 && <p className="text-xs text-slate-400">None.</p>}
      </div>
      {canAdd && !tuple && (
        <Button className="mt-1.5" onClick={onAddClick} disabled={disabled || readonly}>
          <Plus className="h-3.5 w-3.5" aria-hidden /> Add{label ? ` to ${label.toLowerCase()}` : ""}
        </Button>
      )}
      {schema.description && (
        <span id={descriptionId(idSchema.$id)} className={helpClass}>
          {schema.description}
        </span>
      )}
      <ErrorLines id={idSchema.$id} errors={rawErrors} />
    </fieldset>
  );
}

function BaseInputTemplate(props: Props<BaseInputTemplateProps>) {
  const { id, value, readonly, disabled, autofocus, onBlur, onFocus, onChange, onChangeOverride, options, schema, type, placeholder, required, label, hideLabel, rawErrors } = props;
  const inputProps = getInputProps(schema, type, options);
  const inputValue = inputProps.type === "number" || inputProps.type === "integer" ? (value || value === 0 ? value : "") : value == null ? "" : value;
  const onChangeHandler = (e: ChangeEvent<HTMLInputElement>) => onChange(e.target.value === "" ? options.emptyValue : e.target.value);
  const examples = Array.isArray(schema.examples) ? (schema.examples as unknown[]) : null;
  return (
    <>
      <input
        id={id}
        name={id}
        className={clsx(inputClass, rawErrors?.length && "border-red-400")}
        readOnly={readonly}
        disabled={disabled}
        autoFocus={autofocus}
        placeholder={placeholder}
        required={required}
        value={inputValue as string | number}
        {...inputProps}
        aria-label={hideLabel ? label : undefined}
        aria-invalid={rawErrors?.length ? true : undefined}
        list={examples ? examplesId(id) : undefined}
        onChange={onChangeOverride || onChangeHandler}
        onBlur={(e) => onBlur(id, e.target.value)}
        onFocus={(e) => onFocus(id, e.target.value)}
        aria-describedby={ariaDescribedByIds(id, !!examples)}
      />
      {examples && (
        <datalist id={examplesId(id)}>
          {examples.map((ex) => (
            <option key={String(ex)} value={String(ex)} />
          ))}
        </datalist>
      )}
    </>
  );
}

function SelectWidget(props: Props<WidgetProps>) {
  const { id, options, value, required, disabled, readonly, onChange, onBlur, onFocus, schema, label, hideLabel, rawErrors, placeholder } = props;
  const { enumOptions, enumDisabled, emptyValue } = options;
  const selected = enumOptionsIndexForValue(value, enumOptions, false);
  const placeholderOption = schema.default === undefined;
  return (
    <select
      id={id}
      name={id}
      className={clsx(inputClass, rawErrors?.length && "border-red-400")}
      value={typeof selected === "undefined" ? "" : String(selected)}
      required={required}
      disabled={disabled || readonly}
      aria-label={hideLabel ? label : undefined}
      aria-describedby={ariaDescribedByIds(id)}
      onChange={(e) => onChange(enumOptionsValueForIndex(e.target.value, enumOptions, emptyValue))}
      onBlur={(e) => onBlur(id, enumOptionsValueForIndex(e.target.value, enumOptions, emptyValue))}
      onFocus={(e) => onFocus(id, enumOptionsValueForIndex(e.target.value, enumOptions, emptyValue))}
    >
      {placeholderOption && <option value="">{placeholder || "—"}</option>}
      {(enumOptions ?? []).map(({ value: v, label: l }, i) => (
        <option key={i} value={String(i)} disabled={Array.isArray(enumDisabled) && enumDisabled.includes(v)}>
          {v === null ? "(not set)" : l}
        </option>
      ))}
    </select>
  );
}

function CheckboxWidget(props: Props<WidgetProps>) {
  const { id, value, disabled, readonly, label, onChange, onBlur, onFocus, schema, uiSchema, required } = props;
  const description = (getUiOptions(uiSchema).description as string | undefined) ?? schema.description;
  return (
    <div className="flex items-start gap-2 pt-1">
      <input
        id={id}
        name={id}
        type="checkbox"
        className="mt-0.5 h-4 w-4 rounded border-slate-300 text-sky-600 focus:ring-sky-500"
        checked={typeof value === "undefined" ? false : Boolean(value)}
        disabled={disabled || readonly}
        onChange={(e) => onChange(e.target.checked)}
        onBlur={(e) => onBlur(id, e.target.checked)}
        onFocus={(e) => onFocus(id, e.target.checked)}
        aria-describedby={ariaDescribedByIds(id)}
      />
      <div>
        <label htmlFor={id} className="text-sm font-medium text-slate-700">
          {label}
          <RequiredMark required={required} />
        </label>
        {description && (
          <span id={descriptionId(id)} className={helpClass}>
            {description}
          </span>
        )}
      </div>
    </div>
  );
}

function TextareaWidget(props: Props<WidgetProps>) {
  const { id, value, disabled, readonly, onChange, onBlur, onFocus, options, rawErrors, label, hideLabel, required } = props;
  return (
    <textarea
      id={id}
      name={id}
      rows={typeof options.rows === "number" ? options.rows : 4}
      className={clsx(inputClass, "font-mono text-xs", rawErrors?.length && "border-red-400")}
      value={value == null ? "" : String(value)}
      disabled={disabled}
      readOnly={readonly}
      required={required}
      aria-label={hideLabel ? label : undefined}
      aria-describedby={ariaDescribedByIds(id)}
      onChange={(e) => onChange(e.target.value === "" ? options.emptyValue : e.target.value)}
      onBlur={(e) => onBlur(id, e.target.value)}
      onFocus={(e) => onFocus(id, e.target.value)}
    />
  );
}

/** A password typed here is sent on save and never shown back (the API does not return it). */
function PasswordWidget(props: Props<WidgetProps>) {
  const { registry, options } = props;
  const Base = getTemplate("BaseInputTemplate", registry, options);
  return <Base {...props} type="password" autoComplete="new-password" />;
}

/**
 * The name of a secret in the secrets store: the value itself is set in Settings and never
 * reaches the browser, so the field holds and shows the name only.
 */
function SecretNameWidget(props: Props<WidgetProps>) {
  const { registry, options } = props;
  const Base = getTemplate("BaseInputTemplate", registry, options);
  return (
    <div className="relative">
      <KeyRound className="pointer-events-none absolute left-2 top-1/2 h-3.5 w-3.5 -translate-y-1/2 text-amber-600" aria-hidden />
      <div className="[&>input]:pl-7 [&>input]:font-mono">
        <Base {...props} type="text" autoComplete="off" spellCheck={false} placeholder="secret name" />
      </div>
      <span className="sr-only">A secret name: the value stays in the secrets store.</span>
    </div>
  );
}

function ErrorListTemplate({ errors }: ErrorListProps) {
  if (!errors.length) return null;
  return (
    <div role="alert" className="mb-3 rounded-md border border-red-200 bg-red-50 px-3 py-2 text-xs text-red-700">
      <p className="font-medium">
        {errors.length === 1 ? "1 field needs attention" : `${errors.length} fields need attention`}
      </p>
      <ul className="mt-1 list-disc pl-4">
        {errors.slice(0, 8).map((e, i) => (
          <li key={i}>{e.stack}</li>
        ))}
      </ul>
    </div>
  );
}

function Button({ children, className, ...rest }: { children: ReactNode; className?: string; onClick?: (e?: unknown) => void; disabled?: boolean }) {
  return (
    <button
      type="button"
      className={clsx(
        "inline-flex items-center gap-1 rounded-md border border-slate-300 bg-white px-2 py-1 text-xs font-medium text-slate-700 hover:bg-slate-50 disabled:cursor-not-allowed disabled:text-slate-400",
        className,
      )}
      {...rest}
    >
      {children}
    </button>
  );
}

function IconBtn({ label, children, onClick, disabled }: { label: string; children: ReactNode; onClick?: (e?: unknown) => void; disabled?: boolean }) {
  return (
    <button
      type="button"
      title={label}
      aria-label={label}
      disabled={disabled}
      onClick={onClick}
      className="rounded p-1 text-slate-500 hover:bg-slate-100 hover:text-slate-800 disabled:cursor-not-allowed disabled:text-slate-300"
    >
      {children}
    </button>
  );
}

function makeIconButton(name: string, icon: ReactNode) {
  return function RjsfIconButton(props: IconButtonProps) {
    const { disabled, onClick, className } = props;
    return (
      <button
        type="button"
        aria-label={name}
        title={name}
        disabled={disabled}
        onClick={onClick}
        className={clsx("rounded p-1 text-slate-500 hover:bg-slate-100 disabled:text-slate-300", className)}
      >
        {icon}
      </button>
    );
  };
}

function TitleFieldTemplate({ title, id, required }: { title: string; id: string; required?: boolean }) {
  return (
    <h3 id={id} className="text-sm font-semibold text-slate-700">
      {title}
      <RequiredMark required={required} />
    </h3>
  );
}

function DescriptionFieldTemplate({ description, id }: { description?: ReactNode; id: string }) {
  if (!description) return null;
  return (
    <p id={id} className={helpClass}>
      {description}
    </p>
  );
}

export const templates: Partial<TemplatesType> = {
  FieldTemplate,
  ObjectFieldTemplate,
  ArrayFieldTemplate,
  BaseInputTemplate,
  WrapIfAdditionalTemplate,
  ErrorListTemplate,
  TitleFieldTemplate,
  DescriptionFieldTemplate,
  FieldErrorTemplate: () => null,
  FieldHelpTemplate: () => null,
  ButtonTemplates: {
    AddButton: (p: IconButtonProps) => (
      <Button onClick={p.onClick as (e?: unknown) => void} disabled={p.disabled}>
        <Plus className="h-3.5 w-3.5" aria-hidden /> Add
      </Button>
    ),
    RemoveButton: makeIconButton("Remove", <Trash2 className="h-3.5 w-3.5" aria-hidden />),
    MoveUpButton: makeIconButton("Move up", <ArrowUp className="h-3.5 w-3.5" aria-hidden />),
    MoveDownButton: makeIconButton("Move down", <ArrowDown className="h-3.5 w-3.5" aria-hidden />),
    CopyButton: makeIconButton("Copy", <Plus className="h-3.5 w-3.5" aria-hidden />),
    SubmitButton: () => null,
  },
};

export const widgets: RegistryWidgetsType = {
  SelectWidget,
  CheckboxWidget,
  TextareaWidget,
  PasswordWidget,
  password: PasswordWidget,
  secret: SecretNameWidget,
};
