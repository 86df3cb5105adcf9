"""qgis_io/mask_description.py: what a label mask means, from rsdl's metadata or from a foreign
mask's nodata, category names, attribute table and colour table (all written here through GDAL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues, default_class_color
from rsdl_qgis_plugin.qgis_io.mask_description import (
    MaskDescription,
    band_class_names,
    check_mask_raster,
    class_names,
    describe_mask,
)
from rsdl_qgis_plugin.qgis_io.raster_description import (
    CLASSES_METADATA_KEY,
    apply_description,
    class_raster_description,
)

CLASSES = [LabelClass(2, "road", "#aabbcc"), LabelClass(7, "roof", "#112233")]


def _mask(path: Path, gdal_type=gdal.GDT_Byte, bands: int = 1) -> gdal.Dataset:
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 6, 5, bands, gdal_type)
    dataset.GetRasterBand(1).WriteArray(np.zeros((5, 6)))
    return dataset


@pytest.mark.parametrize(
    "values",
    [
        MaskValues(background_value=0, ignore_value=255),
        MaskValues(background_value=3, ignore_value=9),
        MaskValues(background_value=0, ignore_value=0, unlabelled_is_ignore=True),
    ],
)
def test_rsdl_masks_round_trip_whatever_the_defaults_say(tmp_path, values):
    path = tmp_path / "mask.tif"
    dataset = _mask(path)
    apply_description(dataset, class_raster_description(CLASSES, values))
    dataset = None
    # The defaults given are the opposite of what the mask says: its metadata wins.
    described = describe_mask(gdal.Open(str(path)), "mask", 1, 254, not values.unlabelled_is_ignore)
    assert described == MaskDescription(CLASSES, values)


def test_class_names_include_the_background_of_rsdl_masks(tmp_path):
    path = tmp_path / "mask.tif"
    dataset = _mask(path)
    apply_description(dataset, class_raster_description(CLASSES, MaskValues(background_value=4)))
    dataset = None
    assert class_names(gdal.Open(str(path))) == {2: "road", 4: "background", 7: "roof"}


def test_foreign_masks_take_nodata_category_names_and_colours(tmp_path):
    dataset = _mask(tmp_path / "foreign.tif")
    band = dataset.GetRasterBand(1)
    band.SetNoDataValue(9)
    band.SetCategoryNames(["unlabelled", "forest", "", "urban", "", "", "", "", "", "nodata", "lake"])
    table = gdal.ColorTable()
    table.SetColorEntry(1, (0, 128, 0, 255))
    table.SetColorEntry(3, (200, 10, 20, 255))
    band.SetColorTable(table)
    described = describe_mask(dataset, "foreign", 0, 255, False)
    # The nodata value is the ignore value; 0 (background) and 9 (ignore) are no classes; 10 lies
    # past the colour table and gets the default colour.
    assert described.values == MaskValues(background_value=0, ignore_value=9)
    assert described.classes == [
        LabelClass(1, "forest", "#008000"),
        LabelClass(3, "urban", "#c80a14"),
        LabelClass(10, "lake", default_class_color("lake", 10)),
    ]
    # Unlabelled declared ignore: value 0 is then a class like any other.
    sparse = describe_mask(dataset, "foreign", 0, 255, True)
    assert sparse.values == MaskValues(background_value=0, ignore_value=9, unlabelled_is_ignore=True)
    assert [c.value for c in sparse.classes] == [0, 1, 3, 10]


def test_without_nodata_the_given_ignore_value_is_used_and_may_remove_the_background(tmp_path):
    dataset = _mask(tmp_path / "plain.tif")
    assert describe_mask(dataset, "plain", 0, 255, False) == MaskDescription([], MaskValues(0, 255))
    same = describe_mask(dataset, "plain", 5, 5, False)  # background equal to ignore: none
    assert same.values == MaskValues(background_value=5, ignore_value=5, unlabelled_is_ignore=True)


def test_names_from_a_raster_attribute_table(tmp_path):
    dataset = _mask(tmp_path / "rat.tif")
    table = gdal.RasterAttributeTable()
    table.CreateColumn("Value", gdal.GFT_Integer, gdal.GFU_MinMax)
    table.CreateColumn("Class_Name", gdal.GFT_String, gdal.GFU_Generic)
    for row, (value, name) in enumerate([(1, "Forest"), (4, "Water"), (6, " ")]):
        table.SetValueAsInt(row, 0, value)
        table.SetValueAsString(row, 1, name)
    dataset.GetRasterBand(1).SetDefaultRAT(table)
    assert band_class_names(dataset.GetRasterBand(1)) == {1: "Forest", 4: "Water"}
    described = describe_mask(dataset, "rat", 0, 255, False)
    assert [(c.value, c.name) for c in described.classes] == [(1, "Forest"), (4, "Water")]


def test_rasters_that_cannot_be_masks_are_refused_by_reason(tmp_path):
    with pytest.raises(RsdlError, match="has 2 bands"):
        check_mask_raster(_mask(tmp_path / "two.tif", bands=2), "two")
    with pytest.raises(RsdlError, match="holds Float32 values"):
        describe_mask(_mask(tmp_path / "float.tif", gdal.GDT_Float32), "float", 0, 255, False)
    with pytest.raises(RsdlError, match="holds Int16 values"):
        check_mask_raster(_mask(tmp_path / "signed.tif", gdal.GDT_Int16), "signed")
    check_mask_raster(_mask(tmp_path / "wide.tif", gdal.GDT_UInt32), "wide")
    broken = _mask(tmp_path / "broken.tif")
    broken.SetMetadataItem(CLASSES_METADATA_KEY, "{not json")
    with pytest.raises(RsdlError, match="'broken' has unreadable RSDL_CLASSES metadata"):
        describe_mask(broken, "broken", 0, 255, False)
