"""qgis_io/provider_reader.py: windows read through a QGIS raster data provider, with GDAL's
reading of the same file as the oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsRasterLayer, QgsRectangle

from rsdl_qgis_plugin.core.raster.grid import RasterGrid
from rsdl_qgis_plugin.qgis_io.provider_reader import (
    ProviderWindowReader,
    alpha_band,
    provider_band_count,
    provider_dtype_name,
)
from tests.classify_cases import X0, Y0, write_scene
from tests.rasters import write_geotiff

GEOTRANSFORM = (600000.0, 2.0, 0.0, 200000.0, 0.0, -2.0)


def _write(path: Path, values: np.ndarray, nodata: float | None = None, alpha: bool = False) -> Path:
    """A GeoTIFF in UTM 33N of (bands, rows, cols) ``values``; with ``alpha`` the last band is alpha."""
    return write_geotiff(path, values, GEOTRANSFORM, 32633, nodata, alpha)


def _layer(path: Path) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), path.stem, "gdal")
    assert layer.isValid(), path
    return layer


def _xyz_layer(folder: Path, zmin: int = 0, zmax: int = 21) -> QgsRasterLayer:
    uri = f"type=xyz&url=file://{folder}/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmin={zmin}&zmax={zmax}"
    return QgsRasterLayer(uri, "xyz", "wms")


def test_band_count_type_and_alpha_band_of_files_and_web_maps(tmp_path, qgis_app):
    rgba = _layer(_write(tmp_path / "rgba.tif", np.full((4, 5, 6), 255, np.uint8), alpha=True))
    plain = _layer(_write(tmp_path / "plain.tif", np.zeros((2, 5, 6), np.uint16)))
    web = _xyz_layer(tmp_path)
    assert [provider_band_count(x.dataProvider()) for x in (rgba, plain, web)] == [4, 2, 3]
    assert [provider_dtype_name(x.dataProvider()) for x in (rgba, plain, web)] == ["uint8", "uint16", "uint8"]
    assert alpha_band(rgba.dataProvider()) == 4
    assert alpha_band(plain.dataProvider()) is None


def test_windows_of_the_grid_are_the_files_pixels_with_nodata_marked(tmp_path, qgis_app):
    values = np.random.default_rng(3).integers(1, 60000, (3, 70, 90), dtype=np.uint16)
    values[2, 10:20, 30:40] = 0  # nodata in one band only: the pixel is nodata (any band)
    path = _write(tmp_path / "image.tif", values, nodata=0)
    layer = _layer(path)
    grid = RasterGrid(90, 70, GEOTRANSFORM, layer.crs().toWkt())
    reader = ProviderWindowReader(layer.dataProvider().clone(), grid, (3, 1))
    data, valid = reader.read(5, 25, 30, 40)
    expected = gdal.Open(str(path)).ReadAsArray(25, 5, 40, 30)[[2, 0]]
    assert data.dtype == np.float32 and data.shape == (2, 30, 40)
    np.testing.assert_array_equal(data, expected.astype(np.float32))
    expected_valid = np.ones((30, 40), dtype=bool)
    expected_valid[5:15, 5:15] = False
    np.testing.assert_array_equal(valid, expected_valid)


def test_alpha_zeros_and_non_finite_values_are_nodata_read_as_zero(tmp_path, qgis_app):
    rgba = np.random.default_rng(4).integers(1, 256, (4, 20, 30), dtype=np.uint8)
    rgba[3] = 255
    rgba[3, :, :7] = 0
    layer = _layer(_write(tmp_path / "rgba.tif", rgba, alpha=True))
    grid = RasterGrid(30, 20, GEOTRANSFORM, layer.crs().toWkt())
    data, valid = ProviderWindowReader(layer.dataProvider(), grid, (1, 2, 3)).read(0, 0, 20, 30)
    assert not valid[:, :7].any() and valid[:, 7:].all()
    np.testing.assert_array_equal(data[:, :, 7:], rgba[:3, :, 7:].astype(np.float32))

    floats = np.ones((1, 20, 30), dtype=np.float32)
    floats[0, 2, 3], floats[0, 4, 5] = np.nan, np.inf
    layer = _layer(_write(tmp_path / "float.tif", floats))
    data, valid = ProviderWindowReader(layer.dataProvider(), grid, (1,)).read(0, 0, 20, 30)
    assert np.isfinite(data).all()
    assert data[0, 2, 3] == 0 and data[0, 4, 5] == 0
    assert (~valid).sum() == 2 and not valid[2, 3] and not valid[4, 5]


@pytest.fixture()
def scene(tmp_path):
    return write_scene(tmp_path / "scene.tif")


def test_read_extent_marks_the_outside_of_the_raster_as_nodata(scene, qgis_app):
    layer = QgsRasterLayer(str(scene), "scene", "gdal")
    reader = ProviderWindowReader(layer.dataProvider(), None, (3, 1))
    # 40 m x 40 m at the raster's 0.5 m, the right 15 m past its edge at X0 + 125 m.
    data, valid = reader.read_extent(QgsRectangle(X0 + 100, Y0 - 40, X0 + 140, Y0), 80, 80)
    image = gdal.Open(str(scene)).ReadAsArray()
    np.testing.assert_array_equal(data[:, :, :50], image[[2, 0], :80, 200:250])
    assert valid[:, :50].all() and not valid[:, 50:].any()
    assert (data[:, :, 50:] == 0).all()


def test_tiled_web_maps_are_read_at_about_their_tiles_pixel_size(tmp_path):
    """From QGIS 3.44 the provider snaps each tile to whole pixels of the requested image, so the
    reader asks for pixels about as fine as the tiles QGIS draws, never finer (more downloads)."""

    def factor(zmin: int, zmax: int, pixel_size: float) -> int:
        layer = _xyz_layer(tmp_path, zmin, zmax)  # the layer owns its provider: keep it alive
        reader = ProviderWindowReader(layer.dataProvider(), None, (1, 2, 3))
        extent = QgsRectangle(3628312.0, 39000.0, 3628312.0 + 100 * pixel_size, 39000.0 + 100 * pixel_size)
        return reader.supersampling(extent, 100, 100)

    assert factor(21, 21, 0.5) == 7  # only 7.5 cm tiles: read at 7.1 cm, sample every 7th pixel
    assert factor(0, 21, 0.5) == 1  # a full pyramid: the provider draws 60 cm (z18) tiles
    assert factor(0, 19, 0.1) == 1  # finer than the finest tiles: nothing to gain
    assert factor(12, 14, 300.0) == 8  # 38 m tiles at the coarsest (z12) under a 300 m grid
    assert factor(21, 21, 5.0) == 16  # at most 16 x 16 pixels read for one


def test_files_are_never_supersampled(scene, qgis_app):
    layer = QgsRasterLayer(str(scene), "scene", "gdal")
    reader = ProviderWindowReader(layer.dataProvider(), None, (1,))
    assert reader.tile_resolutions == []
    assert reader.supersampling(QgsRectangle(X0, Y0 - 50, X0 + 50, Y0), 10, 10) == 1
