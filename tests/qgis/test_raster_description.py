"""qgis_io/raster_description.py: what a written raster carries besides pixels, read back by GDAL
from the GeoTIFF itself (no .aux.xml)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from osgeo import gdal

from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues
from rsdl_qgis_plugin.qgis_io.raster_description import (
    CLASSES_METADATA_KEY,
    MASK_VALUES_METADATA_KEY,
    RasterDescription,
    apply_description,
    class_raster_description,
)

CLASSES = [LabelClass(1, "building", "#ff0000"), LabelClass(3, "water", "#0000ff")]


def _write(
    path: Path, description: RasterDescription, gdal_type=gdal.GDT_Byte, bands: int = 1
) -> gdal.Dataset:
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 8, 4, bands, gdal_type)
    apply_description(dataset, description)
    dataset.GetRasterBand(1).WriteArray(np.arange(32).reshape(4, 8) % 4)
    dataset = None
    return gdal.Open(str(path))


def test_a_class_raster_carries_colours_names_nodata_and_metadata(tmp_path):
    values = MaskValues(background_value=0, ignore_value=255)
    dataset = _write(tmp_path / "mask.tif", class_raster_description(CLASSES, values))
    band = dataset.GetRasterBand(1)
    assert band.GetNoDataValue() == 255
    names = band.GetCategoryNames()
    assert len(names) == 256
    assert names[:4] == ["background", "building", "", "water"] and names[255] == ""
    table = band.GetColorTable()
    assert table.GetColorEntry(0) == (0, 0, 0, 255)
    assert table.GetColorEntry(1) == (255, 0, 0, 255)
    assert table.GetColorEntry(3) == (0, 0, 255, 255)
    assert table.GetColorEntry(255) == (0, 0, 0, 0)  # ignore: transparent
    assert json.loads(dataset.GetMetadataItem(CLASSES_METADATA_KEY)) == {
        "1": {"name": "building", "color": "#ff0000"},
        "3": {"name": "water", "color": "#0000ff"},
    }
    assert json.loads(dataset.GetMetadataItem(MASK_VALUES_METADATA_KEY)) == {"background": 0, "ignore": 255}

    # Without the .aux.xml (category names live there) the rest is still in the TIFF.
    dataset = None
    Path(tmp_path / "mask.tif.aux.xml").unlink(missing_ok=True)
    alone = gdal.Open(str(tmp_path / "mask.tif"))
    assert alone.GetRasterBand(1).GetNoDataValue() == 255
    assert alone.GetRasterBand(1).GetColorTable().GetColorEntry(3) == (0, 0, 255, 255)
    assert json.loads(alone.GetMetadataItem(CLASSES_METADATA_KEY))["3"]["name"] == "water"


def test_without_background_the_unlabelled_value_is_ignore(tmp_path):
    values = MaskValues(background_value=0, ignore_value=0, unlabelled_is_ignore=True)
    dataset = _write(tmp_path / "sparse.tif", class_raster_description(CLASSES, values))
    band = dataset.GetRasterBand(1)
    assert band.GetNoDataValue() == 0
    assert band.GetCategoryNames()[:4] == ["", "building", "", "water"]
    assert band.GetColorTable().GetColorEntry(0) == (0, 0, 0, 0)
    assert json.loads(dataset.GetMetadataItem(MASK_VALUES_METADATA_KEY)) == {"background": None, "ignore": 0}


def test_values_past_65535_get_no_category_names(tmp_path):
    description = class_raster_description([LabelClass(70000, "far", "#00ff00")], MaskValues())
    assert description.category_names is None
    dataset = _write(tmp_path / "wide.tif", description, gdal.GDT_UInt32)
    assert not dataset.GetRasterBand(1).GetCategoryNames()
    assert "70000" in json.loads(dataset.GetMetadataItem(CLASSES_METADATA_KEY))


def test_plain_descriptions_on_every_band_and_no_palette_on_floats(tmp_path):
    table = gdal.ColorTable()
    table.SetColorEntry(1, (1, 2, 3, 255))
    description = RasterDescription(
        nodata=-9999.0, color_table=table, metadata={"A": "1"}, band_descriptions=["red", "green"]
    )
    dataset = _write(tmp_path / "float.tif", description, gdal.GDT_Float32, bands=3)
    assert [dataset.GetRasterBand(i).GetNoDataValue() for i in (1, 2, 3)] == [-9999.0] * 3
    assert [dataset.GetRasterBand(i).GetDescription() for i in (1, 2, 3)] == ["red", "green", ""]
    assert dataset.GetRasterBand(1).GetColorTable() is None
    assert dataset.GetMetadataItem("A") == "1"
