/**
 * Integrations: the secrets the action nodes read (WhatsApp, Telegram, SMTP, webhook
 * tokens), kept in the secrets store and never shown — an input is write-only and is
 * emptied once saved. Also the site settings (admins).
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { KeyRound, Plus } from "lucide-react";
import { useState, type FormEvent } from "react";
import toast from "react-hot-toast";
import { Link } from "react-router-dom";
import { api, ApiError, errorMessage } from "../../api/client";
import { dateTime } from "../../lib/format";
import { useCan } from "../../stores/auth";
import { Button, Card, EmptyState, ErrorNote, Field, inputClass, Spinner } from "../ui";
import {
  formFieldErrors,
  KNOWN_SECRETS,
  normaliseIntegrations,
  SECRET_NAME_PATTERN,
  secretGroup,
  secretPlaceholder,
  secretSource,
  type Integration,
} from "./lib";

const INTEGRATIONS_KEY = ["integrations"] as const;

export function IntegrationsTab() {
  const isAdmin = useCan("admin");
  const integrations = useQuery({
    queryKey: INTEGRATIONS_KEY,
    queryFn: async () => normaliseIntegrations(await api<unknown>("/integrations")),
  });
  const groups = new Map<string, Integration[]>();
  for (const item of integrations.data ?? []) {
    const group = secretGroup(item.name);
    groups.set(group, [...(groups.get(group) ?? []), item]);
  }

  return (
    <div className="space-y-4">
      <Card title="Integrations and secrets">
        <p className="mb-4 text-sm text-slate-600">
          Tokens and passwords of the messaging services live in the secrets store (encrypted); pipelines name a secret (for
          example <code className="rounded bg-slate-100 px-1">telegram_bot_token</code>), never its value. A stored value is
          never shown again: type a new one to replace it. Recipients, hosts and chat ids are set on the pipeline's nodes. A
          value in the service's environment (<code className="rounded bg-slate-100 px-1">AIOS_SECRET_NAME</code>) wins over the
          one set here, which wins over the service's secrets file.
        </p>
        {integrations.isPending ? (
          <Spinner />
        ) : integrations.isError ? (
          integrations.error instanceof ApiError && integrations.error.status === 403 ? (
            <EmptyState>Only administrators see and change integrations.</EmptyState>
          ) : (
            <ErrorNote error={integrations.error} />
          )
        ) : (
          <div className="space-y-5">
            {[...groups.entries()].map(([group, items]) => (
              <section key={group} aria-label={group}>
                <h3 className="mb-2 text-sm font-semibold text-slate-700">{group}</h3>
                <ul className="divide-y divide-slate-100 rounded-md border border-slate-200">
                  {items.map((item) => (
                    <SecretRow key={item.name} item={item} editable={isAdmin} />
                  ))}
                </ul>
              </section>
            ))}
            {isAdmin && <NewSecret existing={integrations.data?.map((i) => i.name) ?? []} />}
          </div>
        )}
      </Card>
      {isAdmin && <SiteSettingsCard />}
    </div>
  );
}

function SecretRow({ item, editable }: { item: Integration; editable: boolean }) {
  const queryClient = useQueryClient();
  const [value, setValue] = useState("");
  const known = KNOWN_SECRETS.find((k) => k.name === item.name);
  const label = item.title || known?.label || item.name;
  const inputId = `secret-${item.name}`;
  const source = secretSource(item);
  const save = useMutation({
    mutationFn: (v: string) => api(`/integrations/${encodeURIComponent(item.name)}`, { method: "PUT", body: { value: v } }),
    onSuccess: async () => {
      setValue(""); // write-only: the value leaves the page once stored
      toast.success(`${label} saved`);
      await queryClient.invalidateQueries({ queryKey: INTEGRATIONS_KEY });
    },
    onError: (err) => toast.error(errorMessage(err)),
  });
  const clear = useMutation({
    mutationFn: () => api(`/integrations/${encodeURIComponent(item.name)}`, { method: "DELETE" }),
    onSuccess: async () => {
      toast.success(`${label} removed`);
      await queryClient.invalidateQueries({ queryKey: INTEGRATIONS_KEY });
    },
    onError: (err) => toast.error(errorMessage(err)),
  });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    if (value) save.mutate(value);
  };
  const uses = item.used_by ?? [];
  return (
    <li className="flex flex-wrap items-center gap-3 px-3 py-2.5" data-testid={`secret-${item.name}`}>
      <div className="min-w-64 flex-1">
        <div className="flex items-center gap-2 text-sm font-medium text-slate-800">
          <KeyRound className="h-4 w-4 text-slate-400" aria-hidden />
          <label htmlFor={inputId}>{label}</label>
        </div>
        <div className="mt-0.5 text-xs text-slate-500">
          <code>{item.name}</code>
          {(item.description || known?.help) && <> · {item.description || known?.help}</>}
        </div>
        {uses.length > 0 && (
          <div className="mt-0.5 text-xs text-slate-500">
            Used by{" "}
            {uses.slice(0, 3).map((u, i) => (
              <span key={`${u.pipeline_id}/${u.node_id}/${u.field}`}>
                {i > 0 && ", "}
                <Link className="text-sky-700 hover:underline" to={`/pipelines/${encodeURIComponent(u.pipeline_id)}`}>
                  {u.pipeline_name}
                </Link>{" "}
                ({u.node_id})
              </span>
            ))}
            {uses.length > 3 && <> and {uses.length - 3} more</>}
          </div>
        )}
        {item.source === "env" && item.stored && (
          <div className="mt-0.5 text-xs text-amber-700">A value is also stored here, but the environment's value is the one in use.</div>
        )}
      </div>
      <div className="text-right">
        <span
          className={
            item.set
              ? "rounded-full bg-emerald-50 px-2 py-0.5 text-xs font-medium text-emerald-700 ring-1 ring-emerald-200"
              : "rounded-full bg-slate-100 px-2 py-0.5 text-xs font-medium text-slate-600 ring-1 ring-slate-200"
          }
          data-testid="secret-state"
        >
          {item.set ? `Set ${item.masked ?? ""}`.trim() : "Not set"}
        </span>
        {source && <div className="mt-0.5 text-xs text-slate-500">{source}</div>}
        {item.stored && item.updated_at && (
          <div className="text-xs text-slate-400">
            {dateTime(item.updated_at)}
            {item.updated_by && ` by ${item.updated_by}`}
          </div>
        )}
      </div>
      {editable ? (
        <form className="flex items-center gap-2" onSubmit={onSubmit} aria-label={`Set ${item.name}`}>
          <input
            id={inputId}
            type="password"
            autoComplete="new-password"
            className={`${inputClass} w-56`}
            placeholder={secretPlaceholder(item)}
            value={value}
            onChange={(e) => setValue(e.target.value)}
          />
          <Button type="submit" aria-label={`Save ${item.name}`} busy={save.isPending} disabled={!value}>
            Save
          </Button>
          {item.stored && (
            <Button variant="ghost" aria-label={`Remove ${item.name}`} busy={clear.isPending} onClick={() => clear.mutate()}>
              Remove
            </Button>
          )}
        </form>
      ) : (
        <input id={inputId} type="password" className={`${inputClass} w-56`} placeholder={secretPlaceholder(item)} disabled readOnly />
      )}
    </li>
  );
}

function NewSecret({ existing }: { existing: string[] }) {
  const queryClient = useQueryClient();
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const [errors, setErrors] = useState<{ name?: string; value?: string }>({});
  const save = useMutation({
    mutationFn: () => api(`/integrations/${encodeURIComponent(name.trim())}`, { method: "PUT", body: { value } }),
    onSuccess: async () => {
      toast.success(`Secret ${name.trim()} saved`);
      setName("");
      setValue("");
      await queryClient.invalidateQueries({ queryKey: INTEGRATIONS_KEY });
    },
    onError: (err) => {
      const fields = formFieldErrors(err, ["name", "value"]);
      if (Object.keys(fields).length) setErrors(fields);
      else toast.error(errorMessage(err));
    },
  });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    const problems: { name?: string; value?: string } = {};
    const n = name.trim();
    if (!SECRET_NAME_PATTERN.test(n)) problems.name = "A letter, then letters, digits and _ . - (up to 128)";
    else if (existing.includes(n)) problems.name = "This secret is listed above: replace it there";
    if (!value) problems.value = "Enter the value";
    setErrors(problems);
    if (!problems.name && !problems.value) save.mutate();
  };
  return (
    <form onSubmit={onSubmit} className="rounded-md border border-dashed border-slate-300 p-3" aria-label="Add a secret">
      <h3 className="mb-2 text-sm font-semibold text-slate-700">Add a secret</h3>
      <p className="mb-3 text-xs text-slate-500">
        For a webhook's shared token or HMAC key (the webhook node's <code>secret_name</code>), an HTTP POST signing key, or any
        other name a node refers to.
      </p>
      <div className="grid gap-3 md:grid-cols-[1fr_1fr_auto] md:items-start">
        <Field label="Secret name" error={errors.name}>
          <input className={inputClass} value={name} onChange={(e) => setName(e.target.value)} placeholder="webhook_token" autoComplete="off" />
        </Field>
        <Field label="Secret value" error={errors.value}>
          <input type="password" className={inputClass} value={value} onChange={(e) => setValue(e.target.value)} autoComplete="new-password" />
        </Field>
        <Button type="submit" className="md:mt-6" busy={save.isPending}>
          <Plus className="h-4 w-4" aria-hidden />
          Add secret
        </Button>
      </div>
    </form>
  );
}

interface SiteSettings {
  allow_pending_devices: boolean;
  forced_by_configuration: boolean;
  [key: string]: unknown;
}

function SiteSettingsCard() {
  const queryClient = useQueryClient();
  const settings = useQuery({ queryKey: ["settings"], queryFn: () => api<SiteSettings>("/settings") });
  const update = useMutation({
    mutationFn: (body: Partial<SiteSettings>) => api<SiteSettings>("/settings", { method: "PUT", body }),
    onSuccess: (next) => {
      queryClient.setQueryData(["settings"], next);
      toast.success("Site settings saved");
    },
    onError: (err) => toast.error(errorMessage(err)),
  });
  return (
    <Card title="Site settings">
      {settings.isPending ? (
        <Spinner />
      ) : settings.isError ? (
        <ErrorNote error={settings.error} />
      ) : (
        <div className="space-y-2 text-sm">
          <label className="flex items-start gap-2">
            <input
              type="checkbox"
              className="mt-0.5 h-4 w-4"
              checked={settings.data.allow_pending_devices}
              disabled={settings.data.forced_by_configuration || update.isPending}
              onChange={(e) => update.mutate({ allow_pending_devices: e.target.checked })}
            />
            <span>
              <span className="font-medium text-slate-800">Register unknown devices as pending</span>
              <span className="block text-xs text-slate-500">
                A device that publishes before it is created is kept as pending (its messages are stored) until an operator
                approves it in Fleet Management. Off: messages of unknown devices are dropped.
              </span>
              {settings.data.forced_by_configuration && (
                <span className="mt-1 block text-xs text-amber-700">
                  On by the service's configuration (AIOS_ALLOW_PENDING_DEVICES); change it there.
                </span>
              )}
            </span>
          </label>
          <p className="pt-2 text-xs text-slate-500">
            Device status thresholds (warning and offline after silence, health limits) are set per device kind by the service;
            see the user guide.
          </p>
        </div>
      )}
    </Card>
  );
}
