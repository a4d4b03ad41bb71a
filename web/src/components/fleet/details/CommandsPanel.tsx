/**
 * Commands: operators send one (`POST /devices/{id}/command`) and follow its outcome
 * (`GET /devices/{id}/commands/{request_id}`, polled until the device answers or the
 * deadline passes); everyone sees the recent ones. A PLC gets a form of its four commands
 * with the register names it is known to have.
 */
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import clsx from "clsx";
import { Send } from "lucide-react";
import { useMemo, useState } from "react";
import { useForm } from "react-hook-form";
import toast from "react-hot-toast";
import { api, ApiError, errorMessage } from "../../../api/client";
import type { Page } from "../../../api/types";
import { dateTime } from "../../../lib/format";
import { Button, Card, EmptyState, ErrorNote, Field, inputClass, Spinner } from "../../ui";
import { CommandFormError, commandSummary, PLC_COMMANDS, plcCommandParams, registerOptions, registersFor, type PlcCommandForm } from "../commands";
import type { Command, CommandIn, Device, TelemetryPoint } from "../types";

const STATUS_STYLE: Record<string, string> = {
  pending: "bg-slate-100 text-slate-600 ring-slate-200",
  succeeded: "bg-emerald-50 text-emerald-700 ring-emerald-200",
  failed: "bg-red-50 text-red-700 ring-red-200",
  timed_out: "bg-amber-50 text-amber-800 ring-amber-200",
};

export function CommandStatus({ status }: { status: string | undefined }) {
  const s = status ?? "pending";
  return (
    <span data-status={s} className={clsx("rounded-full px-2 py-0.5 text-xs font-medium ring-1", STATUS_STYLE[s] ?? STATUS_STYLE.pending)}>
      {s.replace("_", " ")}
    </span>
  );
}

function commandPath(deviceId: string, rest = "") {
  return `/devices/${encodeURIComponent(deviceId)}${rest}`;
}

export function CommandsPanel({ device, canOperate }: { device: Device; canOperate: boolean }) {
  const [active, setActive] = useState<string | null>(null);
  const recent = useQuery({
    queryKey: ["devices", "one", device.id, "commands"],
    queryFn: ({ signal }) => api<Page<Command>>(commandPath(device.id, "/commands"), { query: { limit: 20 }, signal }),
  });
  return (
    <div className="space-y-4">
      {canOperate && (
        <Card title="Send a command">
          {device.kind === "plc" ? <PlcCommandForm device={device} onSent={setActive} /> : <GenericCommandForm device={device} onSent={setActive} />}
          {active && <CommandOutcome deviceId={device.id} requestId={active} />}
        </Card>
      )}
      <Card title="Recent commands">
        {recent.isError && <ErrorNote error={recent.error} />}
        {recent.isPending && <Spinner />}
        {recent.data && recent.data.items.length === 0 && <EmptyState>No commands sent to this device yet.</EmptyState>}
        {recent.data && recent.data.items.length > 0 && (
          <table className="w-full text-left text-sm" aria-label="Recent commands">
            <thead className="border-b border-slate-200 text-xs uppercase tracking-wide text-slate-500">
              <tr>
                <th scope="col" className="px-2 py-1.5 font-medium">Sent</th>
                <th scope="col" className="px-2 py-1.5 font-medium">Command</th>
                <th scope="col" className="px-2 py-1.5 font-medium">Parameters</th>
                <th scope="col" className="px-2 py-1.5 font-medium">Status</th>
                <th scope="col" className="px-2 py-1.5 font-medium">Outcome</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {recent.data.items.map((c) => (
                <tr key={c.request_id} data-testid="command-row">
                  <td className="whitespace-nowrap px-2 py-1.5 text-xs text-slate-500">{dateTime(c.requested_at)}</td>
                  <td className="px-2 py-1.5 font-mono text-xs">{c.name}</td>
                  <td className="break-all px-2 py-1.5 font-mono text-xs text-slate-600">{JSON.stringify(c.params ?? {})}</td>
                  <td className="px-2 py-1.5">
                    <CommandStatus status={c.status} />
                  </td>
                  <td className="px-2 py-1.5 text-xs text-slate-600">{commandSummary(c)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
    </div>
  );
}

/** The outcome of the command just sent, polled every second until it is settled. */
function CommandOutcome({ deviceId, requestId }: { deviceId: string; requestId: string }) {
  const queryClient = useQueryClient();
  const command = useQuery({
    queryKey: ["devices", "one", deviceId, "command", requestId],
    queryFn: async ({ signal }) => {
      const c = await api<Command>(commandPath(deviceId, `/commands/${encodeURIComponent(requestId)}`), { signal });
      if (c.status !== "pending") void queryClient.invalidateQueries({ queryKey: ["devices", "one", deviceId, "commands"] });
      return c;
    },
    refetchInterval: (q) => ((q.state.data?.status ?? "pending") === "pending" ? 1000 : false),
  });
  const c = command.data;
  return (
    <div className="mt-4 rounded-md border border-slate-200 bg-slate-50 p-3 text-sm" data-testid="command-outcome" data-status={c?.status ?? "pending"} aria-live="polite">
      <div className="flex items-center gap-2">
        <span className="font-medium">Outcome</span>
        <CommandStatus status={c?.status} />
        <span className="font-mono text-xs text-slate-500">{requestId}</span>
      </div>
      {command.isError ? <ErrorNote error={command.error} /> : <p className="mt-1 text-slate-700">{c ? commandSummary(c) : "sending…"}</p>}
    </div>
  );
}

function useSend(deviceId: string, onSent: (requestId: string) => void) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (body: CommandIn) => api<Command>(commandPath(deviceId, "/command"), { method: "POST", body }),
    onSuccess: (c) => {
      if (c.request_id) onSent(c.request_id);
      void queryClient.invalidateQueries({ queryKey: ["devices", "one", deviceId, "commands"] });
    },
    onError: (err) => toast.error(errorMessage(err)),
  });
}

const DATA_TYPES = ["uint16", "int16", "uint32", "int32", "float32"];

function PlcCommandForm({ device, onSent }: { device: Device; onSent: (id: string) => void }) {
  const send = useSend(device.id, onSent);
  const metrics = useQuery({
    queryKey: ["devices", "one", device.id, "metric-names"],
    queryFn: async ({ signal }) => {
      const since = new Date(Date.now() - 15 * 60_000).toISOString();
      const page = await api<Page<TelemetryPoint>>(commandPath(device.id, "/telemetry"), { query: { since, limit: 200 }, signal });
      return Array.from(new Set(page.items.map((p) => p.metric)));
    },
    staleTime: 60_000,
  });
  const options = useMemo(() => registerOptions(device, metrics.data ?? []), [device, metrics.data]);
  const {
    register,
    handleSubmit,
    watch,
    setError,
    formState: { errors },
  } = useForm<PlcCommandForm>({
    defaultValues: { command: "write_coil", target: "register", register: "", table: "", address: "", dataType: "uint16", value: "on" },
  });
  const command = watch("command");
  const target = watch("target");
  const fitting = registersFor(command, options);
  const writing = command.startsWith("write_");
  const coil = command.endsWith("_coil");

  const submit = handleSubmit((form) => {
    let params: Record<string, unknown>;
    try {
      params = plcCommandParams(form);
    } catch (err) {
      if (err instanceof CommandFormError) {
        setError(err.field, { type: "form", message: err.message });
        return;
      }
      throw err;
    }
    send.mutate(
      { name: form.command, params },
      {
        onError: (err) => {
          if (err instanceof ApiError) for (const [field, message] of Object.entries(err.fieldErrors())) if (field.startsWith("body.params")) setError("value", { type: "server", message });
        },
      },
    );
  });

  return (
    <form onSubmit={submit} className="grid grid-cols-2 gap-3 lg:grid-cols-4" aria-label="PLC command" noValidate>
      <Field label="Command">
        <select className={inputClass} aria-label="Command" {...register("command")}>
          {PLC_COMMANDS.map((c) => (
            <option key={c} value={c}>
              {c}
            </option>
          ))}
        </select>
      </Field>
      <Field label="Target">
        <select className={inputClass} aria-label="Target" {...register("target")}>
          <option value="register">Register name</option>
          <option value="address">Address</option>
        </select>
      </Field>
      {target === "register" ? (
        <Field label="Register" error={errors.register?.message} hint={fitting.length ? undefined : "No register names known; type one"}>
          <input className={inputClass} aria-label="Register" list={`registers-${device.id}`} autoComplete="off" {...register("register")} />
          <datalist id={`registers-${device.id}`}>
            {fitting.map((o) => (
              <option key={o.name} value={o.name}>
                {[o.table?.replace("_", " "), o.unit].filter(Boolean).join(", ")}
              </option>
            ))}
          </datalist>
        </Field>
      ) : (
        <>
          <Field label="Table">
            <select className={inputClass} {...register("table")}>
              <option value="">Default</option>
              {(coil ? (writing ? ["coil"] : ["coil", "discrete_input"]) : writing ? ["holding_register"] : ["holding_register", "input_register"]).map((t) => (
                <option key={t} value={t}>
                  {t.replace("_", " ")}
                </option>
              ))}
            </select>
          </Field>
          <Field label="Address" error={errors.address?.message} hint="0-based, or a reference such as 40001">
            <input className={inputClass} inputMode="numeric" {...register("address")} />
          </Field>
          {!coil && (
            <Field label="Data type">
              <select className={inputClass} {...register("dataType")}>
                {DATA_TYPES.map((t) => (
                  <option key={t} value={t}>
                    {t}
                  </option>
                ))}
              </select>
            </Field>
          )}
        </>
      )}
      {writing &&
        (coil ? (
          <Field label="Value" error={errors.value?.message}>
            <select className={inputClass} aria-label="Value" {...register("value")}>
              <option value="on">On</option>
              <option value="off">Off</option>
            </select>
          </Field>
        ) : (
          <Field label="Value" error={errors.value?.message}>
            <input className={inputClass} aria-label="Value" inputMode="decimal" {...register("value")} />
          </Field>
        ))}
      <div className="col-span-full flex justify-end">
        <Button type="submit" busy={send.isPending}>
          <Send className="h-4 w-4" aria-hidden /> Send command
        </Button>
      </div>
    </form>
  );
}

function GenericCommandForm({ device, onSent }: { device: Device; onSent: (id: string) => void }) {
  const send = useSend(device.id, onSent);
  const {
    register,
    handleSubmit,
    setError,
    formState: { errors },
  } = useForm<{ name: string; params: string }>({ defaultValues: { name: "", params: "{}" } });
  const submit = handleSubmit(({ name, params }) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(params || "{}");
    } catch {
      setError("params", { message: "not valid JSON" });
      return;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      setError("params", { message: "parameters are a JSON object" });
      return;
    }
    send.mutate({ name: name.trim(), params: parsed as Record<string, unknown> });
  });
  return (
    <form onSubmit={submit} className="grid gap-3 sm:grid-cols-2" aria-label="Device command" noValidate>
      <Field label="Command" error={errors.name?.message} hint="e.g. reboot, snapshot">
        <input className={inputClass} {...register("name", { required: "name the command" })} />
      </Field>
      <Field label="Parameters (JSON)" error={errors.params?.message}>
        <textarea className={`${inputClass} h-20 font-mono text-xs`} spellCheck={false} {...register("params")} />
      </Field>
      <div className="col-span-full flex justify-end">
        <Button type="submit" busy={send.isPending}>
          <Send className="h-4 w-4" aria-hidden /> Send command
        </Button>
      </div>
    </form>
  );
}
