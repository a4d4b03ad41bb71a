/** One icon per device kind (connector, camera, PLC, sensor). */
import { Camera, Cpu, Gauge, CircleQuestionMark, Router } from "lucide-react";
import type { DeviceKind } from "./types";

const ICONS = { connector: Router, camera: Camera, plc: Cpu, sensor: Gauge } as const;

export const KIND_LABELS: Record<DeviceKind, string> = {
  connector: "Connector",
  camera: "Camera",
  plc: "PLC",
  sensor: "Sensor",
};

export function KindIcon({ kind, className = "h-4 w-4" }: { kind: DeviceKind | string; className?: string }) {
  const Icon = ICONS[kind as DeviceKind] ?? CircleQuestionMark;
  return <Icon className={className} aria-label={KIND_LABELS[kind as DeviceKind] ?? kind} role="img" />;
}

/** The icon and the kind's name. */
export function KindTag({ kind }: { kind: DeviceKind | string }) {
  return (
    <span className="inline-flex items-center gap-1.5 text-slate-600">
      <KindIcon kind={kind} className="h-4 w-4 text-slate-500" />
      <span>{KIND_LABELS[kind as DeviceKind] ?? kind}</span>
    </span>
  );
}
