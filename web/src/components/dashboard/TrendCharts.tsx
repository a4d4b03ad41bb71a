/** Trends over time: events per hour by type (stacked bars) and device availability (lines). */
import { Area, AreaChart, Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { clock, dateTime } from "../../lib/format";
import { EmptyState } from "../ui";
import { eventTitle } from "../../stores/alerts";
import { OTHER, type AvailabilityRow, type HourRow } from "./data";

const PALETTE = ["#0ea5e9", "#f97316", "#8b5cf6", "#ef4444", "#14b8a6"];
const OTHER_COLOUR = "#cbd5e1";

function seriesLabel(name: string): string {
  return name === OTHER ? "Other" : eventTitle(name);
}

export function EventsPerHourChart({ rows, series, height = 240 }: { rows: HourRow[]; series: string[]; height?: number }) {
  const total = rows.reduce((n, r) => n + series.reduce((m, s) => m + ((r[s] as number) ?? 0), 0), 0);
  if (total === 0) return <EmptyState>No events in the last 24 hours.</EmptyState>;
  return (
    <div style={{ height }} data-testid="events-chart" role="img" aria-label={`Events per hour by type, ${total} in the last 24 hours`}>
      <ResponsiveContainer width="100%" height="100%">
        <BarChart data={rows} margin={{ top: 4, right: 8, bottom: 0, left: -16 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} stroke="#e2e8f0" />
          <XAxis dataKey="hour" tickFormatter={(v: string) => clock(v)} tick={{ fontSize: 11 }} minTickGap={16} />
          <YAxis allowDecimals={false} tick={{ fontSize: 11 }} />
          <Tooltip labelFormatter={(v) => dateTime(String(v))} formatter={(value, name) => [value, seriesLabel(String(name))]} />
          <Legend formatter={(name) => seriesLabel(String(name))} wrapperStyle={{ fontSize: 12 }} />
          {series.map((s, i) => (
            <Bar key={s} dataKey={s} stackId="events" fill={s === OTHER ? OTHER_COLOUR : PALETTE[i % PALETTE.length]} isAnimationActive={false} />
          ))}
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}

export function AvailabilityChart({ rows, height = 240, note }: { rows: AvailabilityRow[]; height?: number; note?: string }) {
  if (rows.length === 0) return <EmptyState>No devices yet.</EmptyState>;
  return (
    <div>
      <div style={{ height }} data-testid="availability-chart" role="img" aria-label="Device availability over time">
        <ResponsiveContainer width="100%" height="100%">
          <AreaChart data={rows} margin={{ top: 4, right: 8, bottom: 0, left: -16 }}>
            <CartesianGrid strokeDasharray="3 3" vertical={false} stroke="#e2e8f0" />
            <XAxis dataKey="time" tickFormatter={(v: string) => clock(v)} tick={{ fontSize: 11 }} minTickGap={16} />
            <YAxis domain={[0, 100]} unit="%" tick={{ fontSize: 11 }} />
            <Tooltip labelFormatter={(v) => dateTime(String(v))} formatter={(value, name) => [`${value} %`, name === "online" ? "Online" : "Online or warning"]} />
            <Legend formatter={(name) => (name === "online" ? "Online" : "Online or warning")} wrapperStyle={{ fontSize: 12 }} />
            <Area type="monotone" dataKey="available" stroke="#f59e0b" fill="#fef3c7" isAnimationActive={false} />
            <Area type="monotone" dataKey="online" stroke="#10b981" fill="#d1fae5" isAnimationActive={false} />
          </AreaChart>
        </ResponsiveContainer>
      </div>
      {note && <p className="mt-1 text-xs text-slate-400">{note}</p>}
    </div>
  );
}
