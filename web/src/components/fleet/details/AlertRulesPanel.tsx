/**
 * The device's alert rules: offline for some minutes, or a metric (health or telemetry)
 * above/below a threshold. Operators add and delete them.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Trash } from "lucide-react";
import { useForm } from "react-hook-form";
import toast from "react-hot-toast";
import { api, errorMessage } from "../../../api/client";
import type { Page } from "../../../api/types";
import { Button, Card, EmptyState, ErrorNote, Field, inputClass, Spinner } from "../../ui";
import { formFieldErrors } from "../formErrors";
import { healthNumbers } from "../telemetry";
import type { AlertRule, AlertRuleIn, Device } from "../types";

interface RuleForm {
  kind: AlertRuleIn["kind"];
  metric: string;
  threshold: string;
  for_minutes: string;
  severity: NonNullable<AlertRuleIn["severity"]>;
}

/** A rule in words: "offline for 5 min", "cpu_percent above 90 for 2 min". */
export function describeRule(rule: Pick<AlertRule, "kind" | "metric" | "threshold" | "for_minutes">): string {
  const lasting = rule.for_minutes ? ` for ${rule.for_minutes} min` : "";
  if (rule.kind === "offline") return `offline${lasting}`;
  return `${rule.metric ?? "?"} ${rule.kind === "metric_above" ? "above" : "below"} ${rule.threshold ?? "?"}${lasting}`;
}

export function AlertRulesPanel({ device, canOperate, metrics }: { device: Device; canOperate: boolean; metrics: string[] }) {
  const queryClient = useQueryClient();
  const key = ["devices", "one", device.id, "alert-rules"];
  const rules = useQuery({
    queryKey: key,
    queryFn: ({ signal }) => api<Page<AlertRule>>(`/devices/${encodeURIComponent(device.id)}/alert-rules`, { query: { limit: 200 }, signal }),
  });
  const remove = useMutation({
    mutationFn: (id: string) => api<void>(`/alert-rules/${encodeURIComponent(id)}`, { method: "DELETE" }),
    onSuccess: () => {
      toast.success("Alert rule deleted");
      void queryClient.invalidateQueries({ queryKey: key });
    },
    onError: (err) => toast.error(errorMessage(err)),
  });
  const {
    register,
    handleSubmit,
    watch,
    reset,
    setError,
    formState: { errors },
  } = useForm<RuleForm>({ defaultValues: { kind: "offline", metric: "", threshold: "", for_minutes: "5", severity: "warning" } });
  const kind = watch("kind");
  const add = useMutation({
    mutationFn: (body: AlertRuleIn) => api<AlertRule>(`/devices/${encodeURIComponent(device.id)}/alert-rules`, { method: "POST", body }),
    onSuccess: () => {
      toast.success("Alert rule added");
      reset();
      void queryClient.invalidateQueries({ queryKey: key });
    },
    onError: (err) => {
      const fields = Object.entries(formFieldErrors(err)).filter(([name]) => ["kind", "metric", "threshold", "for_minutes", "severity"].includes(name));
      for (const [name, message] of fields) setError(name as keyof RuleForm, { type: "server", message });
      if (fields.length === 0) toast.error(errorMessage(err));
    },
  });
  const submit = handleSubmit((form) => {
    const body: AlertRuleIn = { kind: form.kind, severity: form.severity, for_minutes: Number(form.for_minutes || 0), enabled: true };
    if (form.kind !== "offline") {
      body.metric = form.metric.trim();
      body.threshold = Number(form.threshold);
    }
    add.mutate(body);
  });
  const suggestions = Array.from(new Set([...Object.keys(healthNumbers(device.health)), ...metrics])).sort();

  return (
    <div className="space-y-4">
      <Card title="Alert rules">
        {rules.isError && <ErrorNote error={rules.error} />}
        {rules.isPending && <Spinner />}
        {rules.data && rules.data.items.length === 0 && <EmptyState>No alert rules for this device.</EmptyState>}
        {rules.data && rules.data.items.length > 0 && (
          <ul className="divide-y divide-slate-100" aria-label="Alert rules">
            {rules.data.items.map((r) => (
              <li key={r.id} className="flex items-center gap-3 py-2 text-sm" data-testid="alert-rule">
                <span className="rounded-full bg-slate-100 px-2 py-0.5 text-xs">{r.severity}</span>
                <span className="flex-1">{describeRule(r)}</span>
                {!r.enabled && <span className="text-xs text-slate-400">disabled</span>}
                {canOperate && r.id && (
                  <button
                    type="button"
                    aria-label={`Delete rule ${describeRule(r)}`}
                    className="rounded p-1 text-slate-400 hover:bg-red-50 hover:text-red-600"
                    onClick={() => r.id && remove.mutate(r.id)}
                  >
                    <Trash className="h-4 w-4" />
                  </button>
                )}
              </li>
            ))}
          </ul>
        )}
      </Card>
      {canOperate && (
        <Card title="Add an alert rule">
          <form onSubmit={submit} className="grid grid-cols-2 gap-3 lg:grid-cols-5" aria-label="Add an alert rule" noValidate>
            <Field label="When" error={errors.kind?.message}>
              <select className={inputClass} {...register("kind")}>
                <option value="offline">Offline</option>
                <option value="metric_above">Metric above</option>
                <option value="metric_below">Metric below</option>
              </select>
            </Field>
            {kind !== "offline" && (
              <>
                <Field label="Metric" error={errors.metric?.message}>
                  <input className={inputClass} list={`rule-metrics-${device.id}`} autoComplete="off" {...register("metric", { required: "name the metric" })} />
                  <datalist id={`rule-metrics-${device.id}`}>
                    {suggestions.map((m) => (
                      <option key={m} value={m} />
                    ))}
                  </datalist>
                </Field>
                <Field label="Threshold" error={errors.threshold?.message}>
                  <input
                    className={inputClass}
                    inputMode="decimal"
                    {...register("threshold", { validate: (v) => (v.trim() !== "" && Number.isFinite(Number(v))) || "a number" })}
                  />
                </Field>
              </>
            )}
            <Field label="For (minutes)" error={errors.for_minutes?.message}>
              <input className={inputClass} inputMode="decimal" {...register("for_minutes", { validate: (v) => v.trim() === "" || (Number(v) >= 0 && Number.isFinite(Number(v))) || "0 or more minutes" })} />
            </Field>
            <Field label="Severity" error={errors.severity?.message}>
              <select className={inputClass} {...register("severity")}>
                <option value="info">Info</option>
                <option value="warning">Warning</option>
                <option value="critical">Critical</option>
              </select>
            </Field>
            <div className="col-span-full flex justify-end">
              <Button type="submit" busy={add.isPending}>
                Add rule
              </Button>
            </div>
          </form>
        </Card>
      )}
    </div>
  );
}
