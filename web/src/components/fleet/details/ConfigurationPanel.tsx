/**
 * Desired versus reported configuration side by side, key by key, with what the device has
 * yet to apply highlighted. Operators edit the desired configuration as JSON
 * (`PUT /devices/{id}/config` with the version they read; a concurrent change is refused).
 */
import { useMutation, useQueryClient } from "@tanstack/react-query";
import clsx from "clsx";
import { useMemo, useState } from "react";
import toast from "react-hot-toast";
import { api, ApiError, errorMessage } from "../../../api/client";
import { Button, Card, EmptyState } from "../../ui";
import { configPending, diffConfig, showValue, type DiffState } from "../configDiff";
import type { Device } from "../types";

const ROW_STYLE: Record<DiffState, string> = {
  same: "",
  changed: "bg-amber-50",
  desired: "bg-amber-50",
  reported: "bg-slate-50 text-slate-500",
};

const STATE_LABEL: Record<DiffState, string> = {
  same: "",
  changed: "pending",
  desired: "pending (new)",
  reported: "reported only",
};

export function ConfigurationPanel({ device, canOperate }: { device: Device; canOperate: boolean }) {
  const rows = useMemo(() => diffConfig(device.desired_config, device.reported_config), [device.desired_config, device.reported_config]);
  const desiredVersion = device.desired_version ?? 0;
  const reportedVersion = device.reported_version ?? 0;
  const pending = configPending(desiredVersion, reportedVersion, rows);
  const [editing, setEditing] = useState(false);

  return (
    <div className="space-y-4">
      <Card
        title="Configuration"
        actions={
          canOperate &&
          !editing && (
            <Button variant="secondary" onClick={() => setEditing(true)}>
              Edit desired configuration
            </Button>
          )
        }
      >
        <div className="mb-3 flex flex-wrap items-center gap-3 text-sm">
          <span>
            Desired <strong data-testid="desired-version">v{desiredVersion}</strong>
          </span>
          <span>
            Reported <strong data-testid="reported-version">v{reportedVersion}</strong>
          </span>
          <span
            data-testid="config-sync"
            className={clsx(
              "rounded-full px-2 py-0.5 text-xs font-medium ring-1",
              pending ? "bg-amber-50 text-amber-800 ring-amber-200" : "bg-emerald-50 text-emerald-700 ring-emerald-200",
            )}
          >
            {pending ? "Pending: the device has not applied the desired configuration yet" : "In sync"}
          </span>
        </div>
        {rows.length === 0 ? (
          <EmptyState>No configuration set or reported yet.</EmptyState>
        ) : (
          <table className="w-full table-fixed text-left text-sm" aria-label="Desired and reported configuration">
            <thead className="border-b border-slate-200 text-xs uppercase tracking-wide text-slate-500">
              <tr>
                <th scope="col" className="w-1/4 px-2 py-1.5 font-medium">Key</th>
                <th scope="col" className="px-2 py-1.5 font-medium">Desired</th>
                <th scope="col" className="px-2 py-1.5 font-medium">Reported</th>
                <th scope="col" className="w-28 px-2 py-1.5 font-medium">
                  <span className="sr-only">State</span>
                </th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100 font-mono text-xs">
              {rows.map((row) => (
                <tr key={row.path} className={ROW_STYLE[row.state]} data-state={row.state}>
                  <td className="break-all px-2 py-1.5">{row.path}</td>
                  <td className={clsx("break-all px-2 py-1.5", row.state !== "same" && row.state !== "reported" && "font-semibold text-amber-900")}>
                    {showValue(row.desired)}
                  </td>
                  <td className="break-all px-2 py-1.5">{showValue(row.reported)}</td>
                  <td className="px-2 py-1.5 font-sans text-amber-800">{STATE_LABEL[row.state]}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
      {editing && canOperate && <ConfigEditor device={device} onDone={() => setEditing(false)} />}
    </div>
  );
}

function ConfigEditor({ device, onDone }: { device: Device; onDone: () => void }) {
  const queryClient = useQueryClient();
  const [text, setText] = useState(() => JSON.stringify(device.desired_config ?? {}, null, 2));
  const [problem, setProblem] = useState<string | null>(null);
  const save = useMutation({
    mutationFn: (config: Record<string, unknown>) =>
      api<Device>(`/devices/${encodeURIComponent(device.id)}/config`, {
        method: "PUT",
        body: { config, expected_version: device.desired_version ?? 0 },
      }),
    onSuccess: (updated) => {
      queryClient.setQueryData(["devices", "one", device.id], updated);
      toast.success(`Desired configuration v${updated.desired_version} sent`);
      onDone();
    },
    onError: (err) => {
      if (err instanceof ApiError && err.status === 409) {
        void queryClient.invalidateQueries({ queryKey: ["devices", "one", device.id] });
        setProblem("Someone changed the configuration meanwhile; the page shows it now. Apply your change to it again.");
        return;
      }
      const fields = err instanceof ApiError ? Object.values(err.fieldErrors()) : [];
      setProblem(fields.length ? fields.join("; ") : errorMessage(err));
    },
  });

  const submit = () => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      setProblem(`Not valid JSON: ${(err as Error).message}`);
      return;
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
      setProblem("The configuration is a JSON object ({ … }).");
      return;
    }
    setProblem(null);
    save.mutate(parsed as Record<string, unknown>);
  };

  return (
    <Card title={`Edit desired configuration (on top of v${device.desired_version ?? 0})`}>
      <label className="block text-sm">
        <span className="mb-1 block font-medium text-slate-700">Desired configuration (JSON)</span>
        <textarea
          className="block h-64 w-full rounded-md border border-slate-300 p-2 font-mono text-xs focus:border-sky-500 focus:outline-none focus:ring-1 focus:ring-sky-500"
          spellCheck={false}
          value={text}
          onChange={(e) => setText(e.target.value)}
          aria-invalid={problem !== null}
        />
      </label>
      {problem && (
        <p role="alert" className="mt-2 text-sm text-red-600">
          {problem}
        </p>
      )}
      <div className="mt-3 flex justify-end gap-2">
        <Button variant="secondary" onClick={onDone}>
          Cancel
        </Button>
        <Button onClick={submit} busy={save.isPending}>
          Send configuration
        </Button>
      </div>
    </Card>
  );
}
