"""A class raster to score (pytest-qgis): one band of unsigned whole numbers, its class names less
its nodata value."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, osr
from qgis.core import QgsRasterLayer

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues
from rsdl_qgis_plugin.qgis_io.class_raster import check_class_raster, class_raster_names, open_class_raster
from rsdl_qgis_plugin.qgis_io.raster_description import apply_description, class_raster_description


def _raster(path, bands: int = 1, data_type: int = gdal.GDT_Byte, nodata: float | None = None, fill=True):
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 8, 6, bands, data_type)
    dataset.SetGeoTransform((500000.0, 1.0, 0.0, 5800000.0, 0.0, -1.0))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    dataset.SetProjection(srs.ExportToWkt())
    for band in range(1, bands + 1):
        if fill:
            dataset.GetRasterBand(band).WriteArray(np.arange(48).reshape(6, 8) % 3)
        if nodata is not None:
            dataset.GetRasterBand(band).SetNoDataValue(nodata)
    return dataset


@pytest.mark.parametrize("data_type", [gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_UInt32])
def test_one_band_of_unsigned_numbers_is_a_class_raster(tmp_path, data_type, qgis_app):
    _raster(tmp_path / "classes.tif", data_type=data_type).FlushCache()
    layer = QgsRasterLayer(str(tmp_path / "classes.tif"), "classes", "gdal")
    dataset = open_class_raster(layer)
    assert dataset.RasterCount == 1 and dataset.GetRasterBand(1).DataType == data_type
    assert dataset.GetRasterBand(1).ReadAsArray()[0].tolist() == [0, 1, 2, 0, 1, 2, 0, 1]


def test_several_bands_are_refused(tmp_path, qgis_app):
    path = tmp_path / "rgb.tif"
    _raster(path, bands=3).FlushCache()
    layer = QgsRasterLayer(str(path), "my image", "gdal")
    with pytest.raises(RsdlError, match=r"PREDICTION: 'my image' has 3 bands; a class raster has one band"):
        open_class_raster(layer)


@pytest.mark.parametrize(("data_type", "name"), [(gdal.GDT_Float32, "Float32"), (gdal.GDT_Int16, "Int16")])
def test_other_value_types_are_refused_by_name(tmp_path, data_type, name):
    dataset = _raster(tmp_path / "values.tif", data_type=data_type)
    with pytest.raises(RsdlError, match=rf"PREDICTION: 'heights' holds {name} values; a class raster holds"):
        check_class_raster(dataset, "heights")


def test_category_names_less_the_nodata_value(tmp_path):
    dataset = _raster(tmp_path / "named.tif", nodata=2)
    dataset.GetRasterBand(1).SetCategoryNames(["background", "building", "nodata"])
    assert class_raster_names(dataset) == {0: "background", 1: "building"}
    dataset.GetRasterBand(1).DeleteNoDataValue()
    assert class_raster_names(dataset) == {0: "background", 1: "building", 2: "nodata"}


def test_rsdl_metadata_names_the_classes_and_background(tmp_path):
    # Described before any pixel is written, as rsdl's writers do: GDAL >= 3.10 refuses a colour
    # table on a GeoTIFF whose pixels are being written.
    dataset = _raster(tmp_path / "rsdl.tif", nodata=255, fill=False)
    classes = [LabelClass(1, "building", "#ff0000"), LabelClass(2, "water", "#0000ff")]
    apply_description(dataset, class_raster_description(classes, MaskValues(0, 255)))
    dataset.GetRasterBand(1).WriteArray(np.arange(48).reshape(6, 8) % 3)
    assert class_raster_names(dataset) == {0: "background", 1: "building", 2: "water"}
