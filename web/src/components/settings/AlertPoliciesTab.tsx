/**
 * Alert policies: the fleet's alert rules (offline for N minutes, a metric above or below a
 * threshold) across every device. Operators add and delete them; viewers read.
 */
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import clsx from "clsx";
import { Plus, Trash2 } from "lucide-react";
import { useEffect, useState } from "react";
import { useForm } from "react-hook-form";
import toast from "react-hot-toast";
import { Link } from "react-router-dom";
import { api, errorMessage } from "../../api/client";
import type { AlertRule, Device, Page } from "../../api/types";
import { useCan } from "../../stores/auth";
import { Button, Card, EmptyState, ErrorNote, Field, inputClass, LoadMore, Modal, Spinner } from "../ui";
import { alertRuleBody, describeRule, formFieldErrors, KNOWN_METRICS, RULE_KINDS, type RuleFormValues } from "./lib";

const RULES_KEY = ["alert-rules"] as const;

const SEVERITY_STYLE: Record<string, string> = {
  info: "bg-sky-50 text-sky-700 ring-sky-200",
  warning: "bg-amber-50 text-amber-800 ring-amber-200",
  critical: "bg-red-50 text-red-700 ring-red-200",
};

export function SeverityBadge({ severity }: { severity: string }) {
  return (
    <span className={clsx("rounded-full px-2 py-0.5 text-xs font-medium ring-1", SEVERITY_STYLE[severity] ?? SEVERITY_STYLE.info)}>
      {severity}
    </span>
  );
}

export function AlertPoliciesTab() {
  const canEdit = useCan("operator");
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<AlertRule | null>(null);
  const rules = useInfiniteQuery({
    queryKey: RULES_KEY,
    queryFn: ({ pageParam }) => api<Page<AlertRule>>("/alert-rules", { query: { limit: 500, cursor: pageParam } }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  // device names for the table (the first 1000 devices; others show their id)
  const devices = useQuery({
    queryKey: ["devices", "names"],
    queryFn: () => api<Page<Device>>("/devices", { query: { limit: 1000 } }),
    staleTime: 60_000,
  });
  const names = new Map((devices.data?.items ?? []).map((d) => [d.id, d.name]));
  const items = rules.data?.pages.flatMap((p) => p.items) ?? [];

  return (
    <div className="space-y-4">
      <Card
        title="Alert policies"
        actions={
          canEdit && (
            <Button onClick={() => setCreating(true)}>
              <Plus className="h-4 w-4" aria-hidden />
              New alert rule
            </Button>
          )
        }
      >
        <p className="mb-3 text-sm text-slate-600">
          Each rule watches one device and raises at most one active alert at a time, cleared when the condition ends. Alerts
          appear in the bell, on the dashboard and in the device's history.
        </p>
        {rules.isPending ? (
          <Spinner />
        ) : rules.isError ? (
          <ErrorNote error={rules.error} />
        ) : items.length === 0 ? (
          <EmptyState>No alert rules yet.{canEdit && " Add one with “New alert rule”."}</EmptyState>
        ) : (
          <div className="overflow-x-auto">
            <table className="w-full text-left text-sm" aria-label="Alert rules">
              <thead className="text-xs uppercase text-slate-500">
                <tr>
                  <th className="py-2 pr-3 font-medium">Device</th>
                  <th className="py-2 pr-3 font-medium">Condition</th>
                  <th className="py-2 pr-3 font-medium">Threshold</th>
                  <th className="py-2 pr-3 font-medium">For</th>
                  <th className="py-2 pr-3 font-medium">Severity</th>
                  <th className="py-2 pr-3 font-medium">Enabled</th>
                  {canEdit && (
                    <th className="py-2 font-medium">
                      <span className="sr-only">Actions</span>
                    </th>
                  )}
                </tr>
              </thead>
              <tbody className="divide-y divide-slate-100">
                {items.map((rule) => (
                  <tr key={rule.id} data-testid={`rule-${rule.id}`}>
                    <td className="py-2 pr-3">
                      <Link className="font-medium text-sky-700 hover:underline" to={`/fleet/${encodeURIComponent(rule.device_id)}`}>
                        {names.get(rule.device_id) ?? rule.device_id}
                      </Link>
                      {names.has(rule.device_id) && <div className="text-xs text-slate-400">{rule.device_id}</div>}
                    </td>
                    <td className="py-2 pr-3">{describeRule(rule)}</td>
                    <td className="py-2 pr-3">{rule.kind === "offline" ? "—" : rule.threshold}</td>
                    <td className="py-2 pr-3">{rule.for_minutes ? `${rule.for_minutes} min` : "at once"}</td>
                    <td className="py-2 pr-3">
                      <SeverityBadge severity={rule.severity ?? "warning"} />
                    </td>
                    <td className="py-2 pr-3">{rule.enabled === false ? "No" : "Yes"}</td>
                    {canEdit && (
                      <td className="py-2 text-right">
                        <Button variant="ghost" aria-label={`Delete rule ${describeRule(rule)} on ${rule.device_id}`} onClick={() => setDeleting(rule)}>
                          <Trash2 className="h-4 w-4" aria-hidden />
                        </Button>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
            <LoadMore query={rules} />
          </div>
        )}
      </Card>
      {creating && <CreateRuleModal onClose={() => setCreating(false)} />}
      {deleting && <DeleteRuleModal rule={deleting} name={names.get(deleting.device_id)} onClose={() => setDeleting(null)} />}
    </div>
  );
}

function useDebounced<T>(value: T, ms: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const id = setTimeout(() => setDebounced(value), ms);
    return () => clearTimeout(id);
  }, [value, ms]);
  return debounced;
}

function CreateRuleModal({ onClose }: { onClose: () => void }) {
  const queryClient = useQueryClient();
  const [search, setSearch] = useState("");
  const debounced = useDebounced(search.trim(), 300);
  const devices = useQuery({
    queryKey: ["devices", "picker", debounced],
    queryFn: () => api<Page<Device>>("/devices", { query: { search: debounced, limit: 100 } }),
  });
  const { register, handleSubmit, watch, setError, setValue, formState } = useForm<RuleFormValues>({
    defaultValues: { device_id: "", kind: "offline", metric: "", threshold: "", for_minutes: "5", severity: "warning", enabled: true },
  });
  const kind = watch("kind");
  const deviceId = watch("device_id");
  const options = devices.data?.items ?? [];
  useEffect(() => {
    // pick the only match of a search
    if (options.length === 1 && deviceId !== options[0].id) setValue("device_id", options[0].id);
  }, [options, deviceId, setValue]);
  const [formError, setFormError] = useState<string | null>(null);

  const onSubmit = handleSubmit(async (values) => {
    setFormError(null);
    const result = alertRuleBody(values);
    if (result.errors) {
      for (const [field, message] of Object.entries(result.errors)) setError(field as keyof RuleFormValues, { message });
      return;
    }
    try {
      await api(`/devices/${encodeURIComponent(values.device_id)}/alert-rules`, { method: "POST", body: result.body });
      toast.success("Alert rule added");
      await queryClient.invalidateQueries({ queryKey: RULES_KEY });
      onClose();
    } catch (err) {
      const fields = formFieldErrors(err, ["kind", "metric", "threshold", "for_minutes", "severity", "enabled"]);
      for (const [field, message] of Object.entries(fields)) setError(field as keyof RuleFormValues, { message });
      if (Object.keys(fields).length === 0) setFormError(errorMessage(err));
    }
  });

  return (
    <Modal
      title="New alert rule"
      open
      onClose={onClose}
      footer={
        <>
          <Button variant="secondary" onClick={onClose}>
            Cancel
          </Button>
          <Button type="submit" form="create-rule" busy={formState.isSubmitting}>
            Add rule
          </Button>
        </>
      }
    >
      <form id="create-rule" onSubmit={onSubmit} className="space-y-3" noValidate>
        <Field label="Find a device" hint="By name or id">
          <input className={inputClass} value={search} onChange={(e) => setSearch(e.target.value)} placeholder="Search…" />
        </Field>
        <Field label="Device" error={formState.errors.device_id?.message}>
          <select className={inputClass} {...register("device_id")}>
            <option value="">{devices.isPending ? "Loading devices…" : options.length ? "Choose a device" : "No device matches"}</option>
            {options.map((d) => (
              <option key={d.id} value={d.id}>
                {d.name} ({d.id}, {d.kind})
              </option>
            ))}
          </select>
        </Field>
        <Field label="Condition" error={formState.errors.kind?.message}>
          <select className={inputClass} {...register("kind")}>
            {RULE_KINDS.map((k) => (
              <option key={k.value} value={k.value}>
                {k.label}
              </option>
            ))}
          </select>
        </Field>
        {kind !== "offline" && (
          <div className="grid grid-cols-2 gap-3">
            <Field label="Metric" error={formState.errors.metric?.message} hint="A health metric or a telemetry metric of the device">
              <input className={inputClass} list="known-metrics" autoComplete="off" {...register("metric")} />
            </Field>
            <Field label="Threshold" error={formState.errors.threshold?.message}>
              <input className={inputClass} inputMode="decimal" {...register("threshold")} />
            </Field>
            <datalist id="known-metrics">
              {KNOWN_METRICS.map((m) => (
                <option key={m} value={m} />
              ))}
            </datalist>
          </div>
        )}
        <div className="grid grid-cols-2 gap-3">
          <Field
            label="For minutes"
            error={formState.errors.for_minutes?.message}
            hint={kind === "offline" ? "How long offline before the alert" : "How long beyond the threshold (0: at once)"}
          >
            <input className={inputClass} inputMode="decimal" {...register("for_minutes")} />
          </Field>
          <Field label="Severity" error={formState.errors.severity?.message}>
            <select className={inputClass} {...register("severity")}>
              <option value="info">info</option>
              <option value="warning">warning</option>
              <option value="critical">critical</option>
            </select>
          </Field>
        </div>
        <label className="flex items-center gap-2 text-sm">
          <input type="checkbox" className="h-4 w-4" {...register("enabled")} />
          Enabled
        </label>
        {formError && (
          <p role="alert" className="text-sm text-red-600">
            {formError}
          </p>
        )}
      </form>
    </Modal>
  );
}

function DeleteRuleModal({ rule, name, onClose }: { rule: AlertRule; name?: string; onClose: () => void }) {
  const queryClient = useQueryClient();
  const remove = useMutation({
    mutationFn: () => api(`/alert-rules/${encodeURIComponent(rule.id ?? "")}`, { method: "DELETE" }),
    onSuccess: async () => {
      toast.success("Alert rule deleted");
      await queryClient.invalidateQueries({ queryKey: RULES_KEY });
      onClose();
    },
    onError: (err) => toast.error(errorMessage(err)),
  });
  return (
    <Modal
      title="Delete this alert rule?"
      open
      onClose={onClose}
      footer={
        <>
          <Button variant="secondary" onClick={onClose}>
            Cancel
          </Button>
          <Button variant="danger" busy={remove.isPending} onClick={() => remove.mutate()}>
            Delete rule
          </Button>
        </>
      }
    >
      <p className="text-sm text-slate-600">
        <strong>{describeRule(rule)}</strong> on {name ?? rule.device_id}. Its active alert, if any, is cleared.
      </p>
    </Modal>
  );
}
