/** The audit log (admins): every write through the API, newest first, page by page. */
import { useInfiniteQuery } from "@tanstack/react-query";
import clsx from "clsx";
import { useState } from "react";
import { api } from "../../api/client";
import type { Page } from "../../api/types";
import type { components } from "../../api/schema";
import { dateTime } from "../../lib/format";
import { Card, EmptyState, ErrorNote, Field, inputClass, LoadMore, Spinner } from "../ui";

type AuditEntry = components["schemas"]["AuditEntry"];

export function AuditTab() {
  const [targetType, setTargetType] = useState("");
  const audit = useInfiniteQuery({
    queryKey: ["audit", targetType],
    queryFn: ({ pageParam }) =>
      api<Page<AuditEntry>>("/audit", { query: { limit: 50, cursor: pageParam, target_type: targetType || undefined } }),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const items = audit.data?.pages.flatMap((p) => p.items) ?? [];
  return (
    <Card
      title="Audit log"
      actions={
        <Field label="Target">
          <select className={`${inputClass} w-40`} value={targetType} onChange={(e) => setTargetType(e.target.value)}>
            <option value="">All</option>
            {["user", "device", "pipeline", "alert", "alert_rule", "settings", "integration", "backup"].map((t) => (
              <option key={t} value={t}>
                {t}
              </option>
            ))}
          </select>
        </Field>
      }
    >
      {audit.isPending ? (
        <Spinner />
      ) : audit.isError ? (
        <ErrorNote error={audit.error} />
      ) : items.length === 0 ? (
        <EmptyState>No entries.</EmptyState>
      ) : (
        <div className="overflow-x-auto">
          <table className="w-full text-left text-xs" aria-label="Audit log">
            <thead className="uppercase text-slate-500">
              <tr>
                <th className="py-2 pr-3 font-medium">Time</th>
                <th className="py-2 pr-3 font-medium">Who</th>
                <th className="py-2 pr-3 font-medium">Action</th>
                <th className="py-2 pr-3 font-medium">Target</th>
                <th className="py-2 pr-3 font-medium">Outcome</th>
                <th className="py-2 font-medium">From</th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-100">
              {items.map((e) => (
                <tr key={e.id}>
                  <td className="py-1.5 pr-3 whitespace-nowrap text-slate-500">{dateTime(e.time)}</td>
                  <td className="py-1.5 pr-3">{e.actor ?? "—"}</td>
                  <td className="py-1.5 pr-3 font-mono">{e.action}</td>
                  <td className="py-1.5 pr-3">{e.target_type ? `${e.target_type} ${e.target_id ?? ""}` : "—"}</td>
                  <td className={clsx("py-1.5 pr-3", e.outcome === "success" ? "text-emerald-700" : "text-red-700")}>{e.outcome}</td>
                  <td className="py-1.5 text-slate-500">{e.source_ip ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <LoadMore query={audit} />
        </div>
      )}
    </Card>
  );
}
