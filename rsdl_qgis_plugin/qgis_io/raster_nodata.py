"""Where a raster is nodata, read through GDAL: each band's mask band (nodata value, alpha band,
internal mask) and the values of float bands, combined by core/raster/nodata.py's rule (a pixel
is nodata when any band is)."""

from __future__ import annotations

import numpy as np
from osgeo import gdal

from ..core.raster.nodata import nodata_pixels
from .gdal_calls import checked_read

# Float bands can hold NaN or infinities, which are nodata with or without a nodata value.
_FLOAT_TYPES = {gdal.GDT_Float32, gdal.GDT_Float64, gdal.GDT_CFloat32, gdal.GDT_CFloat64}


def has_nodata(dataset: gdal.Dataset) -> bool:
    """Whether any pixel may be nodata: a band has a nodata value, an alpha band or a mask, or
    is a float band (non-finite values)."""
    return any(
        band.GetMaskFlags() != gdal.GMF_ALL_VALID or band.DataType in _FLOAT_TYPES
        for band in (dataset.GetRasterBand(i) for i in range(1, dataset.RasterCount + 1))
    )


def nodata_rows(dataset: gdal.Dataset, row: int, rows: int, values: np.ndarray | None = None) -> np.ndarray:
    """True where any band of the raster is nodata in these full-width rows.

    ``values``: the rows' (bands, rows, width) pixels when the caller has read them already;
    otherwise only float bands' values are read (GDAL's mask bands apply nodata values).
    """
    width = dataset.RasterXSize
    action = f"Reading the nodata mask of rows {row}-{row + rows} of '{dataset.GetDescription()}'"
    if values is not None:
        values = values.reshape(dataset.RasterCount, rows, width)
    bands, masks = [], []
    for index in range(1, dataset.RasterCount + 1):
        band = dataset.GetRasterBand(index)
        mask = None
        if band.GetMaskFlags() != gdal.GMF_ALL_VALID:
            mask = checked_read(action, band.GetMaskBand().ReadAsArray, 0, row, width, rows)
        if values is not None:
            pixels = values[index - 1]
        elif band.DataType in _FLOAT_TYPES:
            pixels = checked_read(action, band.ReadAsArray, 0, row, width, rows)
        else:
            pixels = None  # an integer band: its mask says it all
        if pixels is None and mask is None:
            continue  # an integer band without nodata: always valid
        bands.append(pixels)
        masks.append(mask)
    if not bands:
        return np.zeros((rows, width), dtype=bool)
    return nodata_pixels(bands, [None] * len(bands), masks)
