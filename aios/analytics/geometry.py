"""Plane geometry for zone and line analytics, in normalized frame coordinates.

Coordinate system (used by every function here and by the zone / line analytics):

* ``x`` grows to the right, ``y`` grows *downwards* (image convention);
* both are normalized to ``[0, 1]``: ``x = x_px / frame_width``, ``y = y_px / frame_height``;
* pixel coordinates are *continuous edges*: pixel column ``i`` covers ``[i, i + 1)``, so a box
  covering the whole frame is ``(0, 0, width, height)`` and a box covering the last pixel row
  has ``y2 == height`` -- its bottom-centre anchor has ``y == 1.0`` exactly.

Predicates (point on edge, touching segments) use an absolute tolerance of :data:`EPS`
(``1e-9`` normalized units, about two millionths of a pixel on a 1920 px wide frame), so a
point exactly on a polygon edge or vertex counts as inside despite floating-point rounding.

Sources: the point-in-polygon test is the crossing-number (ray casting) test with the half-open
rule for vertices (W. R. Franklin, *PNPOLY*; J. O'Rourke, *Computational Geometry in C*, 2nd ed.,
section 7.4); segment intersection uses the orientation (cross product) test (Cormen, Leiserson,
Rivest and Stein, *Introduction to Algorithms*, section 33.1); the polygon area is the shoelace
formula.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
from numpy.typing import ArrayLike, NDArray

EPS = 1e-9
"""Absolute tolerance of the geometric predicates, in normalized units."""

Anchor = Literal["bottom_center", "center", "top_center"]
"""Which point of a box represents the object: ``bottom_center`` (the feet / wheels on the
ground, the default for zones and lines), ``center`` or ``top_center``."""

ANCHORS: tuple[Anchor, ...] = get_args(Anchor)

FloatArray = NDArray[np.float64]
PointLike = Sequence[float] | NDArray[Any]
"""A 2D point ``(x, y)``: a sequence of two numbers or an array of shape ``(2,)``."""


def _point(p: PointLike, name: str) -> tuple[float, float]:
    arr = np.asarray(p, dtype=np.float64)
    if arr.shape != (2,):
        raise ValueError(f"{name} must be a point (x, y), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must have finite coordinates, got {arr.tolist()}")
    return float(arr[0]), float(arr[1])


def anchor_points(
    xyxy: ArrayLike, width: float, height: float, anchor: Anchor = "bottom_center"
) -> FloatArray:
    """Return the normalized anchor point of each box.

    The anchor is computed from the box *as detected* (``xyxy`` is not clipped to the frame
    first), then the resulting point is clamped to ``[0, 1]``. So a box reaching below the frame
    (``y2 > height``) has its bottom-centre anchor on the bottom border (``y == 1.0``), and a box
    covering the last pixel row (``y2 == height``, continuous pixel edges) has ``y == 1.0`` too:
    both are inside a zone that reaches ``y = 1.0``.

    Args:
        xyxy: ``(N, 4)`` boxes ``x1, y1, x2, y2`` in pixels (continuous edges).
        width: frame width in pixels, ``> 0``.
        height: frame height in pixels, ``> 0``.
        anchor: ``"bottom_center"`` ``((x1 + x2) / 2, y2)``, ``"center"``
            ``((x1 + x2) / 2, (y1 + y2) / 2)`` or ``"top_center"`` ``((x1 + x2) / 2, y1)``.

    Returns:
        ``(N, 2)`` float64 points ``(x, y)`` in normalized coordinates, each in ``[0, 1]``.

    Raises:
        ValueError: ``xyxy`` is not ``(N, 4)`` or holds non-finite values, ``width`` or
            ``height`` is not a positive finite number, or ``anchor`` is unknown.
    """
    boxes = np.asarray(xyxy, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"xyxy must have shape (N, 4), got {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
        raise ValueError("xyxy must hold finite coordinates")
    if not (math.isfinite(width) and width > 0 and math.isfinite(height) and height > 0):
        raise ValueError(f"frame size must be positive, got {width} x {height}")
    x = (boxes[:, 0] + boxes[:, 2]) / 2.0
    if anchor == "bottom_center":
        y = boxes[:, 3]
    elif anchor == "center":
        y = (boxes[:, 1] + boxes[:, 3]) / 2.0
    elif anchor == "top_center":
        y = boxes[:, 1]
    else:
        raise ValueError(f"unknown anchor {anchor!r}; expected one of {', '.join(ANCHORS)}")
    points = np.stack([x / float(width), y / float(height)], axis=1)
    return np.clip(points, 0.0, 1.0)


def _as_polygon(polygon: ArrayLike) -> FloatArray:
    poly = np.asarray(polygon, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2:
        raise ValueError(f"polygon must have shape (M, 2), got {poly.shape}")
    return poly


def polygon_area(polygon: ArrayLike) -> float:
    """Return the signed area of a polygon (shoelace formula), in normalized units squared.

    Positive when the vertices run clockwise *on screen* (counter-clockwise in the y-up
    mathematical convention), negative otherwise.

    Args:
        polygon: ``(M, 2)`` vertices, the last one implicitly joined to the first.
    """
    poly = _as_polygon(polygon)
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def validate_polygon(polygon: ArrayLike) -> FloatArray:
    """Check that ``polygon`` is a usable zone and return it as an ``(M, 2)`` float64 array.

    A zone polygon has at least 3 distinct vertices in normalized coordinates, the last vertex
    implicitly joined to the first (a repeated closing vertex equal to the first one is
    accepted and dropped). It may be concave and may contain collinear consecutive vertices,
    but must not be self-intersecting (no two edges may touch except consecutive edges at their
    shared vertex).

    Args:
        polygon: ``(M, 2)`` vertices ``(x, y)`` in normalized coordinates.

    Returns:
        The vertices as a new ``(M, 2)`` float64 array (closing vertex dropped).

    Raises:
        ValueError: with a message naming the problem: wrong shape, non-finite coordinates,
            fewer than 3 vertices, a coordinate outside ``[0, 1]``, a repeated vertex, zero area
            (``|area| <= EPS``, e.g. all vertices collinear), or two edges intersecting.
    """
    poly = _as_polygon(polygon).copy()
    if not np.all(np.isfinite(poly)):
        raise ValueError("polygon has non-finite coordinates")
    if len(poly) >= 2 and np.array_equal(poly[0], poly[-1]):
        poly = poly[:-1]
    m = len(poly)
    if m < 3:
        raise ValueError(f"polygon needs at least 3 vertices, got {m}")
    bad = np.nonzero(np.any((poly < 0.0) | (poly > 1.0), axis=1))[0]
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"polygon vertex {i} {tuple(poly[i].tolist())} is outside [0, 1]: "
            "coordinates are normalized to the frame width and height"
        )
    for i in range(m):
        for j in range(i + 1, m):
            if np.hypot(*(poly[i] - poly[j])) <= EPS:
                raise ValueError(f"polygon vertices {i} and {j} are the same point")
    far = poly[int(np.argmax(np.hypot(*(poly - poly[0]).T)))]
    if np.all(np.abs(signed_distances(poly, poly[0], far)) <= EPS):
        raise ValueError("polygon has zero area: all its vertices are on one line")
    edges = [(poly[i], poly[(i + 1) % m]) for i in range(m)]
    for i in range(m):
        for j in range(i + 1, m):
            a0, a1 = edges[i]
            b0, b1 = edges[j]
            adjacent = j == i + 1 or (i == 0 and j == m - 1)
            if adjacent:
                # Consecutive edges share a vertex; they intersect elsewhere only when the second
                # doubles back over the first (collinear, opposite directions).
                if j == i + 1:
                    u, v = a1 - a0, b1 - b0
                else:  # edge m-1 ends where edge 0 starts
                    u, v = b1 - b0, a1 - a0
                cross = u[0] * v[1] - u[1] * v[0]
                if abs(cross) <= EPS * np.hypot(*u) * np.hypot(*v) and float(np.dot(u, v)) < 0:
                    raise ValueError(f"polygon is self-intersecting: edges {i} and {j} overlap")
            elif segments_intersect(a0, a1, b0, b1):
                raise ValueError(f"polygon is self-intersecting: edges {i} and {j} intersect")
    area = polygon_area(poly)
    if abs(area) <= EPS:
        raise ValueError(f"polygon has zero area ({area:.3g} normalized units squared)")
    return poly


def _point_segment_distances(points: FloatArray, a: FloatArray, b: FloatArray) -> FloatArray:
    """Distances ``(N, M)`` from ``N`` points to ``M`` segments ``a[k] -> b[k]``."""
    d = b - a  # (M, 2)
    length2 = np.sum(d * d, axis=1)  # (M,)
    rel = points[:, None, :] - a[None, :, :]  # (N, M, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(length2 > 0, np.sum(rel * d[None], axis=2) / length2, 0.0)
    t = np.clip(t, 0.0, 1.0)
    closest = a[None] + t[..., None] * d[None]
    return np.asarray(np.hypot(*np.moveaxis(points[:, None, :] - closest, 2, 0)))


def points_in_polygon(points: ArrayLike, polygon: ArrayLike) -> NDArray[np.bool_]:
    """Return which points lie inside a polygon, edges and vertices included.

    A point within :data:`EPS` of an edge (or vertex) is inside. Otherwise the crossing-number
    (ray casting) test decides, with the half-open rule (an edge counts when one end is strictly
    above the point's horizontal and the other is not), which handles horizontal and collinear
    edges and rays through vertices without double counting. Two zones that share an edge both
    contain the points on that edge; zones more than ``2 * EPS`` apart never share a point.

    The polygon is assumed valid (see :func:`validate_polygon`); only its shape is checked here.

    Args:
        points: ``(N, 2)`` points ``(x, y)``, normalized coordinates.
        polygon: ``(M, 2)`` vertices, ``M >= 3``, last vertex implicitly joined to the first.

    Returns:
        ``(N,)`` bool mask, true for points inside or on the boundary.

    Raises:
        ValueError: ``points`` is not ``(N, 2)`` or ``polygon`` is not ``(M, 2)`` with ``M >= 3``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    poly = _as_polygon(polygon)
    if len(poly) < 3:
        raise ValueError(f"polygon needs at least 3 vertices, got {len(poly)}")
    if len(pts) == 0:
        return np.zeros(0, dtype=np.bool_)
    a = poly
    b = np.roll(poly, -1, axis=0)
    on_edge = np.any(_point_segment_distances(pts, a, b) <= EPS, axis=1)

    px = pts[:, 0:1]  # (N, 1)
    py = pts[:, 1:2]
    ax, ay = a[None, :, 0], a[None, :, 1]  # (1, M)
    bx, by = b[None, :, 0], b[None, :, 1]
    straddles = (ay > py) != (by > py)  # never true for horizontal edges
    with np.errstate(invalid="ignore", divide="ignore"):
        x_cross = ax + (py - ay) * (bx - ax) / (by - ay)
    crossings = np.sum(straddles & (px < x_cross), axis=1)
    inside: NDArray[np.bool_] = on_edge | (crossings % 2 == 1)
    return inside


def side_of_line(p: PointLike, a: PointLike, b: PointLike) -> float:
    """Return the signed distance from point ``p`` to the infinite line through ``a`` and ``b``.

    ``cross(b - a, p - a) / |b - a|`` in normalized units. With ``y`` pointing down the sign is
    *positive on the right-hand side* of the directed line ``a -> b`` as seen on screen, e.g. for
    ``a = (0, 0.5)``, ``b = (1, 0.5)`` (drawn left to right) points below the line are positive.

    Raises:
        ValueError: a point is not ``(x, y)`` or is non-finite, or ``a`` and ``b`` coincide.
    """
    px, py = _point(p, "p")
    return float(
        signed_distances(np.array([[px, py]]), np.array(_point(a, "a")), _point(b, "b"))[0]
    )


def signed_distances(points: ArrayLike, a: PointLike, b: PointLike) -> FloatArray:
    """Vectorized :func:`side_of_line`: ``(N, 2)`` points to ``(N,)`` signed distances.

    Raises:
        ValueError: ``points`` is not ``(N, 2)``, or ``a`` and ``b`` coincide.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {pts.shape}")
    ax, ay = _point(a, "a")
    bx, by = _point(b, "b")
    length = math.hypot(bx - ax, by - ay)
    if length <= EPS:
        raise ValueError("line end points a and b coincide")
    cross = (bx - ax) * (pts[:, 1] - ay) - (by - ay) * (pts[:, 0] - ax)
    return np.asarray(cross / length, dtype=np.float64)


def _cross(o: tuple[float, float], p: tuple[float, float], q: tuple[float, float]) -> float:
    return (p[0] - o[0]) * (q[1] - o[1]) - (p[1] - o[1]) * (q[0] - o[0])


def _dist_point_segment(
    p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]
) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / length2
    t = min(1.0, max(0.0, t))
    return math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy))


def segments_intersect(p0: PointLike, p1: PointLike, a: PointLike, b: PointLike) -> bool:
    """Return whether segment ``p0 -> p1`` meets segment ``a -> b``, touching included.

    True when the segments cross properly (orientation test: each segment's end points lie
    strictly on opposite sides of the other's line) or come within :data:`EPS` of each other
    (an end point on the other segment, collinear overlap, shared end points). Zero-length
    segments are points and are handled.

    Raises:
        ValueError: a point is not ``(x, y)`` or is non-finite.
    """
    q0, q1 = _point(p0, "p0"), _point(p1, "p1")
    s0, s1 = _point(a, "a"), _point(b, "b")
    d1, d2 = _cross(q0, q1, s0), _cross(q0, q1, s1)
    d3, d4 = _cross(s0, s1, q0), _cross(s0, s1, q1)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    # Not a proper crossing: the segments meet iff some end point is (within EPS) on the other.
    return (
        min(
            _dist_point_segment(s0, q0, q1),
            _dist_point_segment(s1, q0, q1),
            _dist_point_segment(q0, s0, s1),
            _dist_point_segment(q1, s0, s1),
        )
        <= EPS
    )


def segment_line_intersection(
    p0: PointLike, p1: PointLike, a: PointLike, b: PointLike
) -> tuple[float, float]:
    """Return the point where segment ``p0 -> p1`` meets the infinite line through ``a``, ``b``.

    Linear interpolation on the signed distances of ``p0`` and ``p1`` to the line; when both are
    (nearly) equal, i.e. the segment is parallel to the line, returns the midpoint of the segment.

    Raises:
        ValueError: a point is not ``(x, y)`` or is non-finite, or ``a`` and ``b`` coincide.
    """
    q0, q1 = _point(p0, "p0"), _point(p1, "p1")
    d = signed_distances(np.array([q0, q1]), a, b)
    denom = float(d[0] - d[1])
    t = 0.5 if abs(denom) <= EPS else min(1.0, max(0.0, float(d[0]) / denom))
    return q0[0] + t * (q1[0] - q0[0]), q0[1] + t * (q1[1] - q0[1])
