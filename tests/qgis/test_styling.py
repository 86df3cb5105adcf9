"""qgis_io/styling.py: paletted class styles, read back from the .qml file and by QGIS itself."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
from osgeo import gdal, osr
from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer

from rsdl_qgis_plugin.core.files.atomic_output import AtomicOutputs, leftover_temporaries
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues
from rsdl_qgis_plugin.core.raster.grid import RasterGrid
from rsdl_qgis_plugin.qgis_io.raster_writer import GeoTiffRowWriter
from rsdl_qgis_plugin.qgis_io.styling import class_renderer, write_class_style

CLASSES = [LabelClass(1, "building", "#e31a1c"), LabelClass(4, "water", "#1f78b4")]


def _grid() -> RasterGrid:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32636)
    return RasterGrid(6, 4, (500000.0, 1.0, 0.0, 40000.0, 0.0, -1.0), srs.ExportToWkt())


def _class_raster(path: Path, outputs: AtomicOutputs | None = None) -> Path:
    with GeoTiffRowWriter(path, _grid(), 1, np.uint8, outputs=outputs) as writer:
        writer.write_rows(0, np.array([0, 1, 4, 255] * 6, dtype=np.uint8).reshape(1, 4, 6))
    return path


def _qml_entries(qml: Path) -> list[tuple[int, str, str]]:
    """(value, colour, label) of every palette entry, read from the XML as written."""
    root = ElementTree.parse(qml).getroot()
    return [
        (int(entry.get("value")), entry.get("color").lower()[:7], entry.get("label"))
        for entry in root.iter("paletteEntry")
    ]


def test_the_style_names_every_class_and_qgis_loads_it_by_default(tmp_path, qgis_app):
    raster = _class_raster(tmp_path / "classes.tif")
    qml = write_class_style(raster, CLASSES, MaskValues(background_value=0, ignore_value=255))
    assert qml == tmp_path / "classes.qml"
    assert _qml_entries(qml) == [
        (0, "#000000", "background"),
        (1, "#e31a1c", "building"),
        (4, "#1f78b4", "water"),
    ]

    layer = QgsRasterLayer(str(raster), "classes", "gdal")  # picks up classes.qml as its default style
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert renderer.band() == 1
    loaded = [(int(c.value), c.color.name(), c.label) for c in renderer.classes()]
    assert loaded == _qml_entries(qml)
    assert 255 not in [c.value for c in renderer.classes()]  # ignore: not drawn
    assert leftover_temporaries(tmp_path) == []


def test_no_background_entry_when_unlabelled_is_ignore_or_a_class_has_its_value(tmp_path, qgis_app):
    raster = _class_raster(tmp_path / "classes.tif")
    layer = QgsRasterLayer(str(raster), "classes", "gdal")
    sparse = class_renderer(layer.dataProvider(), CLASSES, MaskValues(0, 0, unlabelled_is_ignore=True))
    assert [c.value for c in sparse.classes()] == [1, 4]
    named_zero = [LabelClass(0, "bare soil", "#a6761d"), *CLASSES]
    renderer = class_renderer(
        layer.dataProvider(), named_zero, MaskValues(background_value=0, ignore_value=255)
    )
    assert [(int(c.value), c.label) for c in renderer.classes()] == [
        (0, "bare soil"),
        (1, "building"),
        (4, "water"),
    ]


def test_in_a_group_the_style_appears_with_the_raster(tmp_path, qgis_app):
    raster = tmp_path / "grouped.tif"
    with AtomicOutputs() as outputs:
        _class_raster(raster, outputs)
        qml = write_class_style(raster, CLASSES, MaskValues(), outputs)
        assert not raster.exists() and not qml.exists()
    assert raster.exists() and qml.exists()
    assert [value for value, _, _ in _qml_entries(qml)] == [0, 1, 4]
    assert gdal.Open(str(raster)).ReadAsArray().shape == (4, 6)
    assert leftover_temporaries(tmp_path) == []
