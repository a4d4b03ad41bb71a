/**
 * The header's live alert bell: the count of active unacknowledged alerts and of events not
 * yet seen (live from `/ws/notifications`), and a dropdown of the recent ones with
 * acknowledge buttons (operators and admins) and a link to the dashboard.
 */
import clsx from "clsx";
import { Bell } from "lucide-react";
import { useEffect, useRef, useState } from "react";
import { Link } from "react-router-dom";
import { useAlertFeed } from "../../hooks/useAlertFeed";
import { useAlerts, useUnreadCount } from "../../stores/alerts";
import { AlertFeedList } from "../dashboard/AlertFeedList";

/** Items listed in the dropdown. */
const SHOWN = 12;

export function AlertBell() {
  useAlertFeed();
  const unread = useUnreadCount();
  const items = useAlerts((s) => s.items);
  const [open, setOpen] = useState(false);
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    if (!open) return;
    useAlerts.getState().markAllRead();
    const onDown = (e: MouseEvent) => {
      if (box.current && !box.current.contains(e.target as Node)) setOpen(false);
    };
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && setOpen(false);
    document.addEventListener("mousedown", onDown);
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("mousedown", onDown);
      document.removeEventListener("keydown", onKey);
    };
  }, [open]);

  // events arriving while the list is open are seen
  useEffect(() => {
    if (open) useAlerts.getState().markAllRead();
  }, [open, items]);

  return (
    <div ref={box} className="relative">
      <button
        type="button"
        aria-label={unread > 0 ? `Alerts (${unread} unread)` : "Alerts"}
        aria-haspopup="dialog"
        aria-expanded={open}
        className={clsx("relative rounded-md p-1.5 hover:bg-slate-100", unread > 0 ? "text-slate-700" : "text-slate-500")}
        onClick={() => setOpen((v) => !v)}
      >
        <Bell className="h-5 w-5" />
        {unread > 0 && (
          <span
            data-testid="alert-count"
            className="absolute -right-1 -top-1 min-w-[1.1rem] rounded-full bg-red-600 px-1 text-center text-[10px] font-semibold leading-[1.1rem] text-white"
          >
            {unread > 99 ? "99+" : unread}
          </span>
        )}
      </button>
      {open && (
        <div
          role="dialog"
          aria-label="Recent alerts"
          className="absolute right-0 top-full z-[1100] mt-2 w-96 overflow-hidden rounded-lg border border-slate-200 bg-white shadow-xl"
        >
          <header className="flex items-center justify-between border-b border-slate-100 px-3 py-2">
            <h2 className="text-sm font-semibold text-slate-700">Alerts and events</h2>
            <Link to="/" className="text-xs font-medium text-sky-700 hover:underline" onClick={() => setOpen(false)}>
              Open dashboard
            </Link>
          </header>
          <div className="max-h-[60vh] overflow-y-auto">
            <AlertFeedList items={items.slice(0, SHOWN)} compact empty="Nothing to report." />
          </div>
        </div>
      )}
    </div>
  );
}
