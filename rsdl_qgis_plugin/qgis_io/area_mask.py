"""Limit processing to the features of a polygon layer: a mask on the processing grid.

The polygons are reprojected and repaired by the same code as label rasterization, burnt into a
temporary Byte GeoTIFF, and read window by window beside the raster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from osgeo import gdal
from qgis.core import QgsCoordinateTransformContext, QgsFeedback, QgsVectorLayer

from ..core.labels.label_rules import MaskValues, OverlapRule
from ..core.raster.grid import RasterGrid
from .gdal_calls import check_gdal, checked_read, gdal_errors, no_gdal_failure
from .label_features import BufferSpec, ClassSource, prepare_labels


def write_area_mask(
    layer: QgsVectorLayer,
    grid: RasterGrid,
    path: Path,
    context: QgsCoordinateTransformContext,
    feedback: QgsFeedback | None = None,
) -> Path:
    """Burn 1 inside the layer's features, 0 elsewhere, on ``grid`` (a temporary file)."""
    prepared = prepare_labels(
        [layer],
        grid,
        ClassSource(burn_value=1),
        MaskValues(),
        OverlapRule.LAST_FEATURE,
        BufferSpec(),
        context,
        feedback,
    )
    action = f"Writing the area mask '{path}'"
    gdal.ErrorReset()
    with gdal_errors(action, feedback, path):
        dataset = gdal.GetDriverByName("GTiff").Create(
            str(path),
            grid.width,
            grid.height,
            1,
            gdal.GDT_Byte,
            ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"],
        )
        check_gdal(dataset is not None, action, path=path)
        dataset.SetGeoTransform(grid.geotransform)
        dataset.SetProjection(grid.crs_wkt)
        # Outside is an explicit 0, not whatever GDAL makes of tiles it never wrote.
        check_gdal(dataset.GetRasterBand(1).Fill(0) == gdal.CE_None, action, feedback, path)
        result = gdal.RasterizeLayer(dataset, [1], prepared.layer, burn_values=[1])
        check_gdal(result == gdal.CE_None, action, feedback, path)
        dataset = None  # closing writes what GDAL still holds: it can fail too
        check_gdal(no_gdal_failure(), action, feedback, path)
    return path


class MaskedWindowReader:
    """Wraps a window reader: pixels outside the area mask become nodata."""

    def __init__(self, reader, mask_path: Path) -> None:
        self.reader = reader
        self.path = mask_path
        action = f"Opening the area mask '{mask_path}'"
        with gdal_errors(action):  # on the reading thread, where exceptions may be on
            self.dataset = gdal.Open(str(mask_path))
            check_gdal(self.dataset is not None, action)
        self.band = self.dataset.GetRasterBand(1)

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        action = f"Reading rows {row + 1}-{row + rows} of the area mask '{self.path}'"
        inside = checked_read(action, self.band.ReadAsArray, col, row, cols, rows) > 0
        if not inside.any():  # skip the raster read: the tile will be skipped anyway
            return np.zeros((len(self.reader.bands), rows, cols), dtype=np.float32), inside
        data, valid = self.reader.read(row, col, rows, cols)
        return data, valid & inside
