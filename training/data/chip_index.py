"""Chip footprints of rasters with cached label masks: which chips exist, their split and counts.

Chips are placed by core's ChipPlan (every ``stride`` pixels, one flush with each edge), split by
blocks of ground (``splits.py``) and kept by core's rules (``decide_chip``: all-ignore chips
are skipped, which is what makes sparse polygon labels cheap; empty chips kept with
``keep_empty``). Only the masks are read, one chip row at a time; the image's nodata is already
the ignore value there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from rsdl_qgis_plugin.core.datasets.chips import (
    ChipDecision,
    ChipOutcome,
    ChipPlan,
    ChipRules,
    ChipTally,
    ChipWindow,
    Split,
    SplitSettings,
    decide_chip,
)
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics

from .splits import GridFrame, make_block_split


@dataclass(frozen=True)
class RasterInfo:
    """What training needs to know about one input raster (read from its header only)."""

    path: str
    width: int
    height: int
    transform: tuple[float, ...]  # affine coefficients a, b, c, d, e, f
    crs_wkt: str
    count: int
    dtype: str
    nodata: tuple[float | None, ...]
    files: tuple[str, ...]  # every file GDAL reads for it (a VRT and its sources)

    @classmethod
    def read(cls, path: str) -> RasterInfo:
        with rasterio.open(path) as source:
            if source.transform.b or source.transform.d:
                raise ValueError(f"Raster '{path}' is rotated; warp it to a north-up grid first.")
            if source.crs is None:
                raise ValueError(f"Raster '{path}' has no CRS; assign one first.")
            return cls(
                str(path),
                source.width,
                source.height,
                tuple(source.transform)[:6],
                source.crs.to_wkt(),
                source.count,
                source.dtypes[0],
                tuple(source.nodatavals),
                tuple(source.files),
            )

    @property
    def pixel_size(self) -> tuple[float, float]:
        return self.transform[0], -self.transform[4]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top)."""
        a, _, c, _, e, f = self.transform
        return c, f + e * self.height, c + a * self.width, f

    def footprint(self, window: ChipWindow) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) of a chip in map coordinates."""
        a, _, c, _, e, f = self.transform
        left, top = c + a * window.col, f + e * window.row
        return left, top, left + a * window.size, top + e * window.size


def block_frame(rasters: Sequence[RasterInfo]) -> GridFrame:
    return GridFrame.covering([r.bounds for r in rasters], [min(r.pixel_size) for r in rasters])


def build_chip_index(
    rasters: Sequence[RasterInfo],
    masks: Sequence[Path],
    chip_size: int,
    stride: int,
    settings: SplitSettings,
    rules: ChipRules,
    ignore_value: int,
    folds: int = 0,
    fold: int = 0,
    count_objects: Callable[[int, ChipWindow], int] | None = None,
) -> dict[str, Any]:
    """The chip index document: chips per split as [raster, row, col], counts and class statistics.

    ``count_objects(raster number, window)`` (object chips): the objects kept in a chip, which
    then decide whether it is empty (core's ``decide_chip``)."""
    frame = block_frame(rasters)
    finest = min(frame.window_of(*r.footprint(ChipWindow(0, 0, chip_size))).size for r in rasters)
    split = make_block_split(frame, finest, settings, folds, fold)
    tally = ChipTally(ignore_value)
    chips: dict[str, list[list[int]]] = {s.value: [] for s in Split}
    for number, (raster, mask_path) in enumerate(zip(rasters, masks)):
        plan = ChipPlan(raster.width, raster.height, chip_size, stride)
        with rasterio.open(mask_path) as mask:
            for row in plan.row_offsets:
                strip = mask.read(1, window=Window(0, row, raster.width, chip_size))
                for window in plan.row(row):
                    chip_split = split.split_of(frame.window_of(*raster.footprint(window)))
                    if chip_split is None:
                        tally.add(ChipDecision(ChipOutcome.STRADDLING))
                        continue
                    statistics = ClassStatistics(ignore_value)
                    statistics.add_block(np.ascontiguousarray(strip[:, window.col : window.col + chip_size]))
                    objects = count_objects(number, window) if count_objects is not None else None
                    decision = decide_chip(window, False, statistics, rules, objects)
                    tally.add(decision, chip_split, statistics)
                    if decision.outcome == ChipOutcome.WRITTEN:
                        chips[chip_split.value].append([number, window.row, window.col])
    return {
        "chips": chips,
        "counts": tally.counts(),
        "statistics": {
            s.value: {"counts": {str(k): v for k, v in sorted(st.counts.items())}, "ignored": st.ignored}
            for s, st in tally.statistics.items()
        },
        "blocks": split.block_counts(),
        "frame": asdict(frame),
    }
