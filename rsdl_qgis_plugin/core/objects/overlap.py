"""Overlap of objects: IoU of axis-aligned and oriented boxes, intersection over an object's own
area, and greedy non-maximum suppression.

Pure numpy. Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates (area
``(x2 - x1) * (y2 - y1)``, no ``+ 1``), as torchvision's ``box_iou``. Oriented boxes are given by
their four corners ``(N, 4, 2)`` in order around the box (either direction); their intersection is
exact: Sutherland-Hodgman clipping of one convex quadrilateral by the other, then the shoelace
formula. A box of zero area overlaps nothing (IoU 0, never NaN).
"""

from __future__ import annotations

import numpy as np

from .detections import Detections

__all__ = [
    "box_intersection_areas",
    "box_iou",
    "clip_convex_polygons",
    "convex_intersection_areas",
    "convex_iou",
    "intersection_over_area",
    "nms",
    "paired_box_intersection_areas",
    "paired_convex_intersection_areas",
    "pairwise_intersection_areas",
    "pairwise_iou",
    "polygon_areas",
]

# Pairs clipped at once: bounds the temporary arrays (16 candidate vertices of 2 floats per pair).
_PAIR_BLOCK = 65536


def box_intersection_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection areas of (N, 4) and (M, 4) boxes ``x1, y1, x2, y2``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    return np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)


def _box_areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def _iou_from(intersection: np.ndarray, area_a: np.ndarray, area_b: np.ndarray) -> np.ndarray:
    union = area_a[:, None] + area_b[None, :] - intersection
    iou = np.zeros_like(intersection)
    np.divide(intersection, union, out=iou, where=union > 0)
    return iou


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, 4) and (M, 4) axis-aligned boxes ``x1, y1, x2, y2``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    return _iou_from(box_intersection_areas(a, b), _box_areas(a), _box_areas(b))


def polygon_areas(corners: np.ndarray) -> np.ndarray:
    """(N,) unsigned shoelace areas of (N, K, 2) polygons."""
    corners = np.asarray(corners, dtype=np.float64)
    x, y = corners[..., 0], corners[..., 1]
    signed = 0.5 * np.sum(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, axis=-1)
    return np.abs(signed)


def _counter_clockwise(corners: np.ndarray) -> np.ndarray:
    """The polygons with their vertex order reversed where the signed area is negative, so that
    "inside" is to the left of every edge."""
    x, y = corners[..., 0], corners[..., 1]
    signed = np.sum(x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y, axis=-1)
    return np.where((signed < 0)[:, None, None], corners[:, ::-1], corners)


def _left_of(start: np.ndarray, direction: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Signed distance (times the edge length) of points to the left of an edge: >= 0 is inside."""
    return direction[..., 0] * (points[..., 1] - start[..., 1]) - direction[..., 1] * (
        points[..., 0] - start[..., 0]
    )


def _clip_pairs(subject: np.ndarray, clip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sutherland-Hodgman: each convex ``subject[i]`` clipped by the convex ``clip[i]`` (both
    counter-clockwise, (P, K, 2)), as (P, V, 2) vertices of which the first ``count[i]`` are used."""
    pairs = len(subject)
    poly = subject
    count = np.full(pairs, subject.shape[1], dtype=np.int64)
    rows = np.arange(pairs)[:, None]
    for edge in range(clip.shape[1]):
        start = clip[:, edge][:, None, :]  # (P, 1, 2)
        direction = clip[:, (edge + 1) % clip.shape[1]][:, None, :] - start
        width = poly.shape[1]
        index = np.arange(width)[None, :]
        valid = index < count[:, None]
        following = poly[rows, (index + 1) % np.maximum(count, 1)[:, None]]
        d_cur, d_next = _left_of(start, direction, poly), _left_of(start, direction, following)
        inside_cur, inside_next = d_cur >= 0, d_next >= 0
        crossing = valid & (inside_cur != inside_next)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(crossing, d_cur / np.where(crossing, d_cur - d_next, 1.0), 0.0)
        crossing_point = poly + (following - poly) * t[..., None]
        # Each input vertex gives up to two output vertices: itself (if inside), then the crossing.
        candidates = np.stack([poly, crossing_point], axis=2).reshape(pairs, 2 * width, 2)
        keep = np.stack([valid & inside_cur, crossing], axis=2).reshape(pairs, 2 * width)
        count = keep.sum(axis=1)
        new_width = max(int(count.max(initial=0)), 1)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :new_width]
        poly = candidates[rows, order]
    return poly, count


def _counted_areas(poly: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Shoelace areas of polygons given by their first ``count`` vertices."""
    rows = np.arange(len(poly))[:, None]
    index = np.arange(poly.shape[1])[None, :]
    valid = index < count[:, None]
    following = poly[rows, (index + 1) % np.maximum(count, 1)[:, None]]
    cross = poly[..., 0] * following[..., 1] - following[..., 0] * poly[..., 1]
    return 0.5 * np.abs(np.sum(np.where(valid, cross, 0.0), axis=1))


def paired_convex_intersection_areas(a_corners: np.ndarray, b_corners: np.ndarray) -> np.ndarray:
    """(P,) intersection areas of the convex polygons ``a_corners[i]`` and ``b_corners[i]`` (P, K, 2)."""
    a = _counter_clockwise(np.asarray(a_corners, dtype=np.float64))
    b = _counter_clockwise(np.asarray(b_corners, dtype=np.float64))
    degenerate = (polygon_areas(a) <= 0) | (polygon_areas(b) <= 0)
    out = np.zeros(len(a))
    for start in range(0, len(a), _PAIR_BLOCK):
        stop = start + _PAIR_BLOCK
        out[start:stop] = _counted_areas(*_clip_pairs(a[start:stop], b[start:stop]))
    # A zero-area clip polygon has every point "on" its edges, i.e. inside; it overlaps nothing.
    out[degenerate] = 0.0
    return out


def clip_convex_polygons(subject: np.ndarray, clip: np.ndarray, vertices: int = 8) -> np.ndarray:
    """Each convex polygon ``subject[i]`` cut to the convex polygon ``clip[i]`` (both (P, K, 2), either
    vertex order), as (P, vertices, 2) counter-clockwise polygons padded by repeating their last
    vertex (all zeros where nothing is left). Two quadrilaterals meet in at most 8 vertices."""
    a = _counter_clockwise(np.asarray(subject, dtype=np.float64))
    b = _counter_clockwise(np.asarray(clip, dtype=np.float64))
    poly, count = _clip_pairs(a, b)
    if poly.shape[1] > vertices and (count > vertices).any():
        raise ValueError(f"A clipped polygon has {int(count.max())} vertices, more than {vertices}.")
    index = np.minimum(np.arange(vertices)[None, :], np.maximum(count, 1)[:, None] - 1)
    index = np.minimum(index, poly.shape[1] - 1)
    out = poly[np.arange(len(poly))[:, None], index]
    out[count == 0] = 0.0
    return out


def convex_intersection_areas(a_corners: np.ndarray, b_corners: np.ndarray) -> np.ndarray:
    """(N, M) intersection areas of (N, K, 2) and (M, K, 2) convex polygons; only pairs whose
    enclosing boxes meet are clipped."""
    a = np.asarray(a_corners, dtype=np.float64)
    b = np.asarray(b_corners, dtype=np.float64)
    out = np.zeros((len(a), len(b)))
    if not len(a) or not len(b):
        return out
    a_boxes = np.concatenate([a.min(axis=1), a.max(axis=1)], axis=1)
    b_boxes = np.concatenate([b.min(axis=1), b.max(axis=1)], axis=1)
    rows, cols = np.nonzero(box_intersection_areas(a_boxes, b_boxes) > 0)
    if len(rows):
        out[rows, cols] = paired_convex_intersection_areas(a[rows], b[cols])
    return out


def convex_iou(a_corners: np.ndarray, b_corners: np.ndarray) -> np.ndarray:
    """(N, M) IoU of (N, 4, 2) and (M, 4, 2) convex quadrilaterals (oriented boxes' corners)."""
    a = np.asarray(a_corners, dtype=np.float64)
    b = np.asarray(b_corners, dtype=np.float64)
    return _iou_from(convex_intersection_areas(a, b), polygon_areas(a), polygon_areas(b))


def _both_oriented(a: Detections, b: Detections) -> bool:
    return a.is_oriented and b.is_oriented


def pairwise_intersection_areas(a: Detections, b: Detections) -> np.ndarray:
    """(N, M) intersection areas: of the oriented boxes when both sets are oriented, else of the
    axis-aligned boxes."""
    if _both_oriented(a, b):
        return convex_intersection_areas(a.corners(), b.corners())
    return box_intersection_areas(a.boxes, b.boxes)


def _geometry_areas(detections: Detections, oriented: bool) -> np.ndarray:
    return polygon_areas(detections.corners()) if oriented else _box_areas(detections.boxes)


def pairwise_iou(a: Detections, b: Detections) -> np.ndarray:
    """(N, M) IoU of two sets of objects: oriented boxes when both are oriented, else their boxes."""
    oriented = _both_oriented(a, b)
    return _iou_from(
        pairwise_intersection_areas(a, b), _geometry_areas(a, oriented), _geometry_areas(b, oriented)
    )


def intersection_over_area(a: Detections, b: Detections) -> np.ndarray:
    """(N, M) intersection of each pair over the area of the row's object ``a[i]`` (how much of
    ``a[i]`` lies inside ``b[j]``); 0 for an object of zero area."""
    oriented = _both_oriented(a, b)
    intersection = pairwise_intersection_areas(a, b)
    area = _geometry_areas(a, oriented)[:, None]
    out = np.zeros_like(intersection)
    np.divide(intersection, area, out=out, where=area > 0)
    return out


def nms(detections: Detections, iou_threshold: float, class_agnostic: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept objects, highest score first (ties: lower
    index first). An object is suppressed when its IoU with a kept object of the same class (of any
    class when ``class_agnostic``) is greater than ``iou_threshold``; oriented boxes overlap as
    oriented boxes."""
    count = len(detections)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-detections.scores, kind="stable")
    oriented = detections.is_oriented
    corners = detections.corners()[order] if oriented else None
    # Enclosing boxes find the candidate pairs; for oriented boxes they come from the corners.
    boxes = (
        np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        if oriented
        else detections.boxes[order]
    )
    classes = np.zeros(count, dtype=np.int64) if class_agnostic else detections.class_ids[order]
    areas = polygon_areas(corners) if oriented else _box_areas(boxes)
    pairs = _candidate_pairs(boxes, classes)
    if pairs is None:  # too many overlapping pairs to hold: suppress kept box by kept box
        return order[_nms_by_kept_box(boxes, corners, classes, areas, iou_threshold)]
    later, earlier = pairs
    if oriented:
        intersection = paired_convex_intersection_areas(corners[later], corners[earlier])
    else:
        intersection = paired_box_intersection_areas(boxes[later], boxes[earlier])
    union = areas[later] + areas[earlier] - intersection
    iou = np.zeros_like(intersection)
    np.divide(intersection, union, out=iou, where=union > 0)
    suppressing = iou > iou_threshold
    later, earlier = later[suppressing], earlier[suppressing]
    by_later = np.argsort(later, kind="stable")
    later, earlier = later[by_later], earlier[by_later]
    bounds = np.searchsorted(later, np.arange(count + 1))
    kept = np.zeros(count, dtype=bool)
    for position in range(count):
        kept[position] = not kept[earlier[bounds[position] : bounds[position + 1]]].any()
    return order[kept]


# Candidate pairs held at once by nms before it falls back to suppressing kept box by kept box.
_MAX_PAIRS = 2_000_000
_SWEEP_BLOCK = 256  # boxes compared at once in nms's sweep


def _candidate_pairs(boxes: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(later, earlier) positions of every pair of boxes of one class whose boxes meet, ``earlier <
    later``; None when there are more than ``_MAX_PAIRS``.

    A sweep along x: each block of boxes (in x order) is compared only with the boxes whose x
    extent reaches it, so a tile's thousands of scattered candidates cost about N log N, not N^2."""
    by_x = np.argsort(boxes[:, 0], kind="stable")
    sorted_x1 = boxes[by_x, 0]
    found_later, found_earlier, total = [], [], 0
    for start in range(0, len(boxes), _SWEEP_BLOCK):
        rows = by_x[start : start + _SWEEP_BLOCK]
        reach = np.searchsorted(sorted_x1, boxes[rows, 2].max(), side="left")
        candidates = by_x[:reach]
        candidates = candidates[boxes[candidates, 2] > boxes[rows, 0].min()]
        meets = box_intersection_areas(boxes[rows], boxes[candidates]) > 0
        meets &= candidates[None, :] < rows[:, None]
        meets &= classes[rows][:, None] == classes[candidates][None, :]
        later, earlier = np.nonzero(meets)
        total += len(later)
        if total > _MAX_PAIRS:
            return None
        found_later.append(rows[later])
        found_earlier.append(candidates[earlier])
    if not found_later:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(found_later), np.concatenate(found_earlier)


def paired_box_intersection_areas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P,) intersection areas of the boxes ``a[k]`` and ``b[k]`` (both (P, 4))."""
    width = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    height = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    return np.clip(width, 0, None) * np.clip(height, 0, None)


def _nms_by_kept_box(
    boxes: np.ndarray, corners: np.ndarray | None, classes: np.ndarray, areas: np.ndarray, threshold: float
) -> np.ndarray:
    """Kept positions of boxes sorted by priority, comparing each kept box with the rest at once."""
    count = len(boxes)
    alive = np.ones(count, dtype=bool)
    kept: list[int] = []
    for position in range(count):
        if not alive[position]:
            continue
        kept.append(position)
        rest = position + 1 + np.flatnonzero(alive[position + 1 :])
        rest = rest[classes[rest] == classes[position]]
        if not len(rest):
            continue
        if corners is not None:
            intersection = convex_intersection_areas(corners[position : position + 1], corners[rest])[0]
        else:
            intersection = box_intersection_areas(boxes[position : position + 1], boxes[rest])[0]
        union = areas[position] + areas[rest] - intersection
        iou = np.zeros_like(intersection)
        np.divide(intersection, union, out=iou, where=union > 0)
        alive[rest[iou > threshold]] = False
    return np.asarray(kept, dtype=np.int64)
