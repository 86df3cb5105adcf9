"""Burn label shapes into a mask GeoTIFF on a raster's grid, strip by strip.

rasterio.features.rasterize is GDAL's rasterizer, the one rsdl:rasterizelabels uses, so the
masks agree pixel for pixel. Only the shapes that touch a strip are burnt into it (an STRtree
query, kept in burn order), and pixels where any band of the raster is nodata take the ignore
value, as in the plugin. Memory is bounded by one strip, whatever the raster's size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from shapely.geometry.base import BaseGeometry

from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues, smallest_unsigned_dtype
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics

from .base import window_nodata
from .cache import temporary_path

ROWS_PER_STRIP = 1024
MASK_BLOCK = 256


def write_label_mask(
    raster_path: str | os.PathLike,
    shapes: Sequence[tuple[BaseGeometry, int]],
    classes: Sequence[LabelClass],
    values: MaskValues,
    output: Path,
    all_touched: bool = False,
) -> ClassStatistics:
    """Write the mask of ``raster_path``'s grid at ``output``; returns its class pixel counts."""
    dtype = smallest_unsigned_dtype(
        [c.value for c in classes] + [values.background_value, values.ignore_value]
    )
    tree = shapely.STRtree([geometry for geometry, _ in shapes])
    statistics = ClassStatistics(values.ignore_value)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(output)
    with rasterio.open(raster_path) as source:
        profile = {
            "driver": "GTiff",
            "width": source.width,
            "height": source.height,
            "count": 1,
            "dtype": dtype.name,
            "crs": source.crs,
            "transform": source.transform,
            "nodata": values.ignore_value,
            "tiled": True,
            "blockxsize": MASK_BLOCK,
            "blockysize": MASK_BLOCK,
            "compress": "deflate",
        }
        try:
            with rasterio.open(temporary, "w", **profile) as target:
                for row in range(0, source.height, ROWS_PER_STRIP):
                    window = Window(0, row, source.width, min(ROWS_PER_STRIP, source.height - row))
                    strip = _burn_strip(source, window, shapes, tree, values, dtype, all_touched)
                    statistics.add_block(strip)
                    target.write(strip, 1, window=window)
            os.replace(temporary, output)
        finally:
            temporary.unlink(missing_ok=True)
    return statistics


def _burn_strip(
    source: rasterio.DatasetReader,
    window: Window,
    shapes: Sequence[tuple[BaseGeometry, int]],
    tree: shapely.STRtree,
    values: MaskValues,
    dtype: np.dtype,
    all_touched: bool,
) -> np.ndarray:
    out_shape = (int(window.height), int(window.width))
    touching = np.sort(tree.query(shapely.box(*window_bounds(window, source.transform))))
    if touching.size:
        strip = rasterize(
            [shapes[i] for i in touching],
            out_shape=out_shape,
            fill=values.unlabelled_value,
            transform=source.window_transform(window),
            all_touched=all_touched,
            dtype=dtype.name,
        )
    else:
        strip = np.full(out_shape, values.unlabelled_value, dtype=dtype)
    strip[window_nodata(source, window)] = values.ignore_value
    return strip
