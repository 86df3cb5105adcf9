"""Box and oriented-box overlaps and greedy NMS, against torchvision and shapely."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import torch
import torchvision

from rsdl_qgis_plugin.core.objects import overlap
from rsdl_qgis_plugin.core.objects.detections import Detections, oriented_corners
from rsdl_qgis_plugin.core.objects.overlap import (
    box_intersection_areas,
    box_iou,
    clip_convex_polygons,
    convex_intersection_areas,
    convex_iou,
    intersection_over_area,
    nms,
    paired_convex_intersection_areas,
    pairwise_iou,
    polygon_areas,
)


def _random_boxes(rng: np.random.Generator, count: int, extent: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0, extent, (count, 2))
    wh = rng.uniform(1, extent / 3, (count, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _random_oriented(rng: np.random.Generator, count: int, extent: float = 60.0) -> np.ndarray:
    return np.column_stack(
        [
            rng.uniform(0, extent, (count, 2)),
            rng.uniform(1, extent / 2, (count, 2)),
            rng.uniform(-np.pi, np.pi, count),
        ]
    )


def _shapely_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa = [shapely.Polygon(c) for c in a]
    pb = [shapely.Polygon(c) for c in b]
    out = np.zeros((len(pa), len(pb)))
    for i, p in enumerate(pa):
        for j, q in enumerate(pb):
            union = p.union(q).area
            out[i, j] = p.intersection(q).area / union if union > 0 else 0.0
    return out


@pytest.mark.parametrize("seed", range(10))
def test_box_iou_matches_torchvision(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _random_boxes(rng, 40), _random_boxes(rng, 30)
    expected = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(box_iou(a, b), expected, rtol=0, atol=1e-12)


def test_box_iou_hand_case_and_degenerate_boxes() -> None:
    a = np.array([[0.0, 0, 10, 10], [5, 5, 5, 9], [0, 0, 0, 0]])
    b = np.array([[5.0, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    iou = box_iou(a, b)
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert iou[0, 1] == 1.0
    assert iou[0, 2] == 0.0
    # Zero-area boxes overlap nothing, even one another, and never give NaN.
    assert not np.isnan(iou).any()
    assert (iou[1:] == 0).all()
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)
    assert box_intersection_areas(a, b)[0, 0] == 50.0


@pytest.mark.parametrize("seed", range(10))
def test_convex_iou_matches_shapely_on_random_oriented_boxes(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    a = oriented_corners(_random_oriented(rng, 25))
    b = oriented_corners(_random_oriented(rng, 20))
    iou = convex_iou(a, b)
    np.testing.assert_allclose(iou, _shapely_iou(a, b), rtol=0, atol=1e-9)
    # Some pairs overlap, some do not: the test exercises both.
    assert (iou > 0).any() and (iou == 0).any()
    # Vertex order (clockwise or counter-clockwise) and the starting corner do not matter.
    np.testing.assert_allclose(convex_iou(a[:, ::-1], np.roll(b, 1, axis=1)), iou, rtol=0, atol=1e-9)


def test_convex_iou_special_cases_match_shapely() -> None:
    square = oriented_corners(np.array([[10.0, 10, 4, 4, 0]]))
    cases = {
        "identical": square,
        "touching edge": oriented_corners(np.array([[14.0, 10, 4, 4, 0]])),
        "touching corner": oriented_corners(np.array([[14.0, 14, 4, 4, 0]])),
        "nested": oriented_corners(np.array([[10.0, 10, 2, 2, 0.3]])),
        "enclosing": oriented_corners(np.array([[10.0, 10, 20, 20, 1.0]])),
        "disjoint": oriented_corners(np.array([[40.0, 40, 4, 4, 0.5]])),
        "rotated 45 degrees": oriented_corners(np.array([[10.0, 10, 4, 4, np.pi / 4]])),
        "shared edge, rotated 90": oriented_corners(np.array([[12.0, 10, 4, 4, np.pi / 2]])),
    }
    for name, other in cases.items():
        got = convex_iou(square, other)[0, 0]
        assert got == pytest.approx(_shapely_iou(square, other)[0, 0], abs=1e-12), name
    assert convex_iou(square, square)[0, 0] == pytest.approx(1.0)
    assert convex_iou(square, cases["touching edge"])[0, 0] == 0.0
    assert convex_iou(square, cases["nested"])[0, 0] == pytest.approx(4 / 16)


def test_convex_iou_degenerate_boxes_give_zero_not_nan() -> None:
    flat = oriented_corners(np.array([[10.0, 10, 0, 4, 0.4], [10, 10, 0, 0, 0], [10, 10, 6, 0, 1.2]]))
    square = oriented_corners(np.array([[10.0, 10, 4, 4, 0]]))
    for iou in (convex_iou(flat, square), convex_iou(square, flat), convex_iou(flat, flat)):
        assert not np.isnan(iou).any()
        assert (iou == 0).all()
    assert (paired_convex_intersection_areas(flat, np.repeat(square, 3, axis=0)) == 0).all()


def test_convex_iou_of_axis_aligned_quads_equals_box_iou() -> None:
    rng = np.random.default_rng(7)
    boxes = _random_boxes(rng, 50)
    detections = Detections(boxes, np.ones(50), np.zeros(50))
    np.testing.assert_allclose(
        convex_iou(detections.corners(), detections.corners()), box_iou(boxes, boxes), atol=1e-12
    )


def test_convex_intersection_areas_and_polygon_areas() -> None:
    rng = np.random.default_rng(3)
    oriented = _random_oriented(rng, 30)
    corners = oriented_corners(oriented)
    np.testing.assert_allclose(polygon_areas(corners), oriented[:, 2] * oriented[:, 3])
    areas = convex_intersection_areas(corners, corners)
    polys = [shapely.Polygon(c) for c in corners]
    expected = np.array([[p.intersection(q).area for q in polys] for p in polys])
    np.testing.assert_allclose(areas, expected, atol=1e-9)


def test_pairwise_iou_uses_oriented_geometry_only_when_both_are_oriented() -> None:
    oriented = np.array([[10.0, 10, 8, 2, np.pi / 4], [11, 10, 8, 2, -np.pi / 4]])
    a = Detections.from_oriented(oriented, np.ones(2), np.zeros(2))
    plain = Detections(a.boxes, a.scores, a.class_ids)
    np.testing.assert_allclose(pairwise_iou(a, a), _shapely_iou(a.corners(), a.corners()), atol=1e-12)
    np.testing.assert_allclose(pairwise_iou(a, plain), box_iou(a.boxes, a.boxes))
    assert pairwise_iou(a, a)[0, 1] < box_iou(a.boxes, a.boxes)[0, 1]


def test_intersection_over_area_is_relative_to_the_row_object() -> None:
    small = Detections(np.array([[0.0, 0, 4, 4], [10, 10, 10, 10]]), np.ones(2), np.zeros(2))
    large = Detections(np.array([[2.0, 0, 12, 10]]), np.ones(1), np.zeros(1))
    np.testing.assert_allclose(intersection_over_area(small, large), [[8 / 16], [0.0]])
    np.testing.assert_allclose(intersection_over_area(large, small), [[8 / 100, 0.0]])
    oriented = Detections.from_oriented(np.array([[5.0, 5, 2, 2, 0.7]]), np.ones(1), np.zeros(1))
    whole = Detections.from_oriented(np.array([[5.0, 5, 20, 20, 0.0]]), np.ones(1), np.zeros(1))
    assert intersection_over_area(oriented, whole)[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(15))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_torchvision(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 100, extent=150)
    # Jittered copies, as a detector's duplicates, so every threshold suppresses some boxes.
    boxes = np.concatenate([boxes, boxes + rng.normal(0, 1.5, boxes.shape)])
    boxes = np.concatenate(
        [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], 1
    )
    scores = rng.permutation(200) / 200 + 0.001  # distinct: torchvision breaks ties its own way
    classes = rng.integers(0, 3, 200)
    detections = Detections(boxes, scores, classes)
    tb, ts = torch.from_numpy(boxes), torch.from_numpy(scores)
    expected_agnostic = torchvision.ops.nms(tb, ts, threshold).numpy()
    expected_classes = torchvision.ops.batched_nms(tb, ts, torch.from_numpy(classes), threshold).numpy()
    np.testing.assert_array_equal(nms(detections, threshold, class_agnostic=True), expected_agnostic)
    np.testing.assert_array_equal(nms(detections, threshold), expected_classes)
    assert len(expected_agnostic) < 200  # some boxes were suppressed


def test_nms_ties_keep_the_lower_index_first_and_equal_iou_is_not_suppressed() -> None:
    boxes = np.array([[0.0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10], [0, 0, 10, 10]])
    detections = Detections(boxes, [0.5, 0.9, 0.9, 0.5], [0, 0, 0, 1])
    np.testing.assert_array_equal(nms(detections, 0.5), [1, 2, 3])
    np.testing.assert_array_equal(nms(detections, 0.5, class_agnostic=True), [1, 2])
    # IoU of boxes 1 and 2 is exactly 1/3: suppressed only by a strictly lower threshold.
    np.testing.assert_array_equal(nms(detections, 1 / 3, class_agnostic=True), [1, 2])
    np.testing.assert_array_equal(nms(detections, 0.33, class_agnostic=True), [1])
    assert nms(Detections.empty(), 0.5).shape == (0,)


@pytest.mark.parametrize("seed", range(5))
def test_oriented_nms_matches_a_shapely_greedy_reference(seed: int) -> None:
    rng = np.random.default_rng(50 + seed)
    oriented = _random_oriented(rng, 80)
    scores = rng.permutation(80) / 80.0
    classes = rng.integers(0, 2, 80)
    detections = Detections.from_oriented(oriented, scores, classes)
    iou = _shapely_iou(detections.corners(), detections.corners())
    for agnostic in (False, True):
        kept: list[int] = []
        for i in np.argsort(-scores):
            if all(iou[i, k] <= 0.4 or (not agnostic and classes[i] != classes[k]) for k in kept):
                kept.append(int(i))
        np.testing.assert_array_equal(nms(detections, 0.4, class_agnostic=agnostic), kept)


def test_oriented_nms_uses_the_oriented_boxes_not_their_enclosing_boxes() -> None:
    # Two thin crossed diagonals: the same enclosing box, little oriented overlap.
    crossed = np.array([[10.0, 10, 20, 2, np.pi / 4], [10, 10, 20, 2, -np.pi / 4]])
    detections = Detections.from_oriented(crossed, [0.9, 0.8], [0, 0])
    np.testing.assert_array_equal(nms(detections, 0.5), [0, 1])
    np.testing.assert_array_equal(nms(Detections(detections.boxes, [0.9, 0.8], [0, 0]), 0.5), [0])


@pytest.mark.parametrize("seed", range(5))
def test_clip_convex_polygons_matches_shapely(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    subject = oriented_corners(_random_oriented(rng, 60))
    clip = oriented_corners(_random_oriented(rng, 60))
    clipped = clip_convex_polygons(subject, clip)
    assert clipped.shape == (60, 8, 2)
    for got, a, b in zip(clipped, subject, clip):
        expected = shapely.Polygon(a).intersection(shapely.Polygon(b))
        assert polygon_areas(got[None])[0] == pytest.approx(expected.area, abs=1e-9)
        if expected.area > 0:
            # The same region, not only the same area.
            assert shapely.Polygon(got).symmetric_difference(expected).area == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("oriented", [False, True])
def test_nms_gives_the_same_result_when_too_many_pairs_to_hold(
    oriented: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(9)
    if oriented:
        detections = Detections.from_oriented(
            _random_oriented(rng, 300), rng.uniform(size=300), np.zeros(300)
        )
    else:
        detections = Detections(_random_boxes(rng, 300), rng.uniform(size=300), rng.integers(0, 2, 300))
    expected = nms(detections, 0.3)
    monkeypatch.setattr(overlap, "_MAX_PAIRS", 10)
    np.testing.assert_array_equal(nms(detections, 0.3), expected)
    assert len(expected) < 300
