"""Raster grids from QGIS layers and extents."""

from __future__ import annotations

from osgeo import gdal
from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer, QgsRectangle

from ..core.errors import GridError
from ..core.raster.grid import RasterGrid
from .compat import WKT_PREFERRED_GDAL


def crs_wkt(crs: QgsCoordinateReferenceSystem) -> str:
    """The CRS as WKT for GDAL (the grids' ``crs_wkt``)."""
    return crs.toWkt(WKT_PREFERRED_GDAL)


def gdal_source(layer: QgsRasterLayer) -> str:
    """The GDAL dataset name of a raster layer; refuses layers GDAL cannot open (WMS, XYZ...)."""
    if layer.providerType() != "gdal":
        raise GridError(
            f"Raster layer '{layer.name()}' comes from the '{layer.providerType()}' provider; "
            "this needs a raster file (GeoTIFF, VRT...). Save the layer as a GeoTIFF first."
        )
    return layer.source()


def open_gdal(layer: QgsRasterLayer) -> gdal.Dataset:
    """Open a raster layer's file with GDAL, read-only, with a clear error on failure."""
    source = gdal_source(layer)
    try:
        dataset = gdal.Open(source, gdal.GA_ReadOnly)
    except RuntimeError as error:
        raise GridError(f"GDAL cannot read raster '{source}': {error}") from error
    if dataset is None:
        raise GridError(f"GDAL cannot read raster '{source}'; is the file complete?")
    return dataset


def grid_from_raster_layer(layer: QgsRasterLayer) -> RasterGrid:
    """The exact pixel grid of a raster layer, read from its file's geotransform."""
    if not layer.crs().isValid():
        raise GridError(
            f"Raster layer '{layer.name()}' has no CRS; assign one "
            "(Raster > Projections > Assign Projection) and try again."
        )
    dataset = open_gdal(layer)
    geotransform = tuple(dataset.GetGeoTransform(can_return_null=True) or ())
    if len(geotransform) != 6:
        raise GridError(
            f"Raster layer '{layer.name()}' has no georeferencing (no geotransform); georeference "
            "it first (Raster > Georeferencer, or Assign Projection with a world file)."
        )
    try:
        return RasterGrid(
            dataset.RasterXSize,
            dataset.RasterYSize,
            geotransform,
            crs_wkt(layer.crs()),
        )
    except GridError as error:  # the grid knows nothing of the layer: name it here
        raise GridError(f"Raster layer '{layer.name()}': {error}") from None


def grid_from_extent(
    extent: QgsRectangle, crs: QgsCoordinateReferenceSystem, pixel_size: float
) -> RasterGrid:
    """A grid covering an extent at a pixel size, in a CRS."""
    if not crs.isValid():
        raise GridError("Choose a valid CRS for the output grid.")
    return RasterGrid.from_extent(
        extent.xMinimum(),
        extent.yMinimum(),
        extent.xMaximum(),
        extent.yMaximum(),
        pixel_size,
        crs_wkt(crs),
    )


def _grid_text(grid: RasterGrid, crs: QgsCoordinateReferenceSystem) -> str:
    x0, _, _, y0, _, _ = grid.geotransform
    # repr: the shortest exact text, so grids that differ by float noise never read the same
    return (
        f"{grid.width} x {grid.height} px, origin ({x0!r}, {y0!r}), pixel "
        f"{grid.pixel_width!r} x {grid.pixel_height!r}, {crs.authid() or crs.description()}"
    )


def require_same_grid(reference: QgsRasterLayer, other: QgsRasterLayer, hint: str) -> None:
    """Refuse ``other`` unless it has exactly the size, geotransform and CRS of ``reference``."""
    expected = grid_from_raster_layer(reference)
    actual = grid_from_raster_layer(other)
    shape = (actual.width, actual.height, actual.geotransform)
    if shape != (expected.width, expected.height, expected.geotransform) or other.crs() != reference.crs():
        raise GridError(
            f"'{other.name()}' is not on the grid of '{reference.name()}': "
            f"'{reference.name()}' is {_grid_text(expected, reference.crs())}; "
            f"'{other.name()}' is {_grid_text(actual, other.crs())}. {hint}"
        )
