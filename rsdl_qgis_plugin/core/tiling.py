"""Tile plan and streaming blending accumulator of the tiled-inference engine (DESIGN.md section 5).

Pure numpy; the engine (``inference/engine.py``) reads each tile, pads it with :func:`pad_tile`,
runs the model and hands the prediction to a :class:`StreamingBlender`.

Tile plan
    Square tiles of ``tile_size`` pixels every ``step = tile_size - overlap`` pixels, placed exactly
    as pytorch-toolbelt's ``ImageSlicer(image_shape, tile_size, tile_step, image_margin=0)`` does:
    along each axis ``n = max(1, ceil((length - overlap) / step))`` tiles span
    ``n * step + overlap`` pixels, and the surplus over the raster is split into a margin before
    (the smaller half) and after it. Tile positions are in raster pixels, so the first tile may
    start at a negative row or column and the last may end past the raster. Each margin is
    at most half a tile, so every tile overlaps the raster by at least half its size and reflecting
    its read window (:func:`pad_tile`) gives the same pixels as toolbelt's reflection of the whole
    raster. One exception: with no overlap, an even tile size and a surplus of ``tile_size - 1``,
    the far margin is exactly half a tile and the outermost padding row or column (half a tile
    away from the raster) reflects twice instead of reaching one pixel beyond the read window.

Blending
    Every output pixel is ``sum(w * prediction) / sum(w)`` over the tiles covering it, where ``w``
    is the tile's weight window (:class:`BlendMode`) times its valid-data mask. Pixels whose total
    weight is zero (nodata in every covering tile) come out as NaN.

    * PYRAMID is toolbelt's ``compute_pyramid_patch_weight_loss`` (re-implemented). Its edge
      distance is measured to pixel centres plus half a pixel, so the window is not zero on the
      tile edges (about 0.05 of the mean at the corners of a 64 px tile); every covered pixel gets
      a positive weight and the result equals toolbelt's everywhere.
    * GAUSSIAN is ``exp(-d^2 / (2 sigma^2))`` with ``sigma = tile_size / 8`` (as nnU-Net), ``d`` the
      distance from the tile centre; the corners are about ``exp(-16)`` of the centre.
    * MEAN weighs every pixel 1.
    * CENTRE_CROP gives each pixel to exactly one tile (see :meth:`TilePlan.centre_region`).

    As a guard for any window, :func:`tile_weights` floors weights at ``MIN_RELATIVE_WEIGHT`` times
    the peak, so a pixel that a tile covers with valid data never gets zero weight. It lifts only
    the Gaussian's outer corners and never binds for PYRAMID (its smallest weight is far above
    it), so toolbelt equality holds.

Streaming
    Tiles are added in plan order. When the last tile of a tile-row has been added or skipped, the
    rows above the next tile-row are final: they are blended and queued for :meth:`pop_ready`, and
    the accumulator band moves down. The band holds ``min(tile_size, height)`` rows, so with
    rows popped after each tile the blender holds at most ``tile_size + step`` rows of ``width``
    pixels, whatever the raster height. Sums are float32, as toolbelt's ``TileMerger``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from .errors import RsdlError

GAUSSIAN_SIGMA_FRACTION = 1 / 8  # sigma of the Gaussian window, as a fraction of the tile size
MIN_RELATIVE_WEIGHT = 1e-6  # weight floor, relative to the window's peak

Window = tuple[int, int, int, int]  # (row, col, rows, cols) in raster pixels
Padding = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


class BlendMode(str, enum.Enum):
    """How overlapping tile predictions are combined."""

    PYRAMID = "pyramid"
    GAUSSIAN = "gaussian"
    MEAN = "mean"
    CENTRE_CROP = "centre-crop"


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


def _check_tile_parameters(tile_size: int, overlap: int) -> None:
    if tile_size < 1:
        raise RsdlError(f"The tile size must be at least 1 pixel, got {tile_size}.")
    if overlap < 0:
        raise RsdlError(f"The overlap must be 0 or a positive number of pixels, got {overlap}.")
    if overlap >= tile_size:
        raise RsdlError(
            f"The overlap ({overlap} px) must be smaller than the tile size ({tile_size} px); "
            "lower the overlap or raise the tile size."
        )


def _axis_positions(length: int, tile_size: int, step: int) -> list[int]:
    """Tile starts along one axis, as toolbelt's ImageSlicer places them (shifted by its margin)."""
    overlap = tile_size - step
    count = max(1, -((overlap - length) // step))  # ceil((length - overlap) / step), exact
    margin_before = (step * count - (length - overlap)) // 2
    return [i * step - margin_before for i in range(count)]


def _axis_centre_spans(positions: list[int], tile_size: int, length: int) -> list[tuple[int, int]]:
    """[start, stop) owned by each tile along one axis: neighbours split their overlap in the middle."""
    cuts = [(before + tile_size + after) // 2 for before, after in zip(positions, positions[1:])]
    starts = [0, *cuts]
    stops = [*cuts, length]
    return list(zip(starts, stops))


class TilePlan:
    """Every tile of a raster of ``width`` x ``height`` pixels, in row-major order."""

    def __init__(self, width: int, height: int, tile_size: int, overlap: int) -> None:
        _check_tile_parameters(tile_size, overlap)
        if width < 1 or height < 1:
            raise RsdlError(f"The raster is empty ({width} x {height} pixels).")
        self.width = width
        self.height = height
        self.tile_size = tile_size
        self.overlap = overlap
        self.step = tile_size - overlap
        self.tile_row_starts = _axis_positions(height, tile_size, self.step)
        self.tile_col_starts = _axis_positions(width, tile_size, self.step)
        self._row_spans = _axis_centre_spans(self.tile_row_starts, tile_size, height)
        self._col_spans = _axis_centre_spans(self.tile_col_starts, tile_size, width)
        self.tiles = [
            TileWindow(index, row, col, tile_size)
            for index, (row, col) in enumerate(
                (row, col) for row in self.tile_row_starts for col in self.tile_col_starts
            )
        ]

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def n_tile_rows(self) -> int:
        return len(self.tile_row_starts)

    @property
    def n_tile_cols(self) -> int:
        return len(self.tile_col_starts)

    def centre_region(self, tile: TileWindow) -> Window:
        """(row, col, rows, cols) of the raster pixels this tile alone provides in CENTRE_CROP mode.

        Neighbouring tiles split their overlap in the middle; tiles on the raster border reach the
        border. The regions of all tiles cover the raster exactly once, each inside its tile.
        """
        row_start, row_stop = self._row_spans[tile.index // self.n_tile_cols]
        col_start, col_stop = self._col_spans[tile.index % self.n_tile_cols]
        return row_start, col_start, row_stop - row_start, col_stop - col_start


def _pyramid_weights(tile_size: int) -> np.ndarray:
    """toolbelt's compute_pyramid_patch_weight_loss(tile_size, tile_size)[0], in float64."""
    offsets = np.arange(tile_size) + 0.5  # pixel centres from the tile's top/left edge
    from_centre = np.hypot(*np.meshgrid(offsets - tile_size / 2, offsets - tile_size / 2, indexing="ij"))
    # Distance to the nearest edge along each axis, with half a pixel across (never 0).
    to_edge = np.sqrt(np.minimum(offsets, tile_size - offsets) ** 2 + 0.25)
    from_edge = np.minimum(to_edge[:, np.newaxis], to_edge[np.newaxis, :])
    ratio = from_edge / (from_centre + from_edge)
    return ratio * (tile_size * tile_size / ratio.sum())


def _gaussian_weights(tile_size: int) -> np.ndarray:
    sigma = tile_size * GAUSSIAN_SIGMA_FRACTION
    offsets = np.arange(tile_size) - (tile_size - 1) / 2
    profile = np.exp(-(offsets**2) / (2 * sigma**2))
    return np.outer(profile, profile)


_WINDOWS = {
    BlendMode.PYRAMID: _pyramid_weights,
    BlendMode.GAUSSIAN: _gaussian_weights,
    BlendMode.MEAN: lambda tile_size: np.ones((tile_size, tile_size)),
}


def tile_weights(mode: BlendMode, tile_size: int, overlap: int) -> np.ndarray:
    """(tile_size, tile_size) float32 weights for PYRAMID/GAUSSIAN/MEAN (independent of position).

    The window does not depend on the overlap (it is validated with the tile size). Weights are
    floored at MIN_RELATIVE_WEIGHT of the peak so that no covered pixel gets zero weight.
    CENTRE_CROP depends on the tile's position: use TilePlan.centre_region.
    """
    _check_tile_parameters(tile_size, overlap)
    mode = BlendMode(mode)
    if mode not in _WINDOWS:
        raise ValueError(f"{mode.value} weights depend on the tile position; use TilePlan.centre_region.")
    weights = _WINDOWS[mode](tile_size)
    return np.maximum(weights, MIN_RELATIVE_WEIGHT * weights.max()).astype(np.float32)


class StreamingBlender:
    """Blends tile predictions into full-width rows and hands rows out as soon as no later tile touches them.

    Memory: an accumulator band of ``min(tile_size, height)`` rows x width x channels (float32) plus
    the finished rows not yet popped (at most ``step`` rows when :meth:`pop_ready` is called after
    every tile); never the raster height. ``max_band_rows`` records the peak of the two together.
    """

    def __init__(self, plan: TilePlan, channels: int, mode: BlendMode) -> None:
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}.")
        self.plan = plan
        self.channels = channels
        self.mode = BlendMode(mode)
        self._window = (
            None
            if self.mode is BlendMode.CENTRE_CROP
            else tile_weights(self.mode, plan.tile_size, plan.overlap)
        )
        band_rows = min(plan.tile_size, plan.height)
        self._sums: np.ndarray | None = np.zeros((channels, band_rows, plan.width), np.float32)
        self._weights: np.ndarray | None = np.zeros((band_rows, plan.width), np.float32)
        self._band_top = 0  # raster row of the band's first row
        self._next_index = 0
        self._ready: list[tuple[int, np.ndarray]] = []
        self.max_band_rows = 0

    @property
    def band_rows(self) -> int:
        """Rows held now: the accumulator band plus finished rows not yet popped."""
        band = 0 if self._weights is None else self._weights.shape[0]
        return band + sum(block.shape[1] for _, block in self._ready)

    @property
    def done(self) -> bool:
        return self._next_index == len(self.plan)

    def add(self, tile: TileWindow, values: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Accumulate a prediction for ``tile``.

        ``values`` (channels, size, size) covers the whole tile, padding included; only the part inside
        the raster is kept. ``valid`` (size, size) bool marks pixels that carry data (False: nodata
        input, no weight). Tiles must be added (or skipped) in plan order.
        """
        self._check_next(tile)
        size = self.plan.tile_size
        if values.shape != (self.channels, size, size):
            raise ValueError(
                f"Tile {tile.index}: expected a prediction of shape {(self.channels, size, size)}, "
                f"got {values.shape}."
            )
        if valid is not None and valid.shape != (size, size):
            raise ValueError(
                f"Tile {tile.index}: expected a valid mask of shape {(size, size)}, got {valid.shape}."
            )
        row, col, rows, cols = self._contributed_window(tile)
        in_tile = (slice(row - tile.row, row - tile.row + rows), slice(col - tile.col, col - tile.col + cols))
        weights = np.ones((rows, cols), np.float32) if self._window is None else self._window[in_tile]
        if valid is not None:
            weights = weights * valid[in_tile]
        in_band = (slice(row - self._band_top, row - self._band_top + rows), slice(col, col + cols))
        self._sums[(slice(None), *in_band)] += values[(slice(None), *in_tile)] * weights
        self._weights[in_band] += weights
        self._advance()

    def skip(self, tile: TileWindow) -> None:
        """The tile had no data (all nodata): it contributes nothing, but rows can still be finalised."""
        self._check_next(tile)
        self._advance()

    def pop_ready(self) -> list[tuple[int, np.ndarray]]:
        """Rows no later tile touches: (first_row, (channels, rows, width) float32), in order, once each.

        Pixels with zero total weight (no valid data) are NaN.
        """
        ready, self._ready = self._ready, []
        return ready

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """After the last tile: all remaining rows."""
        if not self.done:
            raise RuntimeError(
                f"The blender received {self._next_index} of {len(self.plan)} tiles; "
                "add or skip every tile before finishing."
            )
        return self.pop_ready()

    def _check_next(self, tile: TileWindow) -> None:
        if self.done:
            raise ValueError(f"Tile {tile.index}: every tile of the plan has already been added.")
        expected = self.plan.tiles[self._next_index]
        if tile != expected:
            raise ValueError(
                f"Tiles must be added in plan order: expected tile {expected.index} (row {expected.row}, "
                f"col {expected.col}), got tile {tile.index} (row {tile.row}, col {tile.col})."
            )

    def _contributed_window(self, tile: TileWindow) -> Window:
        if self.mode is BlendMode.CENTRE_CROP:
            return self.plan.centre_region(tile)
        return tile.read_window(self.plan.width, self.plan.height)

    def _advance(self) -> None:
        self._next_index += 1
        if self._next_index % self.plan.n_tile_cols:
            return
        # A tile-row is complete: rows above the next tile-row are final.
        next_tile_row = self._next_index // self.plan.n_tile_cols
        if next_tile_row < self.plan.n_tile_rows:
            self._release_rows(max(self.plan.tile_row_starts[next_tile_row], 0) - self._band_top)
        else:
            self._release_rows(self.plan.height - self._band_top)

    def _release_rows(self, count: int) -> None:
        """Blend the band's first ``count`` rows, queue them for pop_ready and move the band down."""
        if count <= 0:
            return
        sums, weights = self._sums[:, :count], self._weights[:count]
        if self._band_top + count < self.plan.height:
            self._ready.append((self._band_top, _normalise(sums, weights)))
            self.max_band_rows = max(self.max_band_rows, self.band_rows)
            for band in (self._sums, self._weights):
                # numpy copies overlapping slices safely.
                band[..., : band.shape[-2] - count, :] = band[..., count:, :]
                band[..., band.shape[-2] - count :, :] = 0
        else:
            # Nothing follows: blend in place and hand out the band itself rather than a copy.
            self._ready.append((self._band_top, _normalise(sums, weights, out=sums)))
            self._sums = self._weights = None
            self.max_band_rows = max(self.max_band_rows, self.band_rows)
        self._band_top += count


def _normalise(sums: np.ndarray, weights: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """sums / weights per pixel, NaN where the weight is zero."""
    covered = weights > 0
    if covered.all():  # the usual case: no masked division, no NaN to set
        return np.divide(sums, weights, out=out)
    blended = np.divide(sums, weights, out=out, where=covered)
    blended[:, ~covered] = np.nan
    return blended
