"""qgis_io/processing_grid.py: the grid a model runs on, the raster's own pixels or the model's."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from osgeo import gdal, osr
from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer, QgsRectangle

from rsdl_qgis_plugin.core.errors import GridError
from rsdl_qgis_plugin.qgis_io.processing_grid import model_pixel_size, native_grid, processing_grid

X0, Y0, PIXEL = 500000.0, 4000000.0, 0.5
WIDTH, HEIGHT = 100, 80


def _layer(path: Path, epsg: int = 32633, geotransform=(X0, PIXEL, 0.0, Y0, 0.0, -PIXEL)) -> QgsRasterLayer:
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), WIDTH, HEIGHT, 1, gdal.GDT_Byte)
    dataset.SetGeoTransform(geotransform)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    dataset.SetProjection(srs.ExportToWkt())
    dataset = None
    layer = QgsRasterLayer(str(path), path.stem, "gdal")
    assert layer.isValid()
    return layer


@pytest.fixture()
def layer(tmp_path) -> QgsRasterLayer:
    return _layer(tmp_path / "image.tif")


def test_the_whole_raster_is_its_own_grid(layer):
    grid, resampled = processing_grid(layer, None, None, False)
    assert not resampled
    assert grid == native_grid(layer)
    path = layer.source()
    assert grid.geotransform == gdal.Open(path).GetGeoTransform()
    assert (grid.width, grid.height) == (WIDTH, HEIGHT)


def test_an_extent_snaps_outwards_to_the_rasters_pixels(layer):
    area = QgsRectangle(X0 + 10.3, Y0 - 29.8, X0 + 20.1, Y0 - 10.0)
    grid, resampled = processing_grid(layer, area, 50.0, True)  # the raster's resolution: no resampling
    assert not resampled
    # Columns 20 (10.0 m) to 41 (20.5 m), rows 20 (10 m down) to 60 (30 m down).
    assert (grid.width, grid.height) == (21, 40)
    assert grid.geotransform == (X0 + 10.0, PIXEL, 0.0, Y0 - 10.0, 0.0, -PIXEL)
    xmin, ymin, xmax, ymax = grid.bounds
    assert xmin <= area.xMinimum() and ymin <= area.yMinimum()
    assert xmax >= area.xMaximum() and ymax >= area.yMaximum()
    for edge, value in ((xmin, area.xMinimum()), (xmax, area.xMaximum())):
        assert abs(edge - value) < PIXEL
        assert (edge - X0) / PIXEL == math.floor((edge - X0) / PIXEL)  # on the raster's pixel edges


def test_an_extent_is_clipped_to_the_raster_and_refused_off_it(layer):
    grid, _ = processing_grid(layer, QgsRectangle(X0 - 100, Y0 - 20, X0 + 5, Y0 + 100), None, False)
    assert (grid.width, grid.height) == (10, 40)
    assert grid.geotransform[0] == X0 and grid.geotransform[3] == Y0
    with pytest.raises(GridError, match="does not overlap"):
        processing_grid(layer, QgsRectangle(X0 + 60, Y0 - 10, X0 + 70, Y0), None, False)


def test_the_models_resolution_makes_a_new_grid_over_the_area(layer):
    area = QgsRectangle(X0 + 10.3, Y0 - 29.8, X0 + 20.1, Y0 - 10.0)
    grid, resampled = processing_grid(layer, area, 100.0, True)
    assert resampled
    assert grid.geotransform == (area.xMinimum(), 1.0, 0.0, area.yMaximum(), 0.0, -1.0)
    assert (grid.width, grid.height) == (10, 20)  # ceil(9.8), ceil(19.8)
    # Within 1% of the raster's pixel size counts as the raster's own: no resampling.
    assert processing_grid(layer, None, 50.4, True)[1] is False
    # Resampling off: the raster's own pixels whatever the model says.
    assert processing_grid(layer, None, 100.0, False) == (native_grid(layer), False)


def test_upsampling_far_finer_than_the_raster_is_refused(layer):
    assert processing_grid(layer, None, 50.0 / 16, True)[1] is True  # 16 times finer: allowed
    with pytest.raises(GridError, match="17 times finer"):
        processing_grid(layer, None, 3.0, True)


def test_model_pixel_size_in_the_crs_units(tmp_path, layer):
    assert model_pixel_size(layer, 50.0) == pytest.approx(0.5)
    feet = _layer(tmp_path / "feet.tif", epsg=2263, geotransform=(1000000.0, 2.0, 0.0, 200000.0, 0.0, -2.0))
    assert feet.crs() == QgsCoordinateReferenceSystem("EPSG:2263")
    assert model_pixel_size(feet, 30.48) == pytest.approx(1.0, rel=1e-5)
    degrees = _layer(tmp_path / "degrees.tif", epsg=4326, geotransform=(10.0, 1e-5, 0.0, 50.0, 0.0, -1e-5))
    with pytest.raises(GridError, match="geographic CRS"):
        model_pixel_size(degrees, 50.0)
    with pytest.raises(GridError, match="geographic CRS"):
        processing_grid(degrees, None, 50.0, True)
    assert processing_grid(degrees, None, 50.0, False)[1] is False


def test_web_maps_have_no_grid_of_their_own(tmp_path, qgis_app):
    web = QgsRasterLayer(f"type=xyz&url=file://{tmp_path}/%7Bz%7D/%7Bx%7D/%7By%7D.png", "basemap", "wms")
    assert web.isValid()
    assert native_grid(web) is None
    area = QgsRectangle(3628312.0, 39000.0, 3628412.0, 39050.0)
    with pytest.raises(GridError, match="no pixel size of its own"):
        processing_grid(web, area, None, False)
    grid, resampled = processing_grid(web, area, 50.0, True)
    assert resampled and (grid.width, grid.height) == (200, 100)
    assert grid.geotransform == (3628312.0, 0.5, 0.0, 39050.0, 0.0, -0.5)
