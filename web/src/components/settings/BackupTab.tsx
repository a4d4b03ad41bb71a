/**
 * Backup and restore (admins): the site's configuration — devices, pipelines, alert rules,
 * settings — as one JSON file, downloaded, and restored from such a file.
 */
import { Download, Upload } from "lucide-react";
import { useRef, useState } from "react";
import toast from "react-hot-toast";
import { api, errorMessage } from "../../api/client";
import { useQueryClient } from "@tanstack/react-query";
import { Button, Card, ErrorNote } from "../ui";
import { backupFileName, parseBackup, restoreProblems, restoreSummary, type BackupParse } from "./lib";

/** Save a Blob as a file through a temporary `<a download>`. */
function saveBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function BackupTab() {
  return (
    <div className="space-y-4">
      <DownloadCard />
      <RestoreCard />
    </div>
  );
}

function DownloadCard() {
  const [busy, setBusy] = useState(false);
  const download = async () => {
    setBusy(true);
    try {
      const response = await api<Response>("/backup", { asResponse: true });
      const blob = await response.blob();
      const name = backupFileName(response.headers.get("Content-Disposition"));
      saveBlob(new Blob([blob], { type: "application/json" }), name);
      toast.success(`Backup saved as ${name}`);
    } catch (err) {
      toast.error(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Card title="Download a backup">
      <p className="mb-3 text-sm text-slate-600">
        One JSON file with the site's configuration: devices (with their desired configuration), pipelines with every
        revision, alert rules, site settings, users (names and roles, never passwords) and the names of the integration
        secrets — never their values. Events, media and device history are not in it.
      </p>
      <Button onClick={download} busy={busy}>
        <Download className="h-4 w-4" aria-hidden />
        Download backup
      </Button>
    </Card>
  );
}

function RestoreCard() {
  const queryClient = useQueryClient();
  const input = useRef<HTMLInputElement>(null);
  const [fileName, setFileName] = useState<string | null>(null);
  const [parsed, setParsed] = useState<BackupParse | null>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<ReturnType<typeof restoreSummary> | null>(null);
  const [problems, setProblems] = useState<{ path: string; message: string }[] | null>(null);
  const [failure, setFailure] = useState<unknown>(null);

  const choose = async (file: File | undefined) => {
    setResult(null);
    setProblems(null);
    setFailure(null);
    if (!file) {
      setParsed(null);
      setFileName(null);
      return;
    }
    setFileName(file.name);
    setParsed(parseBackup(await file.text(), file.size));
  };

  const restore = async () => {
    if (!parsed?.ok) return;
    setBusy(true);
    setResult(null);
    setProblems(null);
    setFailure(null);
    try {
      const answer = await api<unknown>("/restore", { method: "POST", body: parsed.document });
      setResult(restoreSummary(answer));
      toast.success("Backup restored");
      await queryClient.invalidateQueries();
    } catch (err) {
      const found = restoreProblems(err);
      if (found.length) setProblems(found);
      else setFailure(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Card title="Restore from a backup">
      <p className="mb-3 text-sm text-slate-600">
        Choose a file made by “Download backup”. The service checks the whole file first and changes nothing if any part is
        invalid. Then it merges: records that are new here are created, those that differ are updated, nothing is deleted.
        Your own account is left as it is; a user the restore creates signs in once an administrator sets a password.
      </p>
      <div className="flex flex-wrap items-center gap-3">
        <label className="text-sm font-medium text-slate-700" htmlFor="backup-file">
          Backup file
        </label>
        <input
          id="backup-file"
          ref={input}
          type="file"
          accept="application/json,.json"
          className="text-sm file:mr-3 file:rounded-md file:border file:border-slate-300 file:bg-white file:px-3 file:py-1.5 file:text-sm"
          onChange={(e) => void choose(e.target.files?.[0])}
        />
      </div>
      {parsed && !parsed.ok && (
        <p role="alert" className="mt-3 text-sm text-red-600">
          {fileName}: {parsed.error}
        </p>
      )}
      {parsed?.ok && (
        <div className="mt-3 rounded-md border border-slate-200 bg-slate-50 p-3 text-sm" data-testid="backup-summary">
          <div className="mb-1 font-medium text-slate-700">{fileName} holds:</div>
          <ul className="flex flex-wrap gap-x-4 gap-y-1 text-slate-600">
            {parsed.summary.counts.map(([key, n]) => (
              <li key={key}>
                {key.replace(/_/g, " ")}: <strong>{n}</strong>
              </li>
            ))}
            {parsed.summary.meta.map(([key, value]) => (
              <li key={key} className="text-slate-500">
                {key.replace(/_/g, " ")}: {value}
              </li>
            ))}
          </ul>
          <Button className="mt-3" variant="danger" busy={busy} onClick={restore}>
            <Upload className="h-4 w-4" aria-hidden />
            Restore
          </Button>
        </div>
      )}
      {result && (
        <div role="status" className="mt-3 rounded-md border border-emerald-200 bg-emerald-50 p-3 text-sm text-emerald-900" data-testid="restore-result">
          <div className="font-medium">Restored.</div>
          {result.rows.length > 0 && (
            <table className="mt-2 text-left text-sm" aria-label="Restored records">
              <thead className="text-xs uppercase text-emerald-700">
                <tr>
                  <th className="py-1 pr-6 font-medium">Records</th>
                  <th className="py-1 pr-6 font-medium">Created</th>
                  <th className="py-1 pr-6 font-medium">Updated</th>
                  <th className="py-1 font-medium">Unchanged</th>
                </tr>
              </thead>
              <tbody>
                {result.rows.map((row) => (
                  <tr key={row.kind}>
                    <td className="py-0.5 pr-6 first-letter:uppercase">{row.kind}</td>
                    <td className="py-0.5 pr-6 tabular-nums">{row.created}</td>
                    <td className="py-0.5 pr-6 tabular-nums">{row.updated}</td>
                    <td className="py-0.5 tabular-nums">{row.unchanged}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {result.missingSecrets.length > 0 && (
            <p className="mt-2 text-amber-800">
              Secrets the backup names that are not set here (set them in Integrations):{" "}
              {result.missingSecrets.map((name, i) => (
                <span key={name}>
                  {i > 0 && ", "}
                  <code>{name}</code>
                </span>
              ))}
            </p>
          )}
        </div>
      )}
      {problems && (
        <div role="alert" className="mt-3 rounded-md border border-red-200 bg-red-50 p-3 text-sm text-red-700" data-testid="restore-problems">
          <div className="font-medium">The backup was refused; nothing was changed.</div>
          <ul className="mt-1 list-disc space-y-0.5 pl-5">
            {problems.map((p, i) => (
              <li key={i}>
                <code className="text-red-800">{p.path}</code>: {p.message}
              </li>
            ))}
          </ul>
        </div>
      )}
      {failure !== null && (
        <div className="mt-3">
          <ErrorNote error={failure} />
        </div>
      )}
    </Card>
  );
}
