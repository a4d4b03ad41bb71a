/** The catalog's lucide icon names ("chart-line") → lucide-react components, with a fallback
 *  for names this console does not know (a newer server's node types still show). */
import {
  Activity,
  AlarmClock,
  Bell,
  Brain,
  Camera,
  ChartLine,
  CircuitBoard,
  Crop,
  Database,
  FileVideoCamera,
  Filter,
  GitBranch,
  Hash,
  Hourglass,
  LayoutDashboard,
  Mail,
  MessageCircle,
  Puzzle,
  Repeat,
  ScanSearch,
  Send,
  Shuffle,
  Split,
  SquareDashed,
  Thermometer,
  Timer,
  Video,
  Webcam,
  Webhook,
  Cctv,
  type LucideIcon,
} from "lucide-react";

const ICONS: Record<string, LucideIcon> = {
  activity: Activity,
  "alarm-clock": AlarmClock,
  bell: Bell,
  brain: Brain,
  camera: Camera,
  cctv: Cctv,
  "chart-line": ChartLine,
  "circuit-board": CircuitBoard,
  crop: Crop,
  database: Database,
  "file-video": FileVideoCamera,
  "file-video-camera": FileVideoCamera,
  filter: Filter,
  "git-branch": GitBranch,
  hash: Hash,
  hourglass: Hourglass,
  "layout-dashboard": LayoutDashboard,
  mail: Mail,
  "message-circle": MessageCircle,
  repeat: Repeat,
  "scan-search": ScanSearch,
  send: Send,
  shuffle: Shuffle,
  split: Split,
  "square-dashed": SquareDashed,
  thermometer: Thermometer,
  timer: Timer,
  video: Video,
  webcam: Webcam,
  webhook: Webhook,
};

/** The icon component of a catalog icon name; a puzzle piece for unknown names. */
export function iconFor(name: string | null | undefined): LucideIcon {
  return (name && ICONS[name]) || Puzzle;
}

export function NodeIcon({ name, className }: { name: string | null | undefined; className?: string }) {
  const Icon = iconFor(name);
  return <Icon className={className} aria-hidden />;
}

/** Colours of the four categories (palette headings, node headers). */
export const CATEGORY_STYLE: Record<string, { header: string; icon: string }> = {
  input: { header: "bg-sky-50 border-sky-200", icon: "text-sky-600" },
  processing: { header: "bg-violet-50 border-violet-200", icon: "text-violet-600" },
  logic: { header: "bg-amber-50 border-amber-200", icon: "text-amber-600" },
  output: { header: "bg-emerald-50 border-emerald-200", icon: "text-emerald-600" },
};

export function categoryStyle(category: string) {
  return CATEGORY_STYLE[category] ?? { header: "bg-slate-50 border-slate-200", icon: "text-slate-600" };
}

/** Handle colours per port kind. */
export const KIND_COLOURS: Record<string, string> = {
  frames: "#0284c7",
  detections: "#7c3aed",
  event: "#d97706",
  data: "#059669",
};
