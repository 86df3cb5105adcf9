"""qgis_io/raster_writer.py: GeoTIFFs written row by row, complete or absent, read back by GDAL."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, osr

from rsdl_qgis_plugin.core.files.atomic_output import AtomicOutputs, leftover_temporaries
from rsdl_qgis_plugin.core.raster.grid import RasterGrid
from rsdl_qgis_plugin.qgis_io.raster_description import RasterDescription
from rsdl_qgis_plugin.qgis_io.raster_writer import ROWS_PER_STRIP, GeoTiffRowWriter


def _grid(width: int = 45, height: int = 75) -> RasterGrid:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32636)
    return RasterGrid(width, height, (500000.125, 0.3, 0.0, 4000000.7, 0.0, -0.3), srs.ExportToWkt())


def _values(grid: RasterGrid, bands: int, dtype) -> np.ndarray:
    rng = np.random.default_rng(5)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=(bands, grid.height, grid.width)).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, (bands, grid.height, grid.width), dtype=dtype)


@pytest.mark.parametrize(
    ("dtype", "gdal_type"), [(np.float32, gdal.GDT_Float32), (np.uint16, gdal.GDT_UInt16)]
)
def test_rows_in_uneven_pieces_are_written_exactly(tmp_path, dtype, gdal_type):
    grid = _grid()
    values = _values(grid, 2, dtype)
    path = tmp_path / "out.tif"
    description = RasterDescription(nodata=7, metadata={"KEY": "value"}, band_descriptions=["a", "b"])
    # Pieces that end inside strips, one that spans two strips and a single row.
    cuts = [0, 5, 6, 31, 70, grid.height]
    with GeoTiffRowWriter(path, grid, 2, dtype, description) as writer:
        for first, last in zip(cuts, cuts[1:]):
            writer.write_rows(first, values[:, first:last])
        assert not path.exists()  # only the temporary exists while writing

    dataset = gdal.Open(str(path))
    np.testing.assert_array_equal(dataset.ReadAsArray(), values)
    assert dataset.GetGeoTransform() == grid.geotransform
    assert osr.SpatialReference(dataset.GetProjection()).GetAuthorityCode(None) == "32636"
    band = dataset.GetRasterBand(1)
    assert band.DataType == gdal_type
    assert band.GetBlockSize() == [grid.width, ROWS_PER_STRIP]
    assert dataset.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
    assert [dataset.GetRasterBand(i).GetNoDataValue() for i in (1, 2)] == [7, 7]
    assert [dataset.GetRasterBand(i).GetDescription() for i in (1, 2)] == ["a", "b"]
    assert dataset.GetMetadataItem("KEY") == "value"
    assert leftover_temporaries(tmp_path) == []


def test_an_exception_leaves_no_file_and_keeps_an_older_one(tmp_path):
    grid = _grid()
    path = tmp_path / "out.tif"
    path.write_bytes(b"older output")
    with pytest.raises(KeyError), GeoTiffRowWriter(path, grid, 1, np.uint8) as writer:
        writer.write_rows(0, np.ones((1, 40, grid.width), np.uint8))
        raise KeyError("stop")
    assert path.read_bytes() == b"older output"
    assert leftover_temporaries(tmp_path) == []


def test_missing_rows_and_rows_out_of_order_are_refused(tmp_path):
    grid = _grid()
    short = GeoTiffRowWriter(tmp_path / "short.tif", grid, 1, np.uint8)
    with pytest.raises(ValueError, match="received 40 of 75 rows"), short as writer:
        writer.write_rows(0, np.ones((1, 40, grid.width), np.uint8))
    gap = GeoTiffRowWriter(tmp_path / "gap.tif", grid, 1, np.uint8)
    with pytest.raises(ValueError, match="got row 12, expected 10"), gap as writer:
        writer.write_rows(0, np.ones((1, 10, grid.width), np.uint8))
        writer.write_rows(12, np.ones((1, 10, grid.width), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_in_a_group_the_file_appears_when_the_group_commits(tmp_path):
    grid = _grid(10, 3)
    path = tmp_path / "grouped.tif"
    with AtomicOutputs() as outputs:
        with GeoTiffRowWriter(path, grid, 1, np.uint8, outputs=outputs) as writer:
            writer.write_rows(0, np.arange(30, dtype=np.uint8).reshape(1, 3, 10))
        assert not path.exists()
        assert gdal.Open(str(outputs.temporary(path))).ReadAsArray().sum() == sum(range(30))
    np.testing.assert_array_equal(gdal.Open(str(path)).ReadAsArray(), np.arange(30).reshape(3, 10))
    assert leftover_temporaries(tmp_path) == []


def test_written_strips_leave_gdal_block_cache(tmp_path):
    """Each strip goes to the file and out of GDAL's block cache at once: under the default cache
    (5% of RAM, as in QGIS) the blocks of the whole raster would stay there until the file closes."""
    grid = _grid(2048, 12 * ROWS_PER_STRIP)
    values = _values(grid, 2, np.uint8)
    strip_bytes = values[:, :ROWS_PER_STRIP].nbytes
    cache_max = gdal.GetCacheMax()
    gdal.SetCacheMax(1 << 30)  # far more than the raster: nothing forces GDAL to write blocks early
    try:
        base = gdal.GetCacheUsed()
        growth = []
        with GeoTiffRowWriter(tmp_path / "out.tif", grid, 2, np.uint8) as writer:
            for first in range(0, grid.height, 20):  # pieces that end inside strips
                writer.write_rows(first, values[:, first : first + 20])
                growth.append(gdal.GetCacheUsed() - base)
    finally:
        gdal.SetCacheMax(cache_max)
    assert max(growth) < strip_bytes, f"GDAL's cache grew by {max(growth)} bytes (one strip: {strip_bytes})"
    np.testing.assert_array_equal(gdal.Open(str(tmp_path / "out.tif")).ReadAsArray(), values)
