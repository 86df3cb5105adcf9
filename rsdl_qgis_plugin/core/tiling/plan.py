"""The tile plan of the tiled-inference engine: where each overlapping tile lies (DESIGN.md section 5).

Pure numpy. The placement rules and the window type are in ``layouts.py`` (shared with the chip
plan and the classification tile grid); the accumulator that blends the tiles' predictions is
``blending.py``.

Tile plan
    Square tiles of ``tile_size`` pixels every ``step = tile_size - overlap`` pixels, placed exactly
    as pytorch-toolbelt's ``ImageSlicer(image_shape, tile_size, tile_step, image_margin=0)`` does
    (the ``centred_starts`` rule of ``layouts.py``): along each axis
    ``n = max(1, ceil((length - overlap) / step))`` tiles span ``n * step + overlap`` pixels, and
    the surplus over the raster is split into a margin before (the smaller half) and after it. Tile
    positions are in raster pixels, so the first tile may start at a negative row or column and
    the last may end past the raster. Each margin is at most half a tile, so every tile overlaps
    the raster by at least half its size and reflecting
    its read window (:func:`pad_tile`) gives the same pixels as toolbelt's reflection of the whole
    raster. One exception: with no overlap, an even tile size and a surplus of ``tile_size - 1``,
    the far margin is exactly half a tile and the outermost padding row or column (half a tile
    away from the raster) reflects twice instead of reaching one pixel beyond the read window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import RsdlError
from .layouts import Padding, TileLayout, TileWindow, Window, centred_starts, inside_starts
from .row_blocks import check_row_range

__all__ = [
    "DetectionPlan",
    "TilePlan",
    "check_tile_parameters",
    "pad_tile",
]


def pad_tile(data: np.ndarray, padding: Padding) -> np.ndarray:
    """Pad a (C, h, w) array to the tile size by reflection (numpy 'reflect' = OpenCV BORDER_REFLECT_101).

    numpy repeats the reflection when the pad is wider than the data, as OpenCV does; an axis of a
    single pixel cannot be reflected and is extended with its edge value instead (OpenCV does the same).
    """
    if data.ndim != 3:
        raise ValueError(f"Expected a (channels, rows, cols) array, got shape {data.shape}.")
    if not any(before or after for before, after in padding):
        return data
    padded = data
    for axis, (before, after) in zip((1, 2), padding):
        if before or after:
            pad_width = [(0, 0)] * 3
            pad_width[axis] = (before, after)
            mode = "reflect" if padded.shape[axis] > 1 else "edge"
            padded = np.pad(padded, pad_width, mode=mode)
    return padded


def check_tile_parameters(tile_size: int, overlap: int) -> None:
    if tile_size < 1:
        raise RsdlError(f"The tile size must be at least 1 pixel, got {tile_size}.")
    if overlap < 0:
        raise RsdlError(f"The overlap must be 0 or a positive number of pixels, got {overlap}.")
    if overlap >= tile_size:
        raise RsdlError(
            f"The overlap ({overlap} px) must be smaller than the tile size ({tile_size} px); "
            "lower the overlap or raise the tile size."
        )


def _axis_centre_spans(positions: Sequence[int], tile_size: int, length: int) -> list[tuple[int, int]]:
    """[start, stop) owned by each tile along one axis: neighbours split their overlap in the middle."""
    cuts = [(before + tile_size + after) // 2 for before, after in zip(positions, positions[1:])]
    starts = [0, *cuts]
    stops = [*cuts, length]
    return list(zip(starts, stops))


class TilePlan(TileLayout):
    """Every tile of a raster of ``width`` x ``height`` pixels, in row-major order."""

    def __init__(self, width: int, height: int, tile_size: int, overlap: int) -> None:
        check_tile_parameters(tile_size, overlap)
        if width < 1 or height < 1:
            raise RsdlError(f"The raster is empty ({width} x {height} pixels).")
        super().__init__(width, height, tile_size, tile_size - overlap, centred_starts)
        self.overlap = overlap
        self._row_spans = _axis_centre_spans(self.tile_row_starts, tile_size, height)
        self._col_spans = _axis_centre_spans(self.tile_col_starts, tile_size, width)
        self.tiles = list(self)  # the engine and the blender index and slice them

    def centre_region(self, tile: TileWindow) -> Window:
        """(row, col, rows, cols) of the raster pixels this tile alone provides in CENTRE_CROP mode.

        Neighbouring tiles split their overlap in the middle; tiles on the raster border reach the
        border. The regions of all tiles cover the raster exactly once, each inside its tile.
        """
        row_start, row_stop = self._row_spans[tile.index // self.n_tile_cols]
        col_start, col_stop = self._col_spans[tile.index % self.n_tile_cols]
        return row_start, col_start, row_stop - row_start, col_stop - col_start

    def contributed_rows(self, tile_row: int, centre_crop: bool = False) -> tuple[int, int]:
        """[start, stop) raster rows that the tiles of ``tile_row`` add to: their centre region
        (``centre_crop``, as BlendMode.CENTRE_CROP blends) or the part of the tile inside the raster."""
        if centre_crop:
            return self._row_spans[tile_row]
        start = self.tile_row_starts[tile_row]
        return max(start, 0), min(start + self.tile_size, self.height)

    def tile_rows_touching(self, first: int, stop: int, centre_crop: bool = False) -> range:
        """The tile rows whose contributed rows (:meth:`contributed_rows`) meet raster rows [first, stop).

        Both ends of the contributed rows grow with the tile row, so the answer is one run of
        tile rows: exactly the tiles that add to rows [first, stop) in a whole-raster blend.
        """
        first, stop = check_row_range((first, stop), self.height)
        touching = [
            tile_row
            for tile_row in range(self.n_tile_rows)
            if self.contributed_rows(tile_row, centre_crop)[0] < stop
            and self.contributed_rows(tile_row, centre_crop)[1] > first
        ]
        # Every raster row lies in some tile's contributed rows, so a valid range meets at least one.
        return range(touching[0], touching[-1] + 1)

    def tiles_touching_rows(self, first: int, stop: int, centre_crop: bool = False) -> list[TileWindow]:
        """The tiles of :meth:`tile_rows_touching`, in plan order (whole tile rows)."""
        tile_rows = self.tile_rows_touching(first, stop, centre_crop)
        return self.tiles[tile_rows.start * self.n_tile_cols : tile_rows.stop * self.n_tile_cols]


class DetectionPlan(TileLayout):
    """The tiles of object detection over a ``width`` x ``height`` raster, in row-major order.

    Tiles lie inside the raster wherever one fits (the last of a row or column flush with the
    raster's end), so no tile is padded by reflection, which would show a detector mirrored objects;
    only an axis shorter than a tile gets one overhanging tile. Neighbours overlap by at least
    ``overlap`` pixels, so an object narrower than that lies whole in some tile.
    """

    def __init__(self, width: int, height: int, tile_size: int, overlap: int) -> None:
        check_tile_parameters(tile_size, overlap)
        if width < 1 or height < 1:
            raise RsdlError(f"The raster is empty ({width} x {height} pixels).")
        super().__init__(width, height, tile_size, tile_size - overlap, inside_starts)
        self.overlap = overlap
