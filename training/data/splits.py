"""Spatial train/validation/test split of one or several rasters, by blocks of ground.

core/datasets/chips.py's BlockSplit assigns square blocks of pixels to splits (as rsdl:exportchips does)
and drops chips that touch blocks of different splits, so no validation chip shares a pixel with
a training chip. Several rasters (tiles, or zoom levels of the same ground) share one block grid
in map coordinates: its origin is the top-left corner of all rasters together and its pixel the
finest raster's pixel, so overlapping rasters put the same ground in the same split. With a single
raster the grid is the raster's own pixel grid and the split equals rsdl:exportchips's.

``folds`` > 0 replaces the fractions by k-fold cross-validation over the same blocks: the blocks,
ranked by a seeded hash, are cut into ``folds`` groups and group ``fold`` is the validation split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rsdl_qgis_plugin.core.datasets.chips import BlockSplit, ChipWindow, SplitSettings, unit_hash
from rsdl_qgis_plugin.core.errors import RsdlError

_FOLD_STREAM = 3  # a hash stream of its own, independent of core's block ranking
_EPSILON = 1e-6  # float noise in map coordinates, in grid pixels


@dataclass(frozen=True)
class GridFrame:
    """A north-up pixel grid in map coordinates: top-left corner and square pixel size."""

    x0: float
    y0: float
    pixel: float
    width: int
    height: int

    @classmethod
    def covering(
        cls, bounds: Sequence[tuple[float, float, float, float]], pixels: Sequence[float]
    ) -> GridFrame:
        """The grid over all (left, bottom, right, top) bounds with the finest pixel size."""
        left = min(b[0] for b in bounds)
        bottom = min(b[1] for b in bounds)
        right = max(b[2] for b in bounds)
        top = max(b[3] for b in bounds)
        pixel = min(pixels)
        width = math.ceil(round((right - left) / pixel, 6))
        height = math.ceil(round((top - bottom) / pixel, 6))
        return cls(left, top, pixel, width, height)

    def window_of(self, left: float, top: float, right: float, bottom: float) -> ChipWindow:
        """The smallest square window of this grid that holds a footprint."""
        col0 = math.floor((left - self.x0) / self.pixel + _EPSILON)
        col1 = math.ceil((right - self.x0) / self.pixel - _EPSILON)
        row0 = math.floor((self.y0 - top) / self.pixel + _EPSILON)
        row1 = math.ceil((self.y0 - bottom) / self.pixel - _EPSILON)
        return ChipWindow(row0, col0, max(col1 - col0, row1 - row0))


class FoldBlockSplit(BlockSplit):
    """BlockSplit whose validation blocks are one of ``folds`` groups of the ranked blocks."""

    def __init__(
        self, width: int, height: int, chip_size: int, block_size: int, seed: int, folds: int, fold: int
    ):
        if folds < 2 or not 0 <= fold < folds:
            raise RsdlError(
                f"Cross-validation needs folds >= 2 and 0 <= fold < folds, got {fold} of {folds}."
            )
        if block_size < chip_size:
            raise RsdlError(f"The split block ({block_size} px) is smaller than a chip ({chip_size} px).")
        self.block_size = block_size
        rows, cols = -(-height // block_size), -(-width // block_size)
        if rows * cols < folds:
            raise RsdlError(
                f"Only {rows * cols} blocks of {block_size} px for {folds} folds; use smaller blocks."
            )
        keys = [unit_hash(seed, _FOLD_STREAM, r, c) for r in range(rows) for c in range(cols)]
        order = np.argsort(np.asarray(keys), kind="stable")
        codes = np.zeros(rows * cols, dtype=np.int8)
        bounds = np.linspace(0, rows * cols, folds + 1).round().astype(int)
        codes[order[bounds[fold] : bounds[fold + 1]]] = 1  # 1: validation in SPLIT_ORDER
        self.blocks = codes.reshape(rows, cols)


def make_block_split(
    frame: GridFrame,
    chip_size: int,
    settings: SplitSettings,
    folds: int = 0,
    fold: int = 0,
) -> BlockSplit:
    """core's BlockSplit on the frame, or its k-fold variant when ``folds`` > 0."""
    if folds:
        return FoldBlockSplit(
            frame.width, frame.height, chip_size, settings.block_size, settings.seed, folds, fold
        )
    return BlockSplit(frame.width, frame.height, chip_size, settings)
