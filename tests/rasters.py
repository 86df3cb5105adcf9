"""Small GeoTIFFs written with GDAL from arrays, for the QGIS tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal, osr

GDAL_TYPES = {np.uint8: gdal.GDT_Byte, np.uint16: gdal.GDT_UInt16, np.float32: gdal.GDT_Float32}


def write_geotiff(
    path: Path,
    values: np.ndarray,
    geotransform: tuple[float, float, float, float, float, float],
    epsg: int,
    nodata: float | None = None,
    alpha: bool = False,
) -> Path:
    """A GeoTIFF of (bands, rows, cols) ``values``, every band with ``nodata`` (None: none); with
    ``alpha`` the last band is an alpha band."""
    bands, rows, cols = values.shape
    dataset = gdal.GetDriverByName("GTiff").Create(
        str(path), cols, rows, bands, GDAL_TYPES[values.dtype.type], ["ALPHA=YES"] if alpha else []
    )
    dataset.SetGeoTransform(geotransform)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    dataset.SetProjection(srs.ExportToWkt())
    for band, plane in enumerate(values, start=1):
        dataset.GetRasterBand(band).WriteArray(plane)
        if nodata is not None:
            dataset.GetRasterBand(band).SetNoDataValue(nodata)
    dataset = None  # closes the file
    return path
