"""Detected objects as arrays: axis-aligned boxes, oriented boxes and instance masks, with their
scores and classes.

Pure numpy. Coordinates are pixels of one grid (a tile's, or the processing grid's): ``x`` is the
column, ``y`` the row, and pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``, so a box
``(x1, y1, x2, y2)`` around pixels 10..19 of a row spans ``x1 = 10, x2 = 20``. Oriented boxes follow
Ultralytics' OBB convention: ``(cx, cy, w, h, angle)`` with ``angle`` in radians, turning the box's
``w`` side from the x axis towards the y axis (clockwise as the image is seen, since y runs down).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Detections", "InstanceMask", "oriented_corners"]


@dataclass(frozen=True)
class InstanceMask:
    """An object's mask cut to its own rows and columns: ``mask[r, c]`` is pixel
    ``(row0 + r, col0 + c)`` of the grid."""

    row0: int
    col0: int
    mask: np.ndarray  # bool (rows, cols)

    def shifted(self, rows: int, cols: int) -> InstanceMask:
        return InstanceMask(self.row0 + rows, self.col0 + cols, self.mask)

    @property
    def pixel_count(self) -> int:
        return int(np.count_nonzero(self.mask))


def oriented_corners(oriented: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners (x, y) of (N, 5) oriented boxes ``cx, cy, w, h, angle``, in order around
    the box."""
    oriented = np.asarray(oriented, dtype=np.float64).reshape(-1, 5)
    cx, cy, w, h, angle = oriented.T
    cos, sin = np.cos(angle), np.sin(angle)
    # Half-side vectors along the box's w and h sides.
    wx, wy = cos * w / 2, sin * w / 2
    hx, hy = -sin * h / 2, cos * h / 2
    corners = np.stack(
        [
            np.stack([cx - wx - hx, cy - wy - hy], axis=-1),
            np.stack([cx + wx - hx, cy + wy - hy], axis=-1),
            np.stack([cx + wx + hx, cy + wy + hy], axis=-1),
            np.stack([cx - wx + hx, cy - wy + hy], axis=-1),
        ],
        axis=1,
    )
    return corners


@dataclass
class Detections:
    """N objects in one pixel grid (see the module docstring for coordinates).

    ``boxes`` is always set: for oriented boxes it is their axis-aligned enclosing box, for instance
    masks the model's box. ``partial`` marks objects cut by an inner tile edge (set when tiles are
    merged; False otherwise).
    """

    boxes: np.ndarray  # (N, 4) float64: x1, y1, x2, y2
    scores: np.ndarray  # (N,) float64
    class_ids: np.ndarray  # (N,) int64
    oriented: np.ndarray | None = None  # (N, 5) float64: cx, cy, w, h, angle (radians)
    masks: list[InstanceMask] | None = None
    partial: np.ndarray = field(default=None)  # type: ignore[assignment]  # (N,) bool

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        count = len(self.boxes)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(count)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(count)
        if self.oriented is not None:
            self.oriented = np.asarray(self.oriented, dtype=np.float64).reshape(count, 5)
        if self.masks is not None and len(self.masks) != count:
            raise ValueError(f"{len(self.masks)} masks for {count} objects.")
        if self.partial is None:
            self.partial = np.zeros(count, dtype=bool)
        else:
            self.partial = np.asarray(self.partial, dtype=bool).reshape(count)

    @classmethod
    def empty(cls, oriented: bool = False, masks: bool = False) -> Detections:
        return cls(
            np.zeros((0, 4)),
            np.zeros(0),
            np.zeros(0, dtype=np.int64),
            np.zeros((0, 5)) if oriented else None,
            [] if masks else None,
        )

    @classmethod
    def from_oriented(cls, oriented: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> Detections:
        """Oriented boxes, with their enclosing boxes computed."""
        oriented = np.asarray(oriented, dtype=np.float64).reshape(-1, 5)
        corners = oriented_corners(oriented)
        boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
        return cls(boxes, scores, class_ids, oriented)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def is_oriented(self) -> bool:
        return self.oriented is not None

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    def select(self, index: np.ndarray | Sequence[int] | slice) -> Detections:
        """The objects at ``index`` (integer indices, a boolean mask or a slice), in that order."""
        if isinstance(index, slice):
            picks = np.arange(len(self))[index]
        else:
            picks = np.asarray(index)
            if picks.dtype == bool:
                picks = np.flatnonzero(picks)
            picks = picks.astype(np.int64).reshape(-1)
        return Detections(
            self.boxes[picks],
            self.scores[picks],
            self.class_ids[picks],
            None if self.oriented is None else self.oriented[picks],
            None if self.masks is None else [self.masks[i] for i in picks],
            self.partial[picks],
        )

    def shifted(self, dx: int, dy: int) -> Detections:
        """The same objects in a grid whose origin lies (dx, dy) pixels before this one's (a tile's
        objects moved into raster pixels by the tile's column and row)."""
        offset = np.array([dx, dy, dx, dy], dtype=np.float64)
        oriented = None
        if self.oriented is not None:
            oriented = self.oriented.copy()
            oriented[:, 0] += dx
            oriented[:, 1] += dy
        masks = None if self.masks is None else [m.shifted(dy, dx) for m in self.masks]
        return Detections(
            self.boxes + offset,
            self.scores.copy(),
            self.class_ids.copy(),
            oriented,
            masks,
            self.partial.copy(),
        )

    def corners(self) -> np.ndarray:
        """(N, 4, 2) corners (x, y) of each box: the oriented box when there is one."""
        if self.oriented is not None:
            return oriented_corners(self.oriented)
        x1, y1, x2, y2 = self.boxes.T
        return np.stack(
            [np.stack(pair, axis=-1) for pair in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))], axis=1
        )

    def areas(self) -> np.ndarray:
        """(N,) areas in square pixels: mask pixels for instance masks, else the (oriented) box's."""
        if self.masks is not None:
            return np.array([m.pixel_count for m in self.masks], dtype=np.float64)
        if self.oriented is not None:
            return self.oriented[:, 2] * self.oriented[:, 3]
        return np.clip(self.boxes[:, 2] - self.boxes[:, 0], 0, None) * np.clip(
            self.boxes[:, 3] - self.boxes[:, 1], 0, None
        )

    @staticmethod
    def concatenate(parts: Sequence[Detections]) -> Detections:
        """One set of every part's objects, in order; the parts must be of one kind."""
        parts = list(parts)
        if not parts:
            return Detections.empty()
        oriented = {p.is_oriented for p in parts}
        masked = {p.has_masks for p in parts}
        if len(oriented) > 1 or len(masked) > 1:
            raise ValueError("Detections of different kinds (oriented, masks) cannot be joined.")
        return Detections(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.class_ids for p in parts]),
            np.concatenate([p.oriented for p in parts]) if parts[0].is_oriented else None,
            [m for p in parts for m in p.masks] if parts[0].has_masks else None,
            np.concatenate([p.partial for p in parts]),
        )
