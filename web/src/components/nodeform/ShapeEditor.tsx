/**
 * Draw a zone (polygon) or a line over a camera snapshot. Values are normalized [x, y]
 * (fractions 0–1 of the frame, 0 = left/top), as the zone and line-crossing configs hold them.
 *
 * Mouse: click to add a point, drag a point to move it, click the first point (or press
 * Enter) to close the polygon. Keyboard on the drawing: Enter closes, Delete removes the
 * selected point, arrows nudge it, Ctrl+Z undoes. The coordinates can also be typed.
 */
import clsx from "clsx";
import { ImageOff, RefreshCw, Trash2, Undo2 } from "lucide-react";
import { useEffect, useMemo, useReducer, useRef, useState, type KeyboardEvent, type PointerEvent, type ReactNode } from "react";
import { inputClass } from "../ui";
import {
  clientToNormalized,
  inArrow,
  initShape,
  pointsOf,
  roundCoord,
  samePoints,
  shapeReducer,
  toPixels,
  type Point,
  type Size,
} from "./geometry";
import type { SnapshotState } from "./snapshot";

/** The blank frame when there is no snapshot (16:9). */
export const BLANK_FRAME: Size = { width: 1600, height: 900 };

export interface ShapeEditorProps {
  /** Base id of the inputs (the form field's id). */
  id: string;
  mode: "polygon" | "line";
  label: string;
  description?: string;
  required?: boolean;
  /** The config value: a list of [x, y]. */
  value: unknown;
  onChange: (points: Point[]) => void;
  disabled?: boolean;
  /** Most points of a polygon (the schema's maxItems). */
  maxPoints?: number;
  errors?: string[];
  snapshot?: SnapshotState;
  /** Extra controls above the drawing (the choice of camera). */
  toolbarExtra?: ReactNode;
}

function arrowHead(from: Point, to: Point, size: number): string {
  const dx = to[0] - from[0];
  const dy = to[1] - from[1];
  const n = Math.hypot(dx, dy) || 1;
  const ux = dx / n;
  const uy = dy / n;
  const back: Point = [to[0] - ux * size, to[1] - uy * size];
  const left: Point = [back[0] - uy * size * 0.6, back[1] + ux * size * 0.6];
  const right: Point = [back[0] + uy * size * 0.6, back[1] - ux * size * 0.6];
  return [to, left, right].map((p) => p.join(",")).join(" ");
}

export function ShapeEditor({
  id,
  mode,
  label,
  description,
  required,
  value,
  onChange,
  disabled,
  maxPoints,
  errors,
  snapshot,
  toolbarExtra,
}: ShapeEditorProps) {
  const rules = useMemo(
    () => (mode === "line" ? { maxPoints: 2, minPoints: 2 } : { maxPoints: maxPoints ?? 100, minPoints: 3 }),
    [mode, maxPoints],
  );
  const reducer = useMemo(() => shapeReducer(rules), [rules]);
  const valuePoints = useMemo(() => pointsOf(value), [value]);
  const [state, dispatch] = useReducer(reducer, valuePoints, (pts) => initShape(pts, rules));
  const [selected, setSelected] = useState<number | null>(null);
  const [frame, setFrame] = useState<Size>(BLANK_FRAME);
  const svgRef = useRef<SVGSVGElement>(null);
  const dragging = useRef<number | null>(null);
  const stateRef = useRef(state);
  stateRef.current = state;

  // Drawing → config value.
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;
  const lastSent = useRef<Point[]>(valuePoints);
  useEffect(() => {
    if (samePoints(state.points, lastSent.current)) return;
    lastSent.current = state.points;
    onChangeRef.current(state.points);
  }, [state.points]);
  // Config value changed elsewhere (typed, reset) → drawing.
  useEffect(() => {
    lastSent.current = valuePoints;
    if (!samePoints(valuePoints, stateRef.current.points)) dispatch({ type: "set", points: valuePoints });
  }, [valuePoints]);

  const image = snapshot?.status === "ready" ? snapshot.url : undefined;
  useEffect(() => {
    if (!image) setFrame(BLANK_FRAME);
  }, [image]);

  const W = frame.width;
  const H = frame.height;
  const r = Math.max(W, H) / 110;
  const px = state.points.map((p) => toPixels(p, frame));
  const canClose = mode === "polygon" && !state.closed && state.points.length >= rules.minPoints;

  function pointerToNormalized(e: { clientX: number; clientY: number }): Point | null {
    const box = svgRef.current?.getBoundingClientRect();
    if (!box || box.width <= 0 || box.height <= 0) return null;
    return clientToNormalized(e.clientX, e.clientY, box);
  }

  function onBackgroundDown(e: PointerEvent<SVGSVGElement>) {
    if (disabled || e.button !== 0) return;
    svgRef.current?.focus();
    if (state.closed) {
      setSelected(null);
      return;
    }
    const p = pointerToNormalized(e);
    if (!p) return;
    dispatch({ type: "add", point: p });
    setSelected(state.points.length);
  }

  function onVertexDown(e: PointerEvent<SVGCircleElement>, index: number) {
    e.stopPropagation();
    if (disabled || e.button !== 0) return;
    svgRef.current?.focus();
    if (mode === "polygon" && index === 0 && canClose) {
      dispatch({ type: "close" });
      return;
    }
    setSelected(index);
    dispatch({ type: "checkpoint" });
    dragging.current = index;
    try {
      svgRef.current?.setPointerCapture(e.pointerId);
    } catch {
      /* not capturable (synthetic events) */
    }
  }

  function onPointerMove(e: PointerEvent<SVGSVGElement>) {
    if (dragging.current === null) return;
    const p = pointerToNormalized(e);
    if (p) dispatch({ type: "move", index: dragging.current, point: p, record: false });
  }

  function endDrag() {
    dragging.current = null;
  }

  function onKeyDown(e: KeyboardEvent<SVGSVGElement>) {
    if (disabled) return;
    if (e.key === "Enter") {
      e.preventDefault();
      dispatch({ type: "close" });
    } else if (e.key === "Delete" || e.key === "Backspace") {
      e.preventDefault();
      const index = selected ?? state.points.length - 1;
      if (index >= 0) dispatch({ type: "delete", index });
      setSelected(null);
    } else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") {
      e.preventDefault();
      dispatch({ type: "undo" });
    } else if (selected !== null && e.key.startsWith("Arrow") && state.points[selected]) {
      e.preventDefault();
      const step = e.shiftKey ? 0.02 : 0.005;
      const [x, y] = state.points[selected];
      const d: Record<string, Point> = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
      const delta = d[e.key];
      if (delta) dispatch({ type: "move", index: selected, point: [x + delta[0], y + delta[1]] });
    }
  }

  function setCoord(index: number, axis: 0 | 1, text: string) {
    const v = Number(text);
    if (text === "" || !Number.isFinite(v)) return;
    const p: Point = [...state.points[index]] as Point;
    p[axis] = v;
    dispatch({ type: "move", index, point: p });
  }

  const hint =
    mode === "line"
      ? state.points.length < 2
        ? `Click the line's ${state.points.length === 0 ? "start" : "end"} on the image.`
        : "Drag A or B to move them. Crossing in the arrow's direction is 'in'."
      : state.closed
        ? "Drag a point to move it; select one and press Delete to remove it."
        : state.points.length < 3
          ? `Click on the image to add points (${state.points.length} of at least 3).`
          : "Click more points, then the first point or Enter to close the zone.";

  const arrow = mode === "line" && px.length === 2 ? inArrow(px[0], px[1], Math.max(W, H) / 14) : null;
  const errorList = (errors ?? []).filter(Boolean);

  return (
    <fieldset className="min-w-0" aria-describedby={`${id}__description`}>
      <legend className="mb-1 block text-xs font-medium text-slate-700">
        {label}
        {required && (
          <span className="ml-0.5 text-red-600" aria-hidden>
            *
          </span>
        )}
      </legend>
      <div className="mb-1.5 flex flex-wrap items-center gap-1.5">
        {mode === "polygon" && (
          <ToolButton onClick={() => dispatch({ type: "close" })} disabled={disabled || !canClose}>
            Close polygon
          </ToolButton>
        )}
        {mode === "line" && (
          <ToolButton onClick={() => dispatch({ type: "reverse" })} disabled={disabled || state.points.length < 2}>
            Swap direction
          </ToolButton>
        )}
        <ToolButton onClick={() => dispatch({ type: "undo" })} disabled={disabled || state.past.length === 0}>
          <Undo2 className="h-3.5 w-3.5" aria-hidden /> Undo
        </ToolButton>
        <ToolButton
          onClick={() => {
            dispatch({ type: "clear" });
            setSelected(null);
          }}
          disabled={disabled || state.points.length === 0}
        >
          <Trash2 className="h-3.5 w-3.5" aria-hidden /> Clear
        </ToolButton>
        <span className="ml-auto flex items-center gap-1.5">
          {toolbarExtra}
          {snapshot && snapshot.status !== "none" && (
            <ToolButton onClick={snapshot.reload} disabled={snapshot.status === "loading"}>
              <RefreshCw className={clsx("h-3.5 w-3.5", snapshot.status === "loading" && "animate-spin")} aria-hidden /> New snapshot
            </ToolButton>
          )}
        </span>
      </div>

      <div
        className="relative mx-auto w-full overflow-hidden rounded-md border border-slate-300 bg-slate-700"
        style={{ aspectRatio: `${W} / ${H}`, maxWidth: `calc(55vh * ${W / H})` }}
        data-testid="zone-drawing"
        data-snapshot={snapshot?.status ?? "none"}
      >
        {image ? (
          <img
            src={image}
            alt="Camera snapshot"
            className="absolute inset-0 h-full w-full select-none"
            draggable={false}
            onLoad={(e) => {
              const img = e.currentTarget;
              if (img.naturalWidth > 0 && img.naturalHeight > 0) setFrame({ width: img.naturalWidth, height: img.naturalHeight });
            }}
          />
        ) : (
          <div className="absolute inset-0 bg-[linear-gradient(45deg,#475569_25%,transparent_25%,transparent_75%,#475569_75%),linear-gradient(45deg,#475569_25%,transparent_25%,transparent_75%,#475569_75%)] bg-[length:40px_40px] bg-[position:0_0,20px_20px] opacity-40" />
        )}
        {!image && (
          <p className="pointer-events-none absolute left-2 top-2 flex items-center gap-1 rounded bg-slate-900/70 px-2 py-1 text-xs text-slate-100" role="note">
            <ImageOff className="h-3.5 w-3.5" aria-hidden />
            {snapshot?.status === "loading" ? "Taking a snapshot from the camera…" : (snapshot?.message ?? "No snapshot: drawing on a blank 16:9 frame.")}
          </p>
        )}
        <svg
          ref={svgRef}
          viewBox={`0 0 ${W} ${H}`}
          preserveAspectRatio="none"
          className={clsx("absolute inset-0 h-full w-full touch-none outline-none focus-visible:ring-2 focus-visible:ring-sky-400", !disabled && !state.closed && "cursor-crosshair")}
          tabIndex={disabled ? -1 : 0}
          role="application"
          aria-label={`Drawing area: ${label}`}
          aria-disabled={disabled || undefined}
          onPointerDown={onBackgroundDown}
          onPointerMove={onPointerMove}
          onPointerUp={endDrag}
          onPointerCancel={endDrag}
          onKeyDown={onKeyDown}
        >
          {mode === "polygon" && px.length >= 2 && (
            state.closed ? (
              <polygon points={px.map((p) => p.join(",")).join(" ")} fill="rgba(14,165,233,0.25)" stroke="#38bdf8" strokeWidth={2} vectorEffect="non-scaling-stroke" />
            ) : (
              <polyline points={px.map((p) => p.join(",")).join(" ")} fill="none" stroke="#38bdf8" strokeWidth={2} strokeDasharray="6 4" vectorEffect="non-scaling-stroke" />
            )
          )}
          {mode === "line" && px.length === 2 && (
            <g>
              <line x1={px[0][0]} y1={px[0][1]} x2={px[1][0]} y2={px[1][1]} stroke="#f59e0b" strokeWidth={3} vectorEffect="non-scaling-stroke" />
              <polygon points={arrowHead(px[0], px[1], r * 2.2)} fill="#f59e0b" />
              {arrow && (
                <g data-testid="line-direction">
                  <line x1={arrow.from[0]} y1={arrow.from[1]} x2={arrow.to[0]} y2={arrow.to[1]} stroke="#22c55e" strokeWidth={3} vectorEffect="non-scaling-stroke" />
                  <polygon points={arrowHead(arrow.from, arrow.to, r * 2)} fill="#22c55e" />
                  <text x={arrow.to[0]} y={arrow.to[1]} dx={r} dy={r} fontSize={r * 2.2} fill="#22c55e" stroke="#0f172a" strokeWidth={r / 4} paintOrder="stroke">
                    in
                  </text>
                </g>
              )}
            </g>
          )}
          {px.map((p, i) => (
            <g key={i}>
              <circle
                cx={p[0]}
                cy={p[1]}
                r={r}
                fill={selected === i ? "#fde047" : mode === "line" ? "#f59e0b" : "#0ea5e9"}
                stroke="#fff"
                strokeWidth={2}
                vectorEffect="non-scaling-stroke"
                className={clsx(!disabled && "cursor-move")}
                data-testid={`vertex-${i}`}
                onPointerDown={(e) => onVertexDown(e, i)}
              >
                <title>{mode === "line" ? (i === 0 ? "Start (A)" : "End (B)") : `Point ${i + 1}`}</title>
              </circle>
              <text x={p[0]} y={p[1]} dx={r * 1.3} dy={-r * 1.1} fontSize={r * 2} fill="#fff" stroke="#0f172a" strokeWidth={r / 4} paintOrder="stroke" pointerEvents="none">
                {mode === "line" ? (i === 0 ? "A" : "B") : i + 1}
              </text>
            </g>
          ))}
        </svg>
      </div>
      <p className="mt-1 text-xs text-slate-600" aria-live="polite">
        {hint}
      </p>
      {description && (
        <p id={`${id}__description`} className="mt-0.5 text-xs text-slate-500">
          {description}
        </p>
      )}
      {errorList.length > 0 && (
        <ul id={`${id}__error`} className="mt-0.5 text-xs text-red-600">
          {errorList.map((e, i) => (
            <li key={i}>{e}</li>
          ))}
        </ul>
      )}

      <details className="mt-1.5 text-xs">
        <summary className="cursor-pointer text-slate-600">Edit coordinates (fractions of the frame, 0–1)</summary>
        <table className="mt-1.5">
          <thead>
            <tr className="text-left text-slate-500">
              <th className="pr-2 font-medium">Point</th>
              <th className="pr-2 font-medium">x</th>
              <th className="pr-2 font-medium">y</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {state.points.map((p, i) => {
              const name = mode === "line" ? (i === 0 ? "Start" : "End") : `Point ${i + 1}`;
              const last = i === state.points.length - 1;
              const onKey = (e: KeyboardEvent<HTMLInputElement>) => {
                if (e.key === "Enter") {
                  e.preventDefault();
                  if (last) dispatch({ type: "close" });
                }
              };
              return (
                <tr key={i}>
                  <td className="pr-2 text-slate-600">{name}</td>
                  {([0, 1] as const).map((axis) => (
                    <td key={axis} className="pr-2 py-0.5">
                      <input
                        type="number"
                        min={0}
                        max={1}
                        step={0.001}
                        className={clsx(inputClass, "w-24 py-1 text-xs")}
                        aria-label={`${name} ${axis === 0 ? "x" : "y"}`}
                        value={roundCoord(p[axis])}
                        disabled={disabled}
                        onChange={(e) => setCoord(i, axis, e.target.value)}
                        onKeyDown={onKey}
                      />
                    </td>
                  ))}
                  <td>
                    {mode === "polygon" && (
                      <button
                        type="button"
                        className="rounded p-1 text-slate-500 hover:bg-slate-100 disabled:text-slate-300"
                        aria-label={`Remove ${name.toLowerCase()}`}
                        disabled={disabled}
                        onClick={() => dispatch({ type: "delete", index: i })}
                      >
                        <Trash2 className="h-3.5 w-3.5" aria-hidden />
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {state.points.length < rules.maxPoints && !state.closed && (
          <button
            type="button"
            className="mt-1 rounded border border-slate-300 bg-white px-2 py-0.5 text-slate-700 hover:bg-slate-50 disabled:text-slate-400"
            disabled={disabled}
            onClick={() => dispatch({ type: "add", point: [0.5, 0.5] })}
          >
            Add point
          </button>
        )}
      </details>
    </fieldset>
  );
}

function ToolButton({ children, onClick, disabled }: { children: ReactNode; onClick: () => void; disabled?: boolean }) {
  return (
    <button
      type="button"
      onClick={onClick}
      disabled={disabled}
      className="inline-flex items-center gap-1 rounded-md border border-slate-300 bg-white px-2 py-1 text-xs font-medium text-slate-700 hover:bg-slate-50 disabled:cursor-not-allowed disabled:text-slate-400"
    >
      {children}
    </button>
  );
}
