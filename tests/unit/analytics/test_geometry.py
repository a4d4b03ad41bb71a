"""Tests for aios.analytics.geometry: anchors, point in polygon, segments, polygon checks."""

from __future__ import annotations

import numpy as np
import pytest

from aios.analytics.geometry import (
    EPS,
    anchor_points,
    points_in_polygon,
    polygon_area,
    segment_line_intersection,
    segments_intersect,
    side_of_line,
    signed_distances,
    validate_polygon,
)

SQUARE = [(0.2, 0.2), (0.6, 0.2), (0.6, 0.6), (0.2, 0.6)]
# A "U" shape (concave): the notch between x=0.4 and x=0.6 above y=0.5 is outside.
U_SHAPE = [
    (0.2, 0.2),
    (0.4, 0.2),
    (0.4, 0.5),
    (0.6, 0.5),
    (0.6, 0.2),
    (0.8, 0.2),
    (0.8, 0.8),
    (0.2, 0.8),
]
BOTTOM_BAND = [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        ("bottom_center", (0.15, 0.5)),
        ("center", (0.15, 0.35)),
        ("top_center", (0.15, 0.2)),
    ],
)
def test_anchor_kinds(anchor: str, expected: tuple[float, float]) -> None:
    """Each anchor kind picks the documented point of the box, normalized."""
    # GIVEN a 200x100 frame and a box from (20, 20) to (40, 50) pixels
    xyxy = np.array([[20, 20, 40, 50]], dtype=np.float32)
    # WHEN computing its anchor
    pts = anchor_points(xyxy, 200, 100, anchor)  # type: ignore[arg-type]
    # THEN it is the expected normalized point
    np.testing.assert_allclose(pts, [expected])


def test_anchor_on_last_pixel_row_is_one() -> None:
    """A box covering the last pixel row (y2 == height) has anchor y == 1.0 exactly."""
    # GIVEN a 640x480 frame and a box whose bottom edge is the frame's bottom edge
    xyxy = np.array([[100, 300, 200, 480]], dtype=np.float32)
    # WHEN computing the bottom-centre anchor
    pts = anchor_points(xyxy, 640, 480)
    # THEN y is exactly 1.0 and the anchor is inside a zone reaching y = 1.0
    assert pts[0, 1] == 1.0
    assert points_in_polygon(pts, BOTTOM_BAND).tolist() == [True]


def test_anchor_of_box_below_frame_is_clamped() -> None:
    """A box extending below the frame is anchored on the bottom border, inside the zone."""
    # GIVEN a box whose bottom is 40 px below a 480 px tall frame and wider than the frame
    xyxy = np.array([[-50, 300, 690, 520]], dtype=np.float32)
    # WHEN computing the bottom-centre anchor
    pts = anchor_points(xyxy, 640, 480)
    # THEN the anchor is computed from the unclipped box, then clamped
    np.testing.assert_allclose(pts, [[0.5, 1.0]])
    assert points_in_polygon(pts, BOTTOM_BAND).tolist() == [True]


def test_anchor_uses_unclipped_box() -> None:
    """The anchor x comes from the box as detected, not the box clipped to the frame."""
    # GIVEN a box half outside the left border
    xyxy = np.array([[-100, 0, 100, 50]], dtype=np.float32)
    # WHEN computing the anchor
    pts = anchor_points(xyxy, 400, 100)
    # THEN x is the unclipped centre (0), not the clipped centre (50 px)
    np.testing.assert_allclose(pts, [[0.0, 0.5]])


def test_anchor_points_empty() -> None:
    """No boxes give a (0, 2) array."""
    # GIVEN no boxes / WHEN computing anchors / THEN the result is empty with 2 columns
    assert anchor_points(np.zeros((0, 4), np.float32), 10, 10).shape == (0, 2)


@pytest.mark.parametrize(
    ("xyxy", "width", "height", "anchor", "message"),
    [
        (np.zeros((1, 3)), 10, 10, "center", "shape"),
        (np.array([[0, 0, np.nan, 1]]), 10, 10, "center", "finite"),
        (np.zeros((1, 4)), 0, 10, "center", "positive"),
        (np.zeros((1, 4)), 10, 10, "feet", "unknown anchor"),
    ],
)
def test_anchor_points_rejects_bad_input(
    xyxy: np.ndarray, width: int, height: int, anchor: str, message: str
) -> None:
    """Bad boxes, frame size or anchor name raise ValueError."""
    # GIVEN invalid input / WHEN computing anchors / THEN a precise ValueError is raised
    with pytest.raises(ValueError, match=message):
        anchor_points(xyxy, width, height, anchor)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((0.4, 0.4), True),  # interior
        ((0.2, 0.4), True),  # on the left edge
        ((0.4, 0.2), True),  # on the top (horizontal) edge
        ((0.4, 0.6), True),  # on the bottom (horizontal) edge
        ((0.6, 0.6), True),  # on a vertex
        ((0.2, 0.2), True),  # on a vertex
        ((0.6 + 1e-10, 0.4), True),  # within tolerance of an edge
        ((0.6 + 1e-6, 0.4), False),  # just outside
        ((0.1, 0.2), False),  # on the extension of the top edge
        ((0.7, 0.6), False),  # ray through nothing, level with the bottom edge
        ((0.1, 0.6), False),  # level with the bottom edge, left of the square
        ((0.9, 0.9), False),
    ],
)
def test_points_in_square_edges_inclusive(point: tuple[float, float], inside: bool) -> None:
    """Points on edges and vertices are inside; points just outside are not."""
    # GIVEN an axis-aligned square zone
    # WHEN testing the point
    result = points_in_polygon(np.array([point]), SQUARE)
    # THEN membership matches, edges and vertices included
    assert result.tolist() == [inside]


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((0.5, 0.3), False),  # in the notch
        ((0.5, 0.5), True),  # on the notch's bottom edge
        ((0.4, 0.3), True),  # on the notch's left edge
        ((0.5, 0.7), True),  # below the notch
        ((0.3, 0.3), True),  # left arm
        ((0.7, 0.2), True),  # on the right arm's top edge (collinear with the left arm's)
        ((0.5, 0.2), False),  # between the arms, level with their top edges
        ((0.1, 0.5), False),  # left of the shape, level with the notch bottom (horizontal edge)
        ((0.1, 0.2), False),  # left of the shape, level with two horizontal top edges
    ],
)
def test_points_in_concave_polygon(point: tuple[float, float], inside: bool) -> None:
    """A concave polygon with collinear horizontal edges is handled by the crossing test."""
    # GIVEN a U-shaped zone whose rays hit horizontal edges and vertices
    # WHEN testing the point
    result = points_in_polygon(np.array([point]), U_SHAPE)
    # THEN membership matches
    assert result.tolist() == [inside]


def test_points_in_polygon_collinear_vertices_and_ray_through_vertex() -> None:
    """Redundant collinear vertices and rays through vertices do not double count."""
    # GIVEN a diamond with an extra vertex in the middle of one edge
    diamond = [(0.5, 0.1), (0.7, 0.3), (0.9, 0.5), (0.5, 0.9), (0.1, 0.5)]
    pts = np.array([(0.5, 0.5), (0.05, 0.5), (0.95, 0.5), (0.3, 0.3), (0.8, 0.4)])
    # WHEN testing points level with vertices (rays pass through them)
    result = points_in_polygon(pts, diamond)
    # THEN only the interior and on-edge points are inside
    assert result.tolist() == [True, False, False, True, True]


def test_disjoint_zones_never_share_a_detection() -> None:
    """No anchor is inside two disjoint zones, also on their facing edges."""
    # GIVEN two disjoint zones separated by a thin gap
    left = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    right = [(0.5 + 1e-6, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5 + 1e-6, 1.0)]
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 201), np.linspace(0, 1, 51)), -1).reshape(-1, 2)
    grid = np.concatenate([grid, [[0.5, 0.5], [0.5 + 1e-6, 0.5], [0.5 + 5e-7, 0.5]]])
    # WHEN testing every point against both zones
    in_left = points_in_polygon(grid, left)
    in_right = points_in_polygon(grid, right)
    # THEN no point is in both
    assert not np.any(in_left & in_right)


def test_zones_sharing_an_edge_both_contain_points_on_it() -> None:
    """Documented behaviour: a point on a shared edge is inside both zones."""
    # GIVEN two zones sharing the edge x = 0.5
    left = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    right = [(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)]
    # WHEN testing a point on that edge
    p = np.array([[0.5, 0.3]])
    # THEN it is in both
    assert points_in_polygon(p, left)[0] and points_in_polygon(p, right)[0]


def test_points_in_polygon_empty_and_bad_shape() -> None:
    """No points give an empty mask; bad shapes raise ValueError."""
    # GIVEN no points / WHEN testing / THEN the mask is empty
    assert points_in_polygon(np.zeros((0, 2)), SQUARE).shape == (0,)
    # GIVEN malformed input / WHEN testing / THEN ValueError
    with pytest.raises(ValueError, match="points"):
        points_in_polygon(np.zeros((2, 3)), SQUARE)
    with pytest.raises(ValueError, match="at least 3"):
        points_in_polygon(np.zeros((1, 2)), SQUARE[:2])


def test_validate_polygon_accepts_and_drops_closing_vertex() -> None:
    """A valid polygon passes; a repeated closing vertex is dropped."""
    # GIVEN a closed square / WHEN validating / THEN the closing vertex is removed
    poly = validate_polygon([*SQUARE, SQUARE[0]])
    assert poly.shape == (4, 2)
    assert validate_polygon(U_SHAPE).shape == (8, 2)
    assert validate_polygon([(0, 0), (0.5, 0), (1, 0), (1, 1)]).shape == (4, 2)


@pytest.mark.parametrize(
    ("polygon", "message"),
    [
        ([(0.1, 0.1), (0.5, 0.5)], "at least 3 vertices"),
        ([(0.1, 0.1), (1.2, 0.1), (0.5, 0.5)], r"vertex 1 .* outside \[0, 1\]"),
        ([(0.1, -0.01), (0.9, 0.1), (0.5, 0.5)], r"outside \[0, 1\]"),
        ([(0.1, 0.1), (0.5, 0.5), (0.9, 0.9)], "zero area"),
        ([(0.1, 0.1), (0.9, 0.9), (0.5, 0.5), (0.3, 0.3)], "zero area"),
        ([(0.1, 0.1), (0.9, 0.9), (0.9, 0.1), (0.1, 0.9)], "self-intersecting"),
        ([(0.1, 0.1), (0.5, 0.1), (0.5, 0.5), (0.5, 0.1 + 1e-12), (0.1, 0.5)], "same point"),
        ([(0.1, 0.1), (0.9, 0.1), (0.5, 0.1), (0.5, 0.5)], "self-intersecting"),
        # a vertex touching a non-adjacent edge
        ([(0.1, 0.1), (0.9, 0.1), (0.5, 0.5), (0.5, 0.1), (0.1, 0.5)], "self-intersecting"),
        ([(0.1, 0.1), (np.nan, 0.1), (0.5, 0.5)], "non-finite"),
        ([0.1, 0.2, 0.3], "shape"),
    ],
)
def test_validate_polygon_rejects(polygon: list[tuple[float, float]], message: str) -> None:
    """Invalid polygons raise ValueError naming the problem."""
    # GIVEN an invalid polygon / WHEN validating / THEN a precise ValueError is raised
    with pytest.raises(ValueError, match=message):
        validate_polygon(polygon)


def test_polygon_area_sign() -> None:
    """Shoelace area: positive for clockwise-on-screen vertices."""
    # GIVEN the square listed clockwise on screen (y down) / WHEN computing area / THEN +0.16
    assert polygon_area(SQUARE) == pytest.approx(0.16)
    assert polygon_area(SQUARE[::-1]) == pytest.approx(-0.16)


@pytest.mark.parametrize(
    ("p0", "p1", "a", "b", "expected"),
    [
        ((0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0), True),  # proper crossing
        ((0.0, 0.0), (0.5, 0.5), (0.5, 0.5), (1.0, 0.0), True),  # shared end point
        ((0.0, 0.5), (1.0, 0.5), (0.5, 0.5), (0.5, 1.0), True),  # T: end point on segment
        ((0.0, 0.5), (0.6, 0.5), (0.4, 0.5), (1.0, 0.5), True),  # collinear overlap
        ((0.0, 0.5), (0.4, 0.5), (0.4 + 1e-10, 0.5), (1.0, 0.5), True),  # touching within EPS
        ((0.0, 0.5), (0.4, 0.5), (0.5, 0.5), (1.0, 0.5), False),  # collinear, disjoint
        ((0.0, 0.0), (1.0, 0.0), (0.0, 0.1), (1.0, 0.1), False),  # parallel
        ((0.0, 0.0), (0.4, 0.4), (0.0, 1.0), (1.0, 0.0), False),  # would cross if extended
        ((0.5, 0.5), (0.5, 0.5), (0.0, 0.5), (1.0, 0.5), True),  # zero-length on segment
        ((0.5, 0.6), (0.5, 0.6), (0.0, 0.5), (1.0, 0.5), False),  # zero-length off segment
    ],
)
def test_segments_intersect(
    p0: tuple[float, float],
    p1: tuple[float, float],
    a: tuple[float, float],
    b: tuple[float, float],
    expected: bool,
) -> None:
    """Segment intersection includes touching and overlap, excludes near misses."""
    # GIVEN two segments / WHEN testing them both ways round / THEN the answer matches
    assert segments_intersect(p0, p1, a, b) is expected
    assert segments_intersect(a, b, p1, p0) is expected


@pytest.mark.parametrize(
    ("p", "expected"),
    [((0.3, 0.6), 0.1), ((0.3, 0.45), -0.05), ((0.9, 0.5), 0.0)],
)
def test_side_of_line_sign_below_is_positive(p: tuple[float, float], expected: float) -> None:
    """For a line drawn left to right, points below on screen (y down) are positive."""
    # GIVEN the horizontal line y = 0.5 drawn from x = 0 to x = 1
    # WHEN measuring the signed distance of p
    d = side_of_line(p, (0.0, 0.5), (1.0, 0.5))
    # THEN it is the vertical offset, positive below
    assert d == pytest.approx(expected)


def test_side_of_line_is_a_distance_and_flips_with_direction() -> None:
    """The value is a Euclidean distance; reversing the line flips its sign."""
    # GIVEN a diagonal line and a point at distance sqrt(2)/2 * 0.2 from it
    a, b, p = (0.0, 0.0), (1.0, 1.0), (0.6, 0.4)
    # WHEN measuring both ways / THEN magnitudes match and signs are opposite
    assert side_of_line(p, a, b) == pytest.approx(-np.sqrt(2) * 0.1)
    assert side_of_line(p, b, a) == pytest.approx(np.sqrt(2) * 0.1)
    np.testing.assert_allclose(signed_distances(np.array([p, p]), a, b), [-np.sqrt(2) * 0.1] * 2)


def test_side_of_line_rejects_degenerate_line() -> None:
    """A line whose end points coincide raises ValueError."""
    # GIVEN a = b / WHEN measuring / THEN ValueError
    with pytest.raises(ValueError, match="coincide"):
        side_of_line((0.1, 0.1), (0.5, 0.5), (0.5, 0.5 + EPS / 10))


def test_segment_line_intersection_point() -> None:
    """The crossing point interpolates the signed distances."""
    # GIVEN a path from 0.1 above to 0.3 below the line y = 0.5
    # WHEN intersecting it with the line / THEN the point is a quarter of the way along
    x, y = segment_line_intersection((0.2, 0.4), (0.6, 0.8), (0.0, 0.5), (1.0, 0.5))
    assert (x, y) == pytest.approx((0.3, 0.5))
