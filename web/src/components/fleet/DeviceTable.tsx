/** The fleet list: status, name and id, kind, site, parent connector, last seen. */
import { Trash } from "lucide-react";
import { Link } from "react-router-dom";
import { dateTime, timeAgo } from "../../lib/format";
import { StatusBadge } from "../ui";
import { KindTag } from "./KindIcon";
import type { Device } from "./types";

export function DeviceTable({
  devices,
  now,
  onDelete,
}: {
  devices: Device[];
  now: Date;
  /** Shown to operators only: asks to delete the device. */
  onDelete?: (device: Device) => void;
}) {
  return (
    <div className="overflow-x-auto">
      <table className="w-full text-left text-sm" aria-label="Devices">
        <thead className="border-b border-slate-200 text-xs uppercase tracking-wide text-slate-500">
          <tr>
            <th scope="col" className="px-3 py-2 font-medium">Status</th>
            <th scope="col" className="px-3 py-2 font-medium">Device</th>
            <th scope="col" className="px-3 py-2 font-medium">Kind</th>
            <th scope="col" className="px-3 py-2 font-medium">Site</th>
            <th scope="col" className="px-3 py-2 font-medium">Parent</th>
            <th scope="col" className="px-3 py-2 font-medium">Last seen</th>
            {onDelete && (
              <th scope="col" className="px-3 py-2 font-medium">
                <span className="sr-only">Actions</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody className="divide-y divide-slate-100">
          {devices.map((d) => (
            <tr key={d.id} data-testid="device-row" data-device-id={d.id} data-status={d.status} className="hover:bg-slate-50">
              <td className="px-3 py-2 align-top">
                <span title={d.status_reasons?.length ? d.status_reasons.join("; ") : undefined}>
                  <StatusBadge status={d.status} />
                </span>
                {d.pending && <span className="ml-1 rounded bg-violet-50 px-1.5 py-0.5 text-xs text-violet-700 ring-1 ring-violet-200">pending</span>}
              </td>
              <td className="px-3 py-2 align-top">
                <Link to={`/fleet/${encodeURIComponent(d.id)}`} className="font-medium text-sky-700 hover:underline">
                  {d.name}
                </Link>
                <div className="font-mono text-xs text-slate-500">{d.id}</div>
              </td>
              <td className="px-3 py-2 align-top">
                <KindTag kind={d.kind} />
              </td>
              <td className="px-3 py-2 align-top text-slate-600">{d.site || "—"}</td>
              <td className="px-3 py-2 align-top">
                {d.parent_id ? (
                  <Link to={`/fleet/${encodeURIComponent(d.parent_id)}`} className="font-mono text-xs text-sky-700 hover:underline">
                    {d.parent_id}
                  </Link>
                ) : (
                  <span className="text-slate-400">—</span>
                )}
              </td>
              <td className="px-3 py-2 align-top text-slate-600" title={dateTime(d.last_seen)}>
                {timeAgo(d.last_seen, now)}
              </td>
              {onDelete && (
                <td className="px-3 py-2 text-right align-top">
                  <button
                    type="button"
                    aria-label={`Delete ${d.name}`}
                    title="Delete"
                    className="rounded p-1 text-slate-400 hover:bg-red-50 hover:text-red-600"
                    onClick={() => onDelete(d)}
                  >
                    <Trash className="h-4 w-4" />
                  </button>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
