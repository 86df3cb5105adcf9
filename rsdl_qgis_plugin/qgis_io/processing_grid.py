"""The grid a model runs on: the raster's own pixels, or the model's resolution, over an area.

At the raster's resolution the grid is a window of the raster's own pixel grid (so outputs align
with the input pixel for pixel). At the model's resolution it covers the same area with pixels
of the model's size, anchored at the area's top-left corner.
"""

from __future__ import annotations

import math

from qgis.core import (
    QgsRasterLayer,
    QgsRectangle,
    QgsUnitTypes,
)

from ..core.errors import GridError
from ..core.raster.grid import RasterGrid
from .compat import DISTANCE_METERS, RASTER_CAPABILITY_SIZE
from .raster_grid import crs_wkt, grid_from_raster_layer

RESOLUTION_TOLERANCE = 0.01  # a pixel size within 1% of the model's counts as the same
# Resampling to pixels this many times finer than the raster's is taken for a mistake (a 300 m
# Landsat scene under a 50 cm model would become a grid of 10^11 pixels that runs for days).
MAX_UPSAMPLING = 16.0


def native_grid(layer: QgsRasterLayer) -> RasterGrid | None:
    """The raster's own grid, or None for layers without one (WMS, XYZ)."""
    provider = layer.dataProvider()
    if not provider.capabilities() & RASTER_CAPABILITY_SIZE or layer.width() <= 0:
        return None
    if layer.providerType() == "gdal":
        return grid_from_raster_layer(layer)  # the file's exact geotransform, no float round trip
    extent = layer.extent()
    return RasterGrid(
        layer.width(),
        layer.height(),
        (
            extent.xMinimum(),
            layer.rasterUnitsPerPixelX(),
            0.0,
            extent.yMaximum(),
            0.0,
            -layer.rasterUnitsPerPixelY(),
        ),
        crs_wkt(layer.crs()),
    )


def model_pixel_size(layer: QgsRasterLayer, resolution_cm: float) -> float:
    """The model's pixel size (cm/px) in the units of the layer's CRS."""
    crs = layer.crs()
    if crs.isGeographic():
        raise GridError(
            f"Raster '{layer.name()}' is in a geographic CRS (degrees) but the model works at "
            f"{resolution_cm:g} cm/px; reproject the raster to a projected CRS (e.g. UTM) or "
            "switch off resampling."
        )
    factor = QgsUnitTypes.fromUnitToUnitFactor(DISTANCE_METERS, crs.mapUnits())
    return resolution_cm / 100.0 * factor


def _window_of(grid: RasterGrid, area: QgsRectangle) -> RasterGrid:
    """The part of ``grid`` that covers ``area``, snapped outwards to whole pixels."""
    x0, dx, _, y0, _, dy = grid.geotransform
    col0 = max(0, math.floor(round((area.xMinimum() - x0) / dx, 6)))
    col1 = min(grid.width, math.ceil(round((area.xMaximum() - x0) / dx, 6)))
    row0 = max(0, math.floor(round((area.yMaximum() - y0) / dy, 6)))
    row1 = min(grid.height, math.ceil(round((area.yMinimum() - y0) / dy, 6)))
    if col1 <= col0 or row1 <= row0:
        raise GridError("The processing extent does not overlap the raster; choose an extent inside it.")
    return grid.window_grid(row0, col0, row1 - row0, col1 - col0)


def processing_grid(
    layer: QgsRasterLayer,
    area: QgsRectangle | None,
    resolution_cm: float | None,
    resample: bool,
) -> tuple[RasterGrid, bool]:
    """The grid to run on, and whether it differs from the raster's own pixels.

    ``area`` is in the layer's CRS (None: the whole layer).
    """
    own = native_grid(layer)
    extent = layer.extent() if area is None else area.intersect(layer.extent())
    if extent.isEmpty():
        raise GridError(
            f"The processing extent does not overlap raster '{layer.name()}'; choose an extent inside it."
        )
    wants_model_size = resample and resolution_cm is not None
    if own is None and not wants_model_size:
        raise GridError(
            f"Layer '{layer.name()}' has no pixel size of its own (a web map); run a model that "
            "declares its resolution, with resampling on."
        )
    if wants_model_size:
        size = model_pixel_size(layer, resolution_cm)
        if own is not None and own.pixel_width > MAX_UPSAMPLING * size:
            factor = own.pixel_width / size
            raise GridError(
                f"Raster '{layer.name()}' has pixels of {own.pixel_width:g} map units but the model "
                f"works at {resolution_cm:g} cm/px ({size:g} map units): resampling to the model's "
                f"resolution would make the grid {factor:.0f} times finer (about "
                f"{round(own.width * factor):,} x {round(own.height * factor):,} pixels). Switch off "
                "resampling (RESAMPLE) to run on the raster's own pixels, or use imagery near the "
                "model's resolution."
            )
        if own is None or abs(own.pixel_width - size) > RESOLUTION_TOLERANCE * size:
            grid = RasterGrid.from_extent(
                extent.xMinimum(),
                extent.yMinimum(),
                extent.xMaximum(),
                extent.yMaximum(),
                size,
                crs_wkt(layer.crs()),
            )
            return grid, True
    return _window_of(own, extent), False
