"""The streaming blending accumulator of the tiled-inference engine (DESIGN.md section 5).

Pure numpy; the engine (``inference/engine.py``) reads each tile of a :class:`~.plan.TilePlan`,
pads it with :func:`~.plan.pad_tile`, runs the model and hands the prediction to a
:class:`StreamingBlender`.

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

Row ranges
    A blender given ``rows=(first, stop)`` takes only the tiles that add to those rows
    (:meth:`TilePlan.tile_rows_touching`), starts its band at the first of them and hands out
    rows ``first`` to ``stop - 1`` alone. Each of those rows gets the same tiles' terms in the same
    order as in the whole-raster blend, from a zeroed band, so its values are bitwise the same:
    a raster split into row blocks and blended block by block stitches back to the whole blend.
"""

from __future__ import annotations

import enum

import numpy as np

from .layouts import TileWindow, Window
from .plan import TilePlan, check_tile_parameters
from .row_blocks import check_row_range

__all__ = [
    "GAUSSIAN_SIGMA_FRACTION",
    "MIN_RELATIVE_WEIGHT",
    "BlendMode",
    "StreamingBlender",
    "tile_weights",
]

GAUSSIAN_SIGMA_FRACTION = 1 / 8  # sigma of the Gaussian window, as a fraction of the tile size
MIN_RELATIVE_WEIGHT = 1e-6  # weight floor, relative to the window's peak


class BlendMode(str, enum.Enum):
    """How overlapping tile predictions are combined."""

    PYRAMID = "pyramid"
    GAUSSIAN = "gaussian"
    MEAN = "mean"
    CENTRE_CROP = "centre-crop"


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
    check_tile_parameters(tile_size, overlap)
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

    ``rows=(first, stop)`` blends only raster rows [first, stop): see "Row ranges" above; ``tiles``
    lists the tiles to add or skip, in order.
    """

    def __init__(
        self, plan: TilePlan, channels: int, mode: BlendMode, rows: tuple[int, int] | None = None
    ) -> None:
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
        self._first, self._stop = (0, plan.height) if rows is None else check_row_range(rows, plan.height)
        tile_rows = plan.tile_rows_touching(self._first, self._stop, self.mode is BlendMode.CENTRE_CROP)
        self._tile_start = tile_rows.start * plan.n_tile_cols
        self._tile_stop = tile_rows.stop * plan.n_tile_cols
        band_rows = min(plan.tile_size, plan.height)
        self._sums: np.ndarray | None = np.zeros((channels, band_rows, plan.width), np.float32)
        self._weights: np.ndarray | None = np.zeros((band_rows, plan.width), np.float32)
        # The band starts where the whole blend's band stands when it reaches the first tile row.
        self._band_top = max(plan.tile_row_starts[tile_rows.start], 0)  # raster row of the band's first row
        self._next_index = self._tile_start
        self._ready: list[tuple[int, np.ndarray]] = []
        self.max_band_rows = 0

    @property
    def band_rows(self) -> int:
        """Rows held now: the accumulator band plus finished rows not yet popped."""
        band = 0 if self._weights is None else self._weights.shape[0]
        return band + sum(block.shape[1] for _, block in self._ready)

    @property
    def tiles(self) -> list[TileWindow]:
        """The tiles to add or skip, in order: the whole plan, or those touching ``rows``."""
        return self.plan.tiles[self._tile_start : self._tile_stop]

    @property
    def done(self) -> bool:
        return self._next_index == self._tile_stop

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
                f"The blender received {self._next_index - self._tile_start} of "
                f"{self._tile_stop - self._tile_start} tiles; "
                "add or skip every tile before finishing."
            )
        return self.pop_ready()

    def _check_next(self, tile: TileWindow) -> None:
        if self.done:
            raise ValueError(f"Tile {tile.index}: every tile of the blender has already been added.")
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
        if self._next_index < self._tile_stop:
            next_tile_row = self._next_index // self.plan.n_tile_cols
            self._release_rows(max(self.plan.tile_row_starts[next_tile_row], 0) - self._band_top)
        else:
            # Later tiles add nothing to rows before ``stop`` (in CENTRE_CROP mode the next tile
            # may start above it, but its centre region does not).
            self._release_rows(self._stop - self._band_top)

    def _release_rows(self, count: int) -> None:
        """Blend the band's first ``count`` rows, queue those in [first, stop) for pop_ready and move
        the band down."""
        if count <= 0:
            return
        last = self._band_top + count >= self._stop
        # Rows outside [first, stop) only came along because the range's tiles reach beyond it.
        start = min(max(self._first - self._band_top, 0), count)
        stop = min(count, self._stop - self._band_top)
        if start < stop:
            sums, weights = self._sums[:, start:stop], self._weights[start:stop]
            # After the last rows nothing follows: blend in place and hand out the band itself.
            blended = _normalise(sums, weights, out=sums if last else None)
            self._ready.append((self._band_top + start, blended))
        if last:
            self._sums = self._weights = None  # the last rows were blended in place: no band stays
        else:
            for band in (self._sums, self._weights):
                # numpy copies overlapping slices safely.
                band[..., : band.shape[-2] - count, :] = band[..., count:, :]
                band[..., band.shape[-2] - count :, :] = 0
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
