"""qgis_io/mask_writer.py: label masks burnt from an OGR layer, with gdal.Rasterize into MEM as the
oracle for the pixels and numpy for the class counts."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues
from rsdl_qgis_plugin.core.raster.grid import RasterGrid
from rsdl_qgis_plugin.qgis_io import mask_writer
from rsdl_qgis_plugin.qgis_io.label_features import BURN_FIELD
from rsdl_qgis_plugin.qgis_io.mask_writer import BurnOptions, write_label_mask

X0, Y0, PIXEL = 400000.0, 5000000.0, 1.0
WIDTH, HEIGHT = 60, 50


def _srs() -> osr.SpatialReference:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    return srs


def _grid() -> RasterGrid:
    return RasterGrid(WIDTH, HEIGHT, (X0, PIXEL, 0.0, Y0, 0.0, -PIXEL), _srs().ExportToWkt())


def _labels(values: tuple[int, int] = (1, 2)) -> ogr.DataSource:
    """Two overlapping triangles (edges through pixels, so ALL_TOUCHED matters) in a Memory layer."""
    source = ogr.GetDriverByName("Memory").CreateDataSource("labels")
    layer = source.CreateLayer("labels", _srs(), ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(BURN_FIELD, ogr.OFTInteger64))
    corners = [
        ((3.3, 4.1), (40.7, 9.2), (12.5, 44.6)),
        ((20.2, 20.9), (58.1, 25.3), (35.4, 48.8)),
    ]
    shapes = [
        "POLYGON((" + ", ".join(f"{X0 + east} {Y0 - south}" for east, south in (*ring, ring[0])) + "))"
        for ring in corners
    ]
    for value, wkt in zip(values, shapes):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField(BURN_FIELD, value)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    return source


def _oracle(source: ogr.DataSource, fill: int, all_touched: bool) -> np.ndarray:
    target = gdal.GetDriverByName("MEM").Create("", WIDTH, HEIGHT, 1, gdal.GDT_UInt32)
    target.SetGeoTransform(_grid().geotransform)
    target.SetProjection(_grid().crs_wkt)
    target.GetRasterBand(1).Fill(fill)
    options = [f"ATTRIBUTE={BURN_FIELD}"] + (["ALL_TOUCHED=TRUE"] if all_touched else [])
    assert gdal.RasterizeLayer(target, [1], source.GetLayer(0), options=options) == gdal.CE_None
    return target.ReadAsArray()


CLASSES = [LabelClass(1, "road", "#ff0000"), LabelClass(2, "field", "#00ff00")]


@pytest.mark.parametrize("all_touched", [False, True])
def test_the_mask_is_gdals_rasterization_and_the_counts_are_its_pixels(tmp_path, all_touched):
    source = _labels()
    values = MaskValues(background_value=0, ignore_value=255)
    path = tmp_path / "mask.tif"
    statistics = write_label_mask(
        source.GetLayer(0), CLASSES, _grid(), values, BurnOptions(all_touched=all_touched), path
    )
    dataset = gdal.Open(str(path))
    mask = dataset.ReadAsArray()
    expected = _oracle(source, 0, all_touched)
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask)) == {0, 1, 2}
    counts = np.bincount(mask.ravel())
    assert statistics.counts == {v: int(counts[v]) for v in (0, 1, 2)}
    assert statistics.ignored == 0
    band = dataset.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte
    assert band.GetNoDataValue() == 255
    assert band.GetCategoryNames()[:3] == ["background", "road", "field"]
    assert band.GetColorTable().GetColorEntry(2) == (0, 255, 0, 255)
    assert dataset.GetGeoTransform() == _grid().geotransform
    assert leftover_temporaries(tmp_path) == []
    assert {p.name for p in tmp_path.iterdir()} <= {"mask.tif", "mask.tif.aux.xml"}


def test_all_touched_burns_more_pixels(tmp_path):
    source = _labels()  # the layer lives as long as its data source
    plain = write_label_mask(
        source.GetLayer(0), CLASSES, _grid(), MaskValues(), BurnOptions(), tmp_path / "a.tif"
    )
    touched = write_label_mask(
        source.GetLayer(0), CLASSES, _grid(), MaskValues(), BurnOptions(True), tmp_path / "b.tif"
    )
    assert touched.labelled_pixels == plain.labelled_pixels == WIDTH * HEIGHT  # background included
    assert touched.counts[0] < plain.counts[0]


def test_reference_nodata_becomes_the_ignore_value_and_large_values_widen_the_type(tmp_path, monkeypatch):
    reference = gdal.GetDriverByName("MEM").Create("", WIDTH, HEIGHT, 2, gdal.GDT_Byte)
    reference.SetGeoTransform(_grid().geotransform)
    image = np.full((2, HEIGHT, WIDTH), 9, dtype=np.uint8)
    image[1, 30:, :25] = 0  # nodata in the second band only
    for index in (1, 2):
        reference.GetRasterBand(index).WriteArray(image[index - 1])
        reference.GetRasterBand(index).SetNoDataValue(0)
    monkeypatch.setattr(mask_writer, "ROWS_PER_PASS", 7)  # several passes, the last one short
    classes = [LabelClass(300, "big", "#0000ff"), LabelClass(2, "field", "#00ff00")]
    source = _labels((300, 2))
    values = MaskValues(background_value=0, ignore_value=1000, unlabelled_is_ignore=False)
    path = tmp_path / "mask.tif"
    statistics = write_label_mask(
        source.GetLayer(0), classes, _grid(), values, BurnOptions(), path, reference
    )

    dataset = gdal.Open(str(path))
    assert dataset.GetRasterBand(1).DataType == gdal.GDT_UInt16
    expected = _oracle(source, 0, False)
    expected[30:, :25] = 1000
    np.testing.assert_array_equal(dataset.ReadAsArray(), expected)
    assert statistics.ignored == 20 * 25
    assert statistics.counts[300] == int((expected == 300).sum())


def test_unlabelled_area_can_be_the_ignore_value(tmp_path):
    values = MaskValues(background_value=0, ignore_value=255, unlabelled_is_ignore=True)
    source = _labels()
    path = tmp_path / "sparse.tif"
    statistics = write_label_mask(source.GetLayer(0), CLASSES, _grid(), values, BurnOptions(), path)
    np.testing.assert_array_equal(gdal.Open(str(path)).ReadAsArray(), _oracle(source, 255, False))
    assert 0 not in statistics.counts
    assert statistics.ignored == int((_oracle(source, 255, False) == 255).sum())
