import { Bell } from "lucide-react";

/** The header's live alert bell (filled in by the alerts feature). */
export function AlertBell() {
  return (
    <button type="button" aria-label="Alerts" className="relative rounded-md p-1.5 text-slate-500 hover:bg-slate-100">
      <Bell className="h-5 w-5" />
    </button>
  );
}
