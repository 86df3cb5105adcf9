"""qgis_io/chip_index.py: the chip index GeoPackage, read back with OGR; footprints against each
chip file's extent as GDAL reports it."""

from __future__ import annotations

from pathlib import Path

import pytest
from osgeo import gdal, ogr, osr

from rsdl_qgis_plugin.core.datasets.chip_folder import INDEX_LAYER, ChipRecord
from rsdl_qgis_plugin.core.datasets.chips import ChipWindow, Split
from rsdl_qgis_plugin.core.errors import CancelledError
from rsdl_qgis_plugin.core.raster.grid import RasterGrid
from rsdl_qgis_plugin.qgis_io.chip_index import footprint, write_chip_index

# Binary-unfriendly origin and pixel size: a footprint computed another way would differ in the
# last bits.
GEOTRANSFORM = (512345.67, 0.3, 0.0, 4123456.78, 0.0, -0.3)
SIZE = 16


def _srs() -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32617)
    return srs


def _grid() -> RasterGrid:
    return RasterGrid(100, 60, GEOTRANSFORM, _srs().ExportToWkt())


def _chip_files(folder: Path, windows: list[ChipWindow]) -> dict[str, Path]:
    """Each window cut from a source raster by gdal.Translate (the oracle's own chip files)."""
    source = gdal.GetDriverByName("MEM").Create("", 100, 60, 1, gdal.GDT_Byte)
    source.SetGeoTransform(GEOTRANSFORM)
    source.SetProjection(_srs().ExportToWkt())
    files = {}
    for window in windows:
        path = folder / f"{window.chip_id}.tif"
        gdal.Translate(str(path), source, srcWin=[window.col, window.row, window.size, window.size])
        files[window.chip_id] = path
    return files


def _records(windows: list[ChipWindow]) -> list[ChipRecord]:
    return [
        ChipRecord(
            windows[0], Split.TRAIN, "images/a.tif", "masks/a.tif", None, None, None, {1: 100, 3: 50}, 6
        ),
        ChipRecord(
            windows[1], Split.VAL, "images/b.tif", None, "classification/x/b.tif", 3, "water", {3: 256}
        ),
        ChipRecord(windows[2], Split.TEST, None, "masks/c.tif", None, None, None, {}, 256),
    ]


WINDOWS = [ChipWindow(0, 0, SIZE), ChipWindow(16, 48, SIZE), ChipWindow(44, 84, SIZE)]


def test_footprints_are_the_chip_files_extents_to_the_last_bit(tmp_path):
    files = _chip_files(tmp_path, WINDOWS)
    path = tmp_path / "index.gpkg"
    write_chip_index(path, _records(WINDOWS), _grid(), _grid().crs_wkt, [1, 3])
    datasource = ogr.Open(str(path))
    layer = datasource.GetLayerByName(INDEX_LAYER)
    assert layer.GetFeatureCount() == 3
    assert layer.GetSpatialRef().IsSame(_srs())
    for feature in layer:
        chip = gdal.Open(str(files[feature["chip_id"]]))
        x0, dx, _, y0, _, dy = chip.GetGeoTransform()
        xmin, xmax, ymin, ymax = feature.GetGeometryRef().GetEnvelope()
        assert (xmin, ymax) == (x0, y0)
        assert (xmax, ymin) == (x0 + chip.RasterXSize * dx, y0 + chip.RasterYSize * dy)
        assert feature.GetGeometryRef().GetArea() == pytest.approx((SIZE * 0.3) ** 2)


def test_every_field_of_every_record(tmp_path):
    path = tmp_path / "index.gpkg"
    write_chip_index(path, _records(WINDOWS), _grid(), _grid().crs_wkt, [1, 3])
    datasource = ogr.Open(str(path))
    layer = datasource.GetLayerByName(INDEX_LAYER)
    rows = {feature["chip_id"]: feature for feature in layer}
    first, second, third = (rows[w.chip_id] for w in WINDOWS)
    assert (first["split"], first["row_off"], first["col_off"], first["size"]) == ("train", 0, 0, SIZE)
    assert (first["image"], first["mask"]) == ("images/a.tif", "masks/a.tif")
    assert (
        first.IsFieldNull("class_image")
        and first.IsFieldNull("chip_class")
        and first.IsFieldNull("class_value")
    )
    assert (first["px_1"], first["px_3"]) == (100, 50)
    assert first["labelled_frac"] == pytest.approx(150 / 256) and first["ignored_frac"] == pytest.approx(
        6 / 256
    )
    assert (second["split"], second["row_off"], second["col_off"]) == ("val", 16, 48)
    assert (second["class_image"], second["chip_class"], second["class_value"]) == (
        "classification/x/b.tif",
        "water",
        3,
    )
    assert second.IsFieldNull("mask") and (second["px_1"], second["px_3"]) == (0, 256)
    assert third["split"] == "test" and third.IsFieldNull("image") and third["ignored_frac"] == 1.0


def test_footprint_of_one_window_is_a_closed_ring(qgis_app):
    polygon = footprint(_grid(), _records(WINDOWS)[1])
    ring = polygon.GetGeometryRef(0)
    assert ring.GetPointCount() == 5 and ring.GetPoint_2D(0) == ring.GetPoint_2D(4)
    assert polygon.IsValid()


def test_cancel_stops_the_index(tmp_path, qgis_app):
    from qgis.core import QgsFeedback

    feedback = QgsFeedback()
    feedback.cancel()
    with pytest.raises(CancelledError):
        write_chip_index(tmp_path / "index.gpkg", _records(WINDOWS), _grid(), _grid().crs_wkt, [1], feedback)
