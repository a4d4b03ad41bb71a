/** The dashboard's key figures: uptime, devices by status, active pipelines, alerts (24 h). */
import clsx from "clsx";
import { Activity, AlertTriangle, CircleCheck, CircleOff, Clock, TriangleAlert, Workflow } from "lucide-react";
import { useEffect, useState, type ComponentType } from "react";
import { Link } from "react-router-dom";
import { count, duration, percent } from "../../lib/format";
import { uptimeNow, type Kpis } from "./data";

function Kpi({
  id,
  label,
  value,
  hint,
  icon: Icon,
  tone,
  to,
}: {
  id: string;
  label: string;
  value: string;
  hint?: string;
  icon: ComponentType<{ className?: string }>;
  tone: string;
  to?: string;
}) {
  const body = (
    <>
      <div className="flex items-center justify-between">
        <dt className="text-xs font-medium uppercase tracking-wide text-slate-500">{label}</dt>
        <Icon className={clsx("h-4 w-4", tone)} aria-hidden />
      </div>
      <dd className="mt-1 whitespace-nowrap text-xl font-semibold text-slate-900 2xl:text-2xl" data-testid={`kpi-${id}`}>
        {value}
      </dd>
      {hint && <dd className="mt-0.5 truncate text-xs text-slate-500" title={typeof hint === "string" ? hint : undefined}>{hint}</dd>}
    </>
  );
  const cls = "block rounded-lg border border-slate-200 bg-white p-3.5 shadow-sm";
  return to ? (
    <Link to={to} className={clsx(cls, "hover:border-sky-300")}>
      <dl>{body}</dl>
    </Link>
  ) : (
    <dl className={cls}>{body}</dl>
  );
}

/** Re-render every `ms` (the uptime ticks). */
function useTick(ms: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

export function KpiCards({ kpis, loading }: { kpis: Kpis; loading: boolean }) {
  const now = useTick(1000);
  const uptime = uptimeNow(kpis, now);
  const dash = loading ? "…" : "—";
  const pct = (n: number) => (kpis.total > 0 ? `${Math.round((n / kpis.total) * 100)} % of ${count(kpis.total)}` : undefined);
  return (
    <section aria-label="Key figures" className="grid grid-cols-2 gap-3 md:grid-cols-3 xl:grid-cols-6">
      {uptime !== null ? (
        <Kpi
          id="uptime"
          label="Platform uptime"
          value={duration(uptime)}
          hint={kpis.availability !== null ? `Fleet availability ${percent(kpis.availability)}` : undefined}
          icon={Clock}
          tone="text-sky-600"
        />
      ) : (
        <Kpi
          id="uptime"
          label="Fleet availability"
          value={kpis.availability !== null ? percent(kpis.availability) : dash}
          hint="Devices online or warning"
          icon={Activity}
          tone="text-sky-600"
        />
      )}
      <Kpi id="online" label="Online" value={loading ? dash : count(kpis.online)} hint={pct(kpis.online)} icon={CircleCheck} tone="text-emerald-500" to="/fleet?status=online" />
      <Kpi id="warning" label="Warning" value={loading ? dash : count(kpis.warning)} hint={pct(kpis.warning)} icon={TriangleAlert} tone="text-amber-500" to="/fleet?status=warning" />
      <Kpi id="offline" label="Offline" value={loading ? dash : count(kpis.offline)} hint={pct(kpis.offline)} icon={CircleOff} tone="text-slate-400" to="/fleet?status=offline" />
      <Kpi
        id="pipelines"
        label="Active pipelines"
        value={loading ? dash : count(kpis.activePipelines)}
        hint={`${count(kpis.activeRuns)} run${kpis.activeRuns === 1 ? "" : "s"} active`}
        icon={Workflow}
        tone="text-violet-500"
        to="/pipelines"
      />
      <Kpi
        id="alerts"
        label="Alerts (24 h)"
        value={kpis.alerts24h === null ? dash : `${count(kpis.alerts24h)}${kpis.alerts24hMore ? "+" : ""}`}
        hint={`${count(kpis.activeAlerts)} active now`}
        icon={AlertTriangle}
        tone="text-red-500"
      />
    </section>
  );
}
