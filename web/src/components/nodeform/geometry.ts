/**
 * Zone and line geometry for the drawing tools: conversions between normalized frame
 * coordinates (the configs' convention: x, y as fractions 0–1 of the frame width and height,
 * 0 = left/top) and pixels, and the editing state of a polygon or a line as a reducer.
 */

/** `[x, y]`: normalized (0–1) in configs, pixels on screen. */
export type Point = [number, number];

/** A frame or image size in pixels. */
export interface Size {
  width: number;
  height: number;
}

/** Digits kept for normalized coordinates (1/10000 of the frame: sub-pixel up to 8K). */
export const COORD_DIGITS = 4;

/** Clamp to [0, 1]. NaN becomes 0. */
export function clamp01(v: number): number {
  if (!Number.isFinite(v)) return v === Infinity ? 1 : 0;
  return Math.min(1, Math.max(0, v));
}

/** Round to `digits` decimals (4 by default), without `-0`. */
export function roundCoord(v: number, digits = COORD_DIGITS): number {
  const f = 10 ** digits;
  const r = Math.round(v * f) / f;
  return r === 0 ? 0 : r;
}

/** A normalized point as pixels of a frame of `size`. */
export function toPixels(p: Point, size: Size): Point {
  return [p[0] * size.width, p[1] * size.height];
}

/**
 * A pixel point of a frame of `size` as normalized coordinates, clamped to the frame and
 * rounded to {@link COORD_DIGITS} decimals. Throws RangeError for an empty size.
 */
export function toNormalized(p: Point, size: Size): Point {
  if (!(size.width > 0) || !(size.height > 0)) throw new RangeError("frame size must be positive");
  return [roundCoord(clamp01(p[0] / size.width)), roundCoord(clamp01(p[1] / size.height))];
}

/** A pointer position (client pixels) over an element's box as normalized coordinates. */
export function clientToNormalized(
  clientX: number,
  clientY: number,
  box: { left: number; top: number; width: number; height: number },
): Point {
  return toNormalized([clientX - box.left, clientY - box.top], { width: box.width, height: box.height });
}

/** Whether a value is `[x, y]` with two finite numbers. */
export function isPoint(v: unknown): v is Point {
  return Array.isArray(v) && v.length === 2 && v.every((n) => typeof n === "number" && Number.isFinite(n));
}

/** The points of a config value (anything not a point is dropped). */
export function pointsOf(value: unknown): Point[] {
  return Array.isArray(value) ? value.filter(isPoint).map((p) => [p[0], p[1]] as Point) : [];
}

/**
 * Where to draw a line's 'in' arrow, in pixels: from the middle of the segment `a → b`
 * towards its right-hand side as seen on screen (y down) — crossing from left to right
 * walking from the start to the end is 'in' (the line-crossing node's convention).
 * Null when the points coincide.
 */
export function inArrow(a: Point, b: Point, length: number): { from: Point; to: Point } | null {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const norm = Math.hypot(dx, dy);
  if (norm === 0) return null;
  const mid: Point = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
  // Right-hand normal with y pointing down: (-dy, dx).
  return { from: mid, to: [mid[0] + (-dy / norm) * length, mid[1] + (dx / norm) * length] };
}

// ----- editing state --------------------------------------------------------------------

export interface ShapeState {
  points: Point[];
  /** Drawing is done: clicks no longer add points (a line closes at two points). */
  closed: boolean;
  /** Earlier states for undo, most recent last. */
  past: { points: Point[]; closed: boolean }[];
}

export type ShapeAction =
  | { type: "add"; point: Point }
  /** Move a vertex; `record: false` while dragging (the drag start recorded the undo step). */
  | { type: "move"; index: number; point: Point; record?: boolean }
  /** Record an undo step without changing anything (start of a drag). */
  | { type: "checkpoint" }
  | { type: "delete"; index: number }
  | { type: "close" }
  | { type: "reopen" }
  | { type: "undo" }
  | { type: "clear" }
  /** Reverse the order (a line's direction). */
  | { type: "reverse" }
  /** Replace from outside (the config value changed), without an undo step. */
  | { type: "set"; points: Point[] };

export interface ShapeRules {
  /** 2 for a line, the schema's maxItems for a polygon. */
  maxPoints: number;
  /** Points needed before the shape can be closed (3 for a polygon, 2 for a line). */
  minPoints: number;
}

const HISTORY = 100;

function record(state: ShapeState): ShapeState["past"] {
  return [...state.past.slice(-(HISTORY - 1)), { points: state.points, closed: state.closed }];
}

/** The initial state for a config value: closed when it already has enough points. */
export function initShape(points: Point[], rules: ShapeRules): ShapeState {
  return { points, closed: points.length >= rules.minPoints, past: [] };
}

/**
 * The reducer of the drawing tools. Points are normalized and clamped; a line closes by
 * itself at its second point; a polygon closes on request once it has `minPoints`.
 */
export function shapeReducer(rules: ShapeRules) {
  return (state: ShapeState, action: ShapeAction): ShapeState => {
    switch (action.type) {
      case "add": {
        if (state.closed || state.points.length >= rules.maxPoints) return state;
        const point: Point = [roundCoord(clamp01(action.point[0])), roundCoord(clamp01(action.point[1]))];
        const points = [...state.points, point];
        const closed = rules.maxPoints === rules.minPoints && points.length === rules.maxPoints;
        return { points, closed, past: record(state) };
      }
      case "move": {
        if (action.index < 0 || action.index >= state.points.length) return state;
        const point: Point = [roundCoord(clamp01(action.point[0])), roundCoord(clamp01(action.point[1]))];
        const points = state.points.map((p, i) => (i === action.index ? point : p));
        return { ...state, points, past: action.record === false ? state.past : record(state) };
      }
      case "checkpoint":
        return { ...state, past: record(state) };
      case "delete": {
        if (action.index < 0 || action.index >= state.points.length) return state;
        const points = state.points.filter((_, i) => i !== action.index);
        return { points, closed: state.closed && points.length >= rules.minPoints, past: record(state) };
      }
      case "close":
        if (state.closed || state.points.length < rules.minPoints) return state;
        return { ...state, closed: true, past: record(state) };
      case "reopen":
        if (!state.closed || state.points.length >= rules.maxPoints) return state;
        return { ...state, closed: false, past: record(state) };
      case "undo": {
        const previous = state.past[state.past.length - 1];
        if (!previous) return state;
        return { points: previous.points, closed: previous.closed, past: state.past.slice(0, -1) };
      }
      case "clear":
        if (state.points.length === 0 && !state.closed) return state;
        return { points: [], closed: false, past: record(state) };
      case "reverse":
        if (state.points.length < 2) return state;
        return { ...state, points: [...state.points].reverse(), past: record(state) };
      case "set":
        return { ...state, points: action.points, closed: action.points.length >= rules.minPoints };
    }
  };
}

/** Whether two point lists are equal. */
export function samePoints(a: Point[], b: Point[]): boolean {
  return a.length === b.length && a.every((p, i) => p[0] === b[i][0] && p[1] === b[i][1]);
}
