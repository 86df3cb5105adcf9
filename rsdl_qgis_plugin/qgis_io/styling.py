"""Paletted styles for class rasters: one colour and name per class, ignore transparent."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import QgsPalettedRasterRenderer, QgsRasterDataProvider, QgsRasterLayer
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtXml import QDomDocument

from ..core.errors import RsdlError, os_error_message
from ..core.files.atomic_output import AtomicOutputs, atomic_file, public_path
from ..core.labels.label_rules import LabelClass, MaskValues


def class_renderer(
    provider: QgsRasterDataProvider, classes: list[LabelClass], values: MaskValues
) -> QgsPalettedRasterRenderer:
    """A paletted renderer naming every class; background black, ignore left out (transparent)."""
    entries = []
    if not values.unlabelled_is_ignore and values.background_value not in {c.value for c in classes}:
        entries.append(
            QgsPalettedRasterRenderer.Class(values.background_value, QColor(0, 0, 0), "background")
        )
    entries += [QgsPalettedRasterRenderer.Class(c.value, QColor(c.color), c.name) for c in classes]
    return QgsPalettedRasterRenderer(provider, 1, entries)


def style_class_layer(layer: QgsRasterLayer, classes: list[LabelClass], values: MaskValues) -> None:
    """Give a loaded class raster layer its paletted style."""
    layer.setRenderer(class_renderer(layer.dataProvider(), classes, values))
    layer.triggerRepaint()


def write_class_style(
    raster_path: str | os.PathLike,
    classes: list[LabelClass],
    values: MaskValues,
    outputs: AtomicOutputs | None = None,
) -> Path:
    """Write the QGIS default-style sidecar (``<name>.qml``), so the raster opens styled.

    With ``outputs`` the raster is read from its temporary and the style joins the group."""
    raster = Path(raster_path)
    source = outputs.temporary(raster) if outputs is not None else raster
    layer = QgsRasterLayer(str(source), raster.stem, "gdal")
    style_class_layer(layer, classes, values)
    document = QDomDocument()
    error = layer.exportNamedStyle(document)
    if error:
        raise RuntimeError(f"Could not build the style of '{raster}': {error}")
    qml = raster.with_suffix(".qml")
    try:
        with atomic_file(qml, sidecars=(), outputs=outputs) as temp:
            temp.write_text(document.toString(), encoding="utf-8")
    except OSError as failure:  # the analyst chose the raster: name it, not only its sidecar
        message = f"The style of '{raster}' could not be written. {os_error_message(failure)}"
        raise RsdlError(public_path(message)) from failure
    return qml
