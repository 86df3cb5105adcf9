"""Where a raster is nodata: the pixels that every band masks out (GDAL mask bands)."""

from __future__ import annotations

import numpy as np
from osgeo import gdal

from .gdal_calls import checked_read


def has_nodata(dataset: gdal.Dataset) -> bool:
    """Whether any band has nodata (a nodata value, an alpha band or a mask)."""
    return any(
        dataset.GetRasterBand(i).GetMaskFlags() != gdal.GMF_ALL_VALID
        for i in range(1, dataset.RasterCount + 1)
    )


def nodata_mask_rows(dataset: gdal.Dataset, row: int, rows: int) -> np.ndarray:
    """True where every band of the raster is nodata (or masked) in these full-width rows."""
    nodata = np.ones((rows, dataset.RasterXSize), dtype=bool)
    action = f"Reading the nodata mask of rows {row}-{row + rows} of '{dataset.GetDescription()}'"
    for index in range(1, dataset.RasterCount + 1):
        mask = dataset.GetRasterBand(index).GetMaskBand()
        nodata &= checked_read(action, mask.ReadAsArray, 0, row, dataset.RasterXSize, rows) == 0
        if not nodata.any():
            break
    return nodata
