"""Tile layouts: where square windows lie on a raster, shared by every task that cuts one up.

Pure Python. A :class:`TileLayout` places square windows of ``tile_size`` pixels along the rows and
the columns of a ``width`` x ``height`` raster with one per-axis placement rule, and numbers them in
row-major order as :class:`TileWindow`. A task picks the rule that suits it instead of writing a
layout of its own:

* :func:`centred_starts`: a span centred on the axis, with margins on both sides
  (``TilePlan``: blended segmentation);
* :func:`flush_end_starts`: from 0, the last window moved flush with the end (``ChipPlan``:
  training chips);
* :func:`overhang_end_starts`: from 0, the last window may overhang the end (``TileGrid``: one
  class per tile);
* :func:`inside_starts`: flush-end where a window fits in the axis, else one window from 0
  (``DetectionPlan``: object detection, where padding would mirror objects).

Each rule takes ``(length, tile_size, step)`` (pixels along the axis, window side, distance
between neighbouring window starts) and returns the window starts along that axis, in order.

centred_starts
    pytorch-toolbelt's ``ImageSlicer(image_shape, tile_size, tile_step, image_margin=0)``:
    ``n = max(1, ceil((length - overlap) / step))`` windows (``overlap = tile_size - step``) span
    ``n * step + overlap`` pixels, and the surplus over the axis is split into a margin before (the
    smaller half) and after it. The first window may start before 0 and the last end past the axis;
    each margin is at most half a window (for ``step <= tile_size``). For blending, where every
    pixel must lie well inside some window.
flush_end_starts
    ``0, step, 2 * step, ...`` while the window fits; when the last stops short of the end, one
    more window is placed flush with it (closer to its neighbour than ``step``). Every window lies
    inside the axis and every pixel is covered when ``step <= tile_size``. Needs
    ``tile_size <= length``. For training chips, which must lie wholly inside the raster.
overhang_end_starts
    ``0, step, 2 * step, ...`` until a window reaches the end; the last may overhang it (its
    outside part is padded when read) and none starts at or past the end. A step larger than the
    window leaves gaps. For a regular grid of tiles anchored at the top-left corner, one result
    per tile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "Padding",
    "PlacementRule",
    "TileLayout",
    "TileWindow",
    "Window",
    "centred_starts",
    "flush_end_starts",
    "inside_starts",
    "overhang_end_starts",
]

Window = tuple[int, int, int, int]  # (row, col, rows, cols) in raster pixels
Padding = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
PlacementRule = Callable[[int, int, int], list[int]]  # (length, tile_size, step) -> window starts


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)  # exact for any int, unlike math.ceil of a float quotient


def centred_starts(length: int, tile_size: int, step: int) -> list[int]:
    """Window starts spread over the axis with equal margins, as toolbelt's ImageSlicer places them."""
    overlap = tile_size - step
    count = max(1, _ceil_div(length - overlap, step))
    margin_before = (step * count - (length - overlap)) // 2
    return [i * step - margin_before for i in range(count)]


def flush_end_starts(length: int, tile_size: int, step: int) -> list[int]:
    """Window starts 0, step, ... inside the axis, and one flush with the end if the last stops short."""
    starts = list(range(0, length - tile_size + 1, step))
    if starts[-1] + tile_size < length:
        starts.append(length - tile_size)
    return starts


def inside_starts(length: int, tile_size: int, step: int) -> list[int]:
    """``flush_end_starts`` when a window fits in the axis; else a single window from 0, which
    overhangs the end (an axis shorter than one tile)."""
    return flush_end_starts(length, tile_size, step) if tile_size <= length else [0]


def overhang_end_starts(length: int, tile_size: int, step: int) -> list[int]:
    """Window starts 0, step, ... until one reaches the end (it may overhang); none past the end."""
    count = min(1 + max(0, _ceil_div(length - tile_size, step)), _ceil_div(length, step))
    return [i * step for i in range(count)]


@dataclass(frozen=True)
class TileWindow:
    """A square tile whose top-left pixel is (row, col) in raster pixels (may lie outside the raster)."""

    index: int
    row: int
    col: int
    size: int

    def read_window(self, width: int, height: int) -> Window:
        """(row, col, rows, cols) of the part of the tile inside the raster (what a reader must read)."""
        top, left = max(self.row, 0), max(self.col, 0)
        bottom = min(self.row + self.size, height)
        right = min(self.col + self.size, width)
        return top, left, bottom - top, right - left

    def padding(self, width: int, height: int) -> Padding:
        """((top, bottom), (left, right)) pixels to pad around the read window to reach size x size."""
        top, left, rows, cols = self.read_window(width, height)
        return (
            (top - self.row, self.row + self.size - top - rows),
            (left - self.col, self.col + self.size - left - cols),
        )


class TileLayout:
    """Square windows of ``tile_size`` px every ``step`` px, placed on both axes by ``rule``.

    Windows are numbered row-major and made on demand (only the starts along each axis are held),
    so a huge raster costs little memory. Callers check their own parameters (with messages in
    their own terms) before building a layout.
    """

    def __init__(self, width: int, height: int, tile_size: int, step: int, rule: PlacementRule) -> None:
        self.width = width
        self.height = height
        self.tile_size = tile_size
        self.step = step
        self.tile_row_starts = tuple(rule(height, tile_size, step))
        self.tile_col_starts = tuple(rule(width, tile_size, step))

    @property
    def n_tile_rows(self) -> int:
        return len(self.tile_row_starts)

    @property
    def n_tile_cols(self) -> int:
        return len(self.tile_col_starts)

    def __len__(self) -> int:
        return self.n_tile_rows * self.n_tile_cols

    def window(self, index: int) -> TileWindow:
        """The window numbered ``index`` (row-major)."""
        tile_row, tile_col = divmod(index, self.n_tile_cols)
        row, col = self.tile_row_starts[tile_row], self.tile_col_starts[tile_col]
        return TileWindow(index, row, col, self.tile_size)

    def __iter__(self) -> Iterator[TileWindow]:
        return (self.window(index) for index in range(len(self)))
