"""Window bounds of a raster grid (core/raster/grid.py), against GDAL's geotransform convention."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsdl_qgis_plugin.core.errors import GridError
from rsdl_qgis_plugin.core.raster.grid import RasterGrid

gdal = pytest.importorskip("osgeo.gdal", reason="GDAL is the oracle of the geotransform convention")

GEOTRANSFORMS = [
    (500000.0, 0.3, 0.0, 5400000.0, 0.0, -0.3),  # UTM, 30 cm: 0.3 is not exact in binary
    (355123.37, 0.1, 0.0, 4100000.7, 0.0, -0.25),  # non-square pixels
    (-180.0, 2.7e-6, 0.0, 90.0, 0.0, -2.7e-6),  # degrees
    (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
]


def gdal_corner(geotransform, col: int, row: int) -> tuple[float, float]:
    """Map coordinates of pixel corner (col, row) as GDAL computes them."""
    return tuple(gdal.ApplyGeoTransform(list(geotransform), col, row))


@settings(max_examples=200, deadline=None)
@given(
    geotransform=st.sampled_from(GEOTRANSFORMS),
    row=st.integers(-64, 4000),
    col=st.integers(-64, 4000),
    rows=st.integers(1, 600),
    cols=st.integers(1, 600),
)
def test_window_bounds_are_gdal_pixel_corners(geotransform, row, col, rows, cols):
    grid = RasterGrid(4000, 4000, geotransform, "WKT")
    x_left, y_top = gdal_corner(geotransform, col, row)
    x_right, y_bottom = gdal_corner(geotransform, col + cols, row + rows)

    assert grid.window_bounds(row, col, rows, cols) == (x_left, y_bottom, x_right, y_top)


@pytest.mark.parametrize("geotransform", GEOTRANSFORMS)
def test_window_geotransform_and_window_grid_match_a_gdal_cut(geotransform):
    grid = RasterGrid(300, 200, geotransform, "WKT")
    source = gdal.GetDriverByName("MEM").Create("", grid.width, grid.height, 1, gdal.GDT_Byte)
    source.SetGeoTransform(geotransform)
    row, col, rows, cols = 37, 150, 64, 48
    cut = gdal.Translate("", source, format="MEM", srcWin=[col, row, cols, rows])

    assert grid.window_geotransform(col, row) == cut.GetGeoTransform()
    window = grid.window_grid(row, col, rows, cols)
    assert (window.width, window.height) == (cut.RasterXSize, cut.RasterYSize)
    # The cut file's own extent (origin plus its size in pixels), as GDAL reports it.
    x0, dx, _, y0, _, dy = cut.GetGeoTransform()
    assert window.bounds == (x0, y0 + rows * dy, x0 + cols * dx, y0)


def test_neighbouring_windows_share_their_edges_exactly():
    grid = RasterGrid(1000, 1000, GEOTRANSFORMS[0], "WKT")
    _, _, right, _ = grid.window_bounds(0, 0, 256, 256)
    left, _, _, _ = grid.window_bounds(0, 256, 256, 256)
    _, bottom, _, _ = grid.window_bounds(0, 0, 256, 256)
    _, _, _, top = grid.window_bounds(256, 0, 256, 256)
    assert (right, bottom) == (left, top)


def test_whole_grid_window_is_the_grid_bounds():
    grid = RasterGrid.from_extent(10.0, 20.0, 110.0, 70.3, 0.5, "WKT")  # 101 rows reach below 20
    assert grid.bounds == grid.window_bounds(0, 0, grid.height, grid.width)
    assert grid.bounds == pytest.approx((10.0, 70.3 - 101 * 0.5, 110.0, 70.3))


def test_grid_from_extent_and_validation():
    grid = RasterGrid.from_extent(0, 0, 100, 50.5, 1.0, "WKT")
    assert (grid.width, grid.height) == (100, 51)
    assert grid.bounds == (0, 50.5 - 51, 100, 50.5)
    assert grid.window_geotransform(10, 5) == (10.0, 1.0, 0.0, 45.5, 0.0, -1.0)
    with pytest.raises(GridError, match="rotated"):
        RasterGrid(10, 10, (0, 1, 0.1, 0, 0, -1), "WKT")
    with pytest.raises(GridError, match="no coordinate reference system"):
        RasterGrid(10, 10, (0, 1, 0, 0, 0, -1), "")
    with pytest.raises(GridError, match="empty"):
        RasterGrid(0, 10, (0, 1, 0, 0, 0, -1), "WKT")
