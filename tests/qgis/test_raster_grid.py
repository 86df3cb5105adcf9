"""qgis_io/raster_grid.py: grids of QGIS raster layers, as GDAL reads their files."""

from __future__ import annotations

from pathlib import Path

import pytest
from osgeo import gdal, osr
from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer, QgsRectangle

from rsdl_qgis_plugin.core.errors import GridError
from rsdl_qgis_plugin.qgis_io.raster_grid import (
    crs_wkt,
    gdal_source,
    grid_from_extent,
    grid_from_raster_layer,
    open_gdal,
    require_same_grid,
)

# Neither the origin nor the pixel size is a binary fraction: a float round trip through QGIS's
# extent and pixel size would change the last bits.
GEOTRANSFORM = (500000.1, 0.1, 0.0, 4100000.3, 0.0, -0.1)


def _write(path: Path, geotransform=GEOTRANSFORM, epsg: int | None = 32633, size=(37, 23)) -> Path:
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), *size, 1, gdal.GDT_Byte)
    if geotransform is not None:
        dataset.SetGeoTransform(geotransform)
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        dataset.SetProjection(srs.ExportToWkt())
    dataset = None
    return path


def _layer(path: Path, name: str | None = None) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), name or path.stem, "gdal")
    assert layer.isValid(), path
    return layer


def test_the_grid_is_the_files_exact_geotransform(tmp_path, qgis_app):
    path = _write(tmp_path / "image.tif")
    grid = grid_from_raster_layer(_layer(path))
    dataset = gdal.Open(str(path))
    assert grid.geotransform == dataset.GetGeoTransform() == GEOTRANSFORM
    assert (grid.width, grid.height) == (dataset.RasterXSize, dataset.RasterYSize) == (37, 23)
    srs = osr.SpatialReference(grid.crs_wkt)
    srs.AutoIdentifyEPSG()
    assert srs.GetAuthorityCode(None) == "32633"
    assert open_gdal(_layer(path)).GetGeoTransform() == GEOTRANSFORM
    assert gdal_source(_layer(path)) == str(path)


def test_crs_wkt_is_read_by_gdal_as_the_same_crs(qgis_app):
    srs = osr.SpatialReference(crs_wkt(QgsCoordinateReferenceSystem("EPSG:3035")))
    expected = osr.SpatialReference()
    expected.ImportFromEPSG(3035)
    assert srs.IsSame(expected)


def test_layers_without_crs_or_georeferencing_are_refused(tmp_path, qgis_app):
    layer = _layer(_write(tmp_path / "image.tif"))
    layer.setCrs(QgsCoordinateReferenceSystem())
    with pytest.raises(GridError, match="has no CRS"):
        grid_from_raster_layer(layer)
    with pytest.raises(GridError, match="no georeferencing"):
        grid_from_raster_layer(_layer(_write(tmp_path / "plain.tif", geotransform=None)))
    rotated = _layer(_write(tmp_path / "rotated.tif", (500000.0, 1.0, 0.2, 4100000.0, 0.0, -1.0)))
    with pytest.raises(GridError, match=r"'rotated': .*rotated geotransform"):
        grid_from_raster_layer(rotated)


def test_web_layers_and_vanished_files_are_refused(tmp_path, qgis_app):
    web = QgsRasterLayer(f"type=xyz&url=file://{tmp_path}/%7Bz%7D/%7Bx%7D/%7By%7D.png", "basemap", "wms")
    with pytest.raises(GridError, match="'basemap' comes from the 'wms' provider"):
        gdal_source(web)
    path = _write(tmp_path / "gone.tif")
    layer = _layer(path)
    path.unlink()
    with pytest.raises(GridError, match="GDAL cannot read raster"):
        open_gdal(layer)


def test_grid_from_extent_covers_the_extent(qgis_app):
    grid = grid_from_extent(
        QgsRectangle(100.0, 50.0, 110.5, 53.0), QgsCoordinateReferenceSystem("EPSG:32633"), 2.0
    )
    assert (grid.width, grid.height) == (6, 2)
    assert grid.geotransform == (100.0, 2.0, 0.0, 53.0, 0.0, -2.0)
    with pytest.raises(GridError, match="valid CRS"):
        grid_from_extent(QgsRectangle(0, 0, 1, 1), QgsCoordinateReferenceSystem(), 1.0)


def test_require_same_grid_refuses_a_shifted_or_reprojected_raster(tmp_path, qgis_app):
    reference = _layer(_write(tmp_path / "reference.tif"))
    require_same_grid(reference, _layer(_write(tmp_path / "same.tif")), "hint")
    x0, dx, rx, y0, ry, dy = GEOTRANSFORM
    shifted = _layer(_write(tmp_path / "shifted.tif", (x0 + 1e-7, dx, rx, y0, ry, dy)))
    with pytest.raises(GridError) as raised:
        require_same_grid(reference, shifted, "Warp it first.")
    message = str(raised.value)
    assert "'shifted' is not on the grid of 'reference'" in message and message.endswith("Warp it first.")
    assert repr(x0) in message and repr(x0 + 1e-7) in message
    with pytest.raises(GridError, match="EPSG:32634"):
        require_same_grid(reference, _layer(_write(tmp_path / "other_crs.tif", epsg=32634)), "")
    with pytest.raises(GridError, match="36 x 23 px"):
        require_same_grid(reference, _layer(_write(tmp_path / "narrow.tif", size=(36, 23))), "")
