"""The GDAL stripe reader gives exactly the provider reader's tiles, or is not used at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsRasterLayer, QgsRasterRange

from rsdl_qgis_plugin.core.raster.grid import RasterGrid
from rsdl_qgis_plugin.core.tiling.plan import TilePlan
from rsdl_qgis_plugin.qgis_io.processing_grid import processing_grid
from rsdl_qgis_plugin.qgis_io.provider_reader import ProviderWindowReader
from rsdl_qgis_plugin.qgis_io.stripe_reader import MAX_RELEASED_BLOCK_ROWS, stripe_reader_factory
from tests.rasters import write_geotiff


def _layer(path: Path) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(path), path.stem, "gdal")
    assert layer.isValid(), path
    return layer


def _window_grid(layer: QgsRasterLayer, col: int, row: int, width: int, height: int) -> RasterGrid:
    own, _ = processing_grid(layer, None, None, False)
    return RasterGrid(width, height, own.window_geotransform(col, row), own.crs_wkt)


def _assert_same_tiles(
    layer: QgsRasterLayer, grid: RasterGrid, bands: tuple[int, ...], tile: int, nodata: bool
) -> None:
    """Every tile of a plan (edge and partial tiles included) reads the same through both readers;
    ``nodata``: whether some pixel is nodata."""
    factory = stripe_reader_factory(layer, grid, bands)
    assert factory is not None, "the stripe reader should serve this raster"
    stripe = factory()
    provider = ProviderWindowReader(layer.dataProvider().clone(), grid, bands)
    plan = TilePlan(grid.width, grid.height, tile, tile // 4)
    partial = invalid = 0
    for window in plan.tiles:
        row, col, rows, cols = window.read_window(grid.width, grid.height)
        partial += (rows, cols) != (tile, tile)
        fast_data, fast_valid = stripe.read(row, col, rows, cols)
        data, valid = provider.read(row, col, rows, cols)
        np.testing.assert_array_equal(fast_valid, valid)
        invalid += int((~valid).sum())
        # The engine converts to float32 when it normalises; the provider reader already has.
        fast = fast_data.astype(np.float32)
        assert fast.tobytes() == data.tobytes(), f"tile {window.index} differs"
    assert partial, "the plan should hold partial tiles at the raster's edges"
    assert bool(invalid) == nodata


@pytest.mark.parametrize(
    ("relative", "bands", "nodata"),
    [
        ("rasterio_rgb/RGB.byte.tif", (1, 2, 3), True),  # uint8, nodata 0 (a black collar)
        ("rasterio_rgb/RGB.byte.tif", (3, 1), True),  # a subset of bands, reordered
        ("solaris_atlanta/sample_geotiff.tif", (1,), False),  # uint16, nodata 0 declared, unused
        ("deepness_peer/dummy_fotomap_small.tif", (1, 2, 3), False),  # uint8 + alpha band, all opaque
        ("rsgislib_aber_s2/sen2_20210527_aber_mosaic.vrt", (3, 2, 1), False),  # a VRT mosaic, uint16
    ],
)
def test_stripe_tiles_equal_provider_tiles(relative, bands, nodata, shared_data, qgis_app):
    layer = _layer(shared_data / relative)
    grid, resampled = processing_grid(layer, None, None, False)
    assert not resampled
    _assert_same_tiles(layer, grid, bands, tile=96, nodata=nodata)


def test_a_window_of_the_raster_reads_the_same(shared_data, qgis_app):
    layer = _layer(shared_data / "rasterio_rgb/RGB.byte.tif")
    _assert_same_tiles(layer, _window_grid(layer, 37, 21, 301, 257), (1, 2, 3), tile=64, nodata=True)


def _write(path: Path, values: np.ndarray, nodata: float | None = None, alpha: bool = False) -> Path:
    """A small GeoTIFF in UTM 36N; with ``alpha`` the last band is an alpha band."""
    return write_geotiff(path, values, (500000.0, 2.0, 0.0, 100000.0, 0.0, -2.0), 32636, nodata, alpha)


def test_float_raster_with_nan_nodata_and_infinities(tmp_path, qgis_app):
    values = np.random.default_rng(1).normal(size=(2, 150, 170)).astype(np.float32)
    values[:, 10:40, 20:60] = np.nan
    values[0, 100:105, 3] = np.inf
    values[1, 7, 150:160] = -np.inf
    layer = _layer(_write(tmp_path / "float.tif", values, nodata=float("nan")))
    grid, _ = processing_grid(layer, None, None, False)
    _assert_same_tiles(layer, grid, (1, 2), tile=64, nodata=True)


def test_alpha_band_zeros_are_nodata(tmp_path, qgis_app):
    values = np.random.default_rng(2).integers(0, 256, (4, 130, 140), dtype=np.uint8)
    values[3] = 255
    values[3, 50:90, :33] = 0
    layer = _layer(_write(tmp_path / "alpha.tif", values, alpha=True))
    grid, _ = processing_grid(layer, None, None, False)
    _assert_same_tiles(layer, grid, (1, 2, 3), tile=64, nodata=True)


def test_rasters_the_provider_changes_stay_on_the_provider_path(shared_data, tmp_path, qgis_app):
    source = gdal.Open(str(shared_data / "rasterio_rgb/RGB.byte.tif"))
    scaled = tmp_path / "scaled.tif"
    gdal.Translate(str(scaled), source, options="-a_scale 2 -a_offset 1")
    masked = tmp_path / "masked.tif"  # a per-dataset mask band: QGIS shows it as an alpha band
    gdal.Translate(str(masked), source, options="-a_nodata none -mask 1")
    for path in (scaled, masked):
        layer = _layer(path)
        grid, _ = processing_grid(layer, None, None, False)
        assert stripe_reader_factory(layer, grid, (1, 2, 3)) is None, path.name

    layer = _layer(shared_data / "rasterio_rgb/RGB.byte.tif")
    own, _ = processing_grid(layer, None, None, False)
    x0, dx, _, y0, _, dy = own.geotransform
    half_pixel = RasterGrid(100, 100, (x0 + dx / 2, dx, 0.0, y0, 0.0, dy), own.crs_wkt)
    coarser = RasterGrid(100, 100, (x0, 2 * dx, 0.0, y0, 0.0, 2 * dy), own.crs_wkt)
    for grid in (half_pixel, coarser):
        assert stripe_reader_factory(layer, grid, (1, 2, 3)) is None

    layer.dataProvider().setUserNoDataValue(1, [QgsRasterRange(0, 10)])
    assert stripe_reader_factory(layer, own, (1, 2, 3)) is None


class _RecordedReads:
    """A GDAL dataset whose ReadAsArray calls are recorded as (first row, rows)."""

    def __init__(self, dataset: gdal.Dataset) -> None:
        self.dataset = dataset
        self.reads: list[tuple[int, int]] = []

    def ReadAsArray(self, xoff, yoff, xsize, ysize, **kwargs):
        self.reads.append((yoff, ysize))
        return self.dataset.ReadAsArray(xoff, yoff, xsize, ysize, **kwargs)

    def __getattr__(self, name):
        return getattr(self.dataset, name)


@pytest.mark.parametrize("window", [None, (37, 101, 1500, 1700)])
def test_each_block_is_decoded_once_and_gdal_keeps_no_blocks(window, tmp_path, qgis_app):
    """Memory does not grow with the height whatever GDAL's cache size: after every stripe GDAL's
    own cache accounting (gdal.GetCacheUsed) is back to what it was, every row is read once, and
    every read but the first starts on a block-row boundary of the file."""
    values = np.random.default_rng(7).integers(0, 256, (3, 2048, 1800), dtype=np.uint8)
    path = tmp_path / "tiled.tif"
    gdal.Translate(
        str(path),
        str(write_geotiff(tmp_path / "plain.tif", values, (500000.0, 2.0, 0.0, 100000.0, 0.0, -2.0), 32636)),
        creationOptions=["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE"],
    )
    layer = _layer(path)
    grid = processing_grid(layer, None, None, False)[0] if window is None else _window_grid(layer, *window)
    col_off, row_off = (0, 0) if window is None else window[:2]
    stripe = stripe_reader_factory(layer, grid, (1, 2, 3))()
    recorded = stripe.dataset = _RecordedReads(stripe.dataset)
    before_max = gdal.GetCacheMax()
    gdal.SetCacheMax(1 << 30)  # as QGIS's default on a large machine: room for the whole raster
    try:
        baseline = gdal.GetCacheUsed()
        plan = TilePlan(grid.width, grid.height, 256, 32)
        for tile in plan.tiles:
            row, col, rows, cols = tile.read_window(grid.width, grid.height)
            data, _ = stripe.read(row, col, rows, cols)
            expected = values[:, row_off + row : row_off + row + rows, col_off + col : col_off + col + cols]
            np.testing.assert_array_equal(data, expected)
            assert gdal.GetCacheUsed() == baseline
    finally:
        gdal.SetCacheMax(before_max)
    starts = [yoff for yoff, _ in recorded.reads]
    assert sum(rows for _, rows in recorded.reads) == grid.height
    assert all(start % 256 == 0 for start in starts[1:]), starts


def test_a_whole_image_strip_stays_with_gdals_cache(tmp_path, qgis_app):
    """A block taller than MAX_RELEASED_BLOCK_ROWS is neither read to its end nor dropped (dropping it
    would decode it again for every stripe); the pixels are the same."""
    values = np.random.default_rng(8).integers(0, 256, (3, 1200, 300), dtype=np.uint8)
    path = tmp_path / "one_strip.tif"
    plain = write_geotiff(tmp_path / "plain.tif", values, (500000.0, 2.0, 0.0, 100000.0, 0.0, -2.0), 32636)
    gdal.Translate(str(path), str(plain), creationOptions=["COMPRESS=DEFLATE", "BLOCKYSIZE=1200"])
    layer = _layer(path)
    grid = processing_grid(layer, None, None, False)[0]
    stripe = stripe_reader_factory(layer, grid, (1, 2, 3))()
    assert stripe.block_rows == 1200 > MAX_RELEASED_BLOCK_ROWS
    recorded = stripe.dataset = _RecordedReads(stripe.dataset)
    for tile in TilePlan(grid.width, grid.height, 128, 16).tiles:
        row, col, rows, cols = tile.read_window(grid.width, grid.height)
        np.testing.assert_array_equal(
            stripe.read(row, col, rows, cols)[0], values[:, row : row + rows, col : col + cols]
        )
    assert max(rows for _, rows in recorded.reads) <= 128
