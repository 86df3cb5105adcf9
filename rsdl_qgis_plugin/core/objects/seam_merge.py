"""Streaming merge of per-tile detections into one set of objects in raster pixels.

Pure numpy. Tiles (:class:`~..tiling.layouts.TileWindow`) arrive in row-major order of a layout
whose tile row starts never decrease; each tile's objects are moved into raster pixels and cut to
the tile and the raster, then merged by one greedy rule:

* Objects are taken in priority order: whole objects before ``partial`` ones (cut by an inner tile
  edge), then by score, highest first, then in order of arrival.
* An object is dropped when a kept object of higher priority and of the same class (of any class
  when ``class_agnostic``) overlaps it with IoU greater than ``iou_threshold`` or, for a partial
  object, covers at least ``contained_fraction`` of its area or holds its centre (a detector may
  place a cut object's box off its visible part, e.g. an oriented box of the whole object's size
  around the visible part's centre). Only a positive intersection area counts as an overlap.

So the same object seen whole by two overlapping tiles is kept once, and the pieces of an object
cut by a tile edge never survive beside the whole object from the tile that holds it.

Overlaps are measured on each object's geometry cut to its tile window and the raster: its box, or
for oriented boxes the oriented rectangle clipped to that window (the returned objects keep their
whole oriented rectangle). Every object therefore lies inside its tile, and an object whose bottom
``y2`` is at or above the start row of every later tile can meet no later object: it is final.
:meth:`SeamMerger.release` decides the final objects whose decision no undecided object can
change, which gives exactly the result of the greedy rule applied to all tiles at once while only
about two tile rows of objects are held.
"""

from __future__ import annotations

import math

import numpy as np

from ..tiling.layouts import TileWindow
from .detections import Detections, InstanceMask
from .overlap import (
    box_intersection_areas,
    clip_convex_polygons,
    paired_box_intersection_areas,
    paired_convex_intersection_areas,
    polygon_areas,
)

__all__ = ["SeamMerger"]

_POLYGON_VERTICES = 8  # a rectangle cut by a rectangle has at most 8 corners
_ROW_BLOCK = 64  # undecided objects paired at once: larger blocks pair far more objects they never meet


class SeamMerger:
    """Merges the detections of tiles of a ``width`` x ``height`` raster as they arrive.

    Call :meth:`add` for each tile, :meth:`release` whenever no later tile starts above a given
    row (after each tile row, or each batch), and :meth:`finish` after the last tile. Each returns
    only objects it has not returned before; together they are the merged objects, in raster pixels,
    with ``partial`` set for objects cut by an inner tile edge.
    """

    def __init__(
        self,
        width: int,
        height: int,
        iou_threshold: float,
        class_agnostic: bool = False,
        edge_margin: float = 1.0,
        contained_fraction: float = 0.5,
    ) -> None:
        self.width = width
        self.height = height
        self.iou_threshold = iou_threshold
        self.class_agnostic = class_agnostic
        self.edge_margin = edge_margin
        self.contained_fraction = contained_fraction
        self._sequence = 0
        self._kind: tuple[bool, bool] | None = None  # (oriented, masks) of the first non-empty tile
        # The objects held: undecided ones, and kept ones an undecided object may still need.
        self._objects: Detections | None = None
        self._arrival = np.zeros(0, dtype=np.int64)
        self._geometry = np.zeros((0, 4))  # clipped boxes, or (n, 8, 2) clipped oriented polygons
        self._areas = np.zeros(0)
        self._decided = np.zeros(0, dtype=bool)  # decided objects still held are all kept

    @property
    def pending(self) -> int:
        """Objects held (undecided, or kept and still needed to decide others)."""
        return 0 if self._objects is None else len(self._objects)

    # -- adding tiles --------------------------------------------------------------------------

    def add(self, tile: TileWindow, detections: Detections) -> None:
        """Take one tile's objects, given in the tile's pixels."""
        if not len(detections):
            return
        kind = (detections.is_oriented, detections.has_masks)
        if self._kind is None:
            self._kind = kind
        elif kind != self._kind:
            raise ValueError("Every tile's detections must be of one kind (boxes, oriented boxes, masks).")
        objects = detections.shifted(tile.col, tile.row)
        left, top = max(tile.col, 0), max(tile.row, 0)
        right, bottom = min(tile.col + tile.size, self.width), min(tile.row + tile.size, self.height)

        boxes = objects.boxes
        centres = objects.oriented[:, :2] if objects.is_oriented else (boxes[:, :2] + boxes[:, 2:]) / 2
        # Reflection padding mirrors objects beyond the raster edge; their centres lie outside it.
        keep = (
            (centres[:, 0] >= 0)
            & (centres[:, 0] < self.width)
            & (centres[:, 1] >= 0)
            & (centres[:, 1] < self.height)
        )
        clipped = np.column_stack(
            [
                np.clip(boxes[:, 0], left, right),
                np.clip(boxes[:, 1], top, bottom),
                np.clip(boxes[:, 2], left, right),
                np.clip(boxes[:, 3], top, bottom),
            ]
        )
        keep &= (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
        if objects.is_oriented:
            window = np.array([[left, top], [right, top], [right, bottom], [left, bottom]], dtype=np.float64)
            geometry = clip_convex_polygons(
                objects.corners(), np.broadcast_to(window, (len(objects), 4, 2)), _POLYGON_VERTICES
            )
            areas = polygon_areas(geometry)
        else:
            geometry = clipped
            areas = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        keep &= areas > 0
        picks = np.flatnonzero(keep)
        if not len(picks):
            return

        objects = objects.select(picks)
        objects.boxes = clipped[picks]
        geometry, areas = geometry[picks], areas[picks]
        if objects.masks is not None:
            objects.masks = [_crop_mask(m, top, left, bottom, right) for m in objects.masks]
        margin = self.edge_margin
        x1, y1, x2, y2 = objects.boxes.T
        objects.partial = (
            objects.partial
            | ((tile.col > 0) & (x1 <= tile.col + margin))
            | ((tile.col + tile.size < self.width) & (x2 >= tile.col + tile.size - margin))
            | ((tile.row > 0) & (y1 <= tile.row + margin))
            | ((tile.row + tile.size < self.height) & (y2 >= tile.row + tile.size - margin))
        )

        centres = centres[picks]
        arrival = self._sequence + np.arange(len(objects), dtype=np.int64)
        self._sequence += len(objects)
        if self._objects is None or not len(self._objects):
            self._objects, self._arrival, self._geometry = objects, arrival, geometry
            self._areas, self._decided = areas, np.zeros(len(objects), dtype=bool)
            self._centres = centres
            return
        self._centres = np.concatenate([self._centres, centres])
        self._objects = Detections.concatenate([self._objects, objects])
        self._arrival = np.concatenate([self._arrival, arrival])
        self._geometry = np.concatenate([self._geometry, geometry])
        self._areas = np.concatenate([self._areas, areas])
        self._decided = np.concatenate([self._decided, np.zeros(len(objects), dtype=bool)])

    # -- deciding ------------------------------------------------------------------------------

    def release(self, next_row: int) -> Detections:
        """Decide every object whose decision no tile starting at row ``next_row`` or further down
        can change, and return the newly kept ones. No tile added later may start above ``next_row``."""
        return self._decide(float(next_row))

    def finish(self) -> Detections:
        """Decide every object still held and return the newly kept ones."""
        return self._decide(math.inf)

    def _empty(self) -> Detections:
        oriented, masks = self._kind or (False, False)
        return Detections.empty(oriented=oriented, masks=masks)

    def _decide(self, next_row: float) -> Detections:
        objects = self._objects
        if objects is None or not len(objects):
            return self._empty()
        count = len(objects)
        # Rank 0 is the highest priority: whole before partial, then score, then arrival.
        order = np.lexsort((self._arrival, -objects.scores, objects.partial))
        rank = np.empty(count, dtype=np.int64)
        rank[order] = np.arange(count)

        undecided = ~self._decided
        final = objects.boxes[:, 3] <= next_row
        # (i, j): j has higher priority than the undecided i, may suppress it, and overlaps it.
        i, j, intersection = self._overlapping_pairs(np.flatnonzero(undecided), rank)

        # An undecided object waits while it is not final or a higher-priority object it overlaps waits.
        waiting = undecided & ~final
        while True:
            more = waiting | (np.bincount(i[waiting[j]], minlength=count) > 0)
            if (more == waiting).all():
                break
            waiting = more
        ready = undecided & ~waiting

        area_i = self._areas[i]
        iou = intersection / (area_i + self._areas[j] - intersection)  # areas are positive
        suppresses = iou > self.iou_threshold
        suppresses |= objects.partial[i] & (
            (intersection / area_i >= self.contained_fraction) | self._holds_centre(j, i)
        )
        sup_i, sup_j = i[suppresses], j[suppresses]
        by_object = np.argsort(sup_i, kind="stable")
        sup_i, sup_j = sup_i[by_object], sup_j[by_object]
        bounds = np.searchsorted(sup_i, np.arange(count + 1))

        kept = self._decided.copy()
        ready_in_order = order[ready[order]]
        for index in ready_in_order:
            suppressors = sup_j[bounds[index] : bounds[index + 1]]
            if not kept[suppressors].any():
                kept[index] = True
        newly_kept = ready_in_order[kept[ready_in_order]]

        # Hold the undecided objects, and the kept ones that a waiting object overlaps (later
        # objects lie at or below next_row and cannot meet decided ones).
        needed = np.zeros(count, dtype=bool)
        needed[j[waiting[i]]] = True
        hold = waiting | (kept & needed)
        released = objects.select(newly_kept)
        self._decided = kept & hold
        picks = np.flatnonzero(hold)
        self._objects = objects.select(picks)
        self._arrival = self._arrival[picks]
        self._geometry = self._geometry[picks]
        self._areas = self._areas[picks]
        self._centres = self._centres[picks]
        self._decided = self._decided[picks]
        return released

    def _holds_centre(self, holders: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """Whether the geometry of each ``holders[k]`` holds the centre of ``objects[k]``."""
        centres = self._centres[objects]
        if self._geometry.ndim == 2:
            boxes = self._geometry[holders]
            return (
                (boxes[:, 0] <= centres[:, 0])
                & (centres[:, 0] <= boxes[:, 2])
                & (boxes[:, 1] <= centres[:, 1])
                & (centres[:, 1] <= boxes[:, 3])
            )
        # Counter-clockwise convex polygons (padded by repeated vertices): inside is to the left of
        # (or on) every edge.
        start = self._geometry[holders]
        edge = np.roll(start, -1, axis=1) - start
        to_centre = centres[:, None, :] - start
        cross = edge[..., 0] * to_centre[..., 1] - edge[..., 1] * to_centre[..., 0]
        return (cross >= 0).all(axis=1)

    def _overlapping_pairs(
        self, rows: np.ndarray, rank: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs (i in ``rows``, j) of objects of one class (any when class-agnostic) where j has a
        higher priority and their geometries meet with a positive area, with that area."""
        boxes = self._objects.boxes  # clipped: they enclose the clipped geometry
        classes = self._objects.class_ids
        by_x = np.argsort(boxes[:, 0], kind="stable")
        sorted_x1 = boxes[by_x, 0]
        rows = rows[np.argsort(boxes[rows, 0], kind="stable")]
        found_i, found_j = [], []
        for start in range(0, len(rows), _ROW_BLOCK):
            block = rows[start : start + _ROW_BLOCK]
            # Only objects starting left of the block's right end and ending right of its left end.
            reach = np.searchsorted(sorted_x1, boxes[block, 2].max(), side="left")
            candidates = by_x[:reach]
            candidates = candidates[boxes[candidates, 2] > boxes[block, 0].min()]
            meets = box_intersection_areas(boxes[block], boxes[candidates]) > 0
            meets &= rank[candidates][None, :] < rank[block][:, None]
            if not self.class_agnostic:
                meets &= classes[candidates][None, :] == classes[block][:, None]
            a, b = np.nonzero(meets)
            found_i.append(block[a])
            found_j.append(candidates[b])
        i = np.concatenate(found_i) if found_i else np.zeros(0, dtype=np.int64)
        j = np.concatenate(found_j) if found_j else np.zeros(0, dtype=np.int64)
        if self._geometry.ndim == 3:
            intersection = paired_convex_intersection_areas(self._geometry[i], self._geometry[j])
        else:
            intersection = paired_box_intersection_areas(boxes[i], boxes[j])
        positive = intersection > 0
        return i[positive], j[positive], intersection[positive]


def _crop_mask(mask: InstanceMask, top: int, left: int, bottom: int, right: int) -> InstanceMask:
    """The mask without its pixels outside rows [top, bottom) and columns [left, right)."""
    rows, cols = mask.mask.shape
    r0 = min(max(top - mask.row0, 0), rows)
    c0 = min(max(left - mask.col0, 0), cols)
    r1 = max(min(bottom - mask.row0, rows), r0)
    c1 = max(min(right - mask.col0, cols), c0)
    if (r0, c0, r1, c1) == (0, 0, rows, cols):
        return mask
    return InstanceMask(mask.row0 + r0, mask.col0 + c0, mask.mask[r0:r1, c0:c1])
