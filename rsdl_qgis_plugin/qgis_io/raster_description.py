"""What a written raster carries besides pixels, and the class-raster flavour of it.

Class rasters (label masks and predicted classes) carry a colour table, GDAL category names and
two JSON metadata items, ``RSDL_CLASSES`` and ``RSDL_MASK_VALUES``, stored inside the GeoTIFF
(not in the .aux.xml), so every reader (QGIS, rasterio, training) finds the class names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from osgeo import gdal

from ..core.labels.label_rules import LabelClass, MaskValues, hex_to_rgb

CLASSES_METADATA_KEY = "RSDL_CLASSES"
MASK_VALUES_METADATA_KEY = "RSDL_MASK_VALUES"
MAX_NAMED_VALUE = 65535


@dataclass
class RasterDescription:
    nodata: float | None = None
    color_table: gdal.ColorTable | None = None
    category_names: list[str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    band_descriptions: list[str] = field(default_factory=list)


def apply_description(dataset: gdal.Dataset, description: RasterDescription) -> None:
    """Set a description on a new dataset, before any pixel is written (TIFF fixes its palette
    tag with the first block)."""
    for index in range(1, dataset.RasterCount + 1):
        band = dataset.GetRasterBand(index)
        if description.nodata is not None:
            band.SetNoDataValue(description.nodata)
        if index <= len(description.band_descriptions):
            band.SetDescription(description.band_descriptions[index - 1])
    first = dataset.GetRasterBand(1)
    if description.color_table is not None and first.DataType in (gdal.GDT_Byte, gdal.GDT_UInt16):
        first.SetColorTable(description.color_table)
    if description.category_names:
        first.SetCategoryNames(description.category_names)
    for key, value in description.metadata.items():
        dataset.SetMetadataItem(key, value)


def class_raster_description(classes: list[LabelClass], values: MaskValues) -> RasterDescription:
    """Colour table, category names, metadata and nodata (the ignore value) of a class raster."""
    table = gdal.ColorTable()
    top = max([c.value for c in classes] + [values.background_value, values.ignore_value])
    names = [""] * (top + 1) if top <= MAX_NAMED_VALUE else None
    if not values.unlabelled_is_ignore:
        table.SetColorEntry(values.background_value, (0, 0, 0, 255))
        if names is not None:
            names[values.background_value] = "background"
    table.SetColorEntry(values.ignore_value, (0, 0, 0, 0))
    for label_class in classes:
        table.SetColorEntry(label_class.value, (*hex_to_rgb(label_class.color), 255))
        if names is not None:
            names[label_class.value] = label_class.name
    mask_values = {
        "background": None if values.unlabelled_is_ignore else values.background_value,
        "ignore": values.ignore_value,
    }
    return RasterDescription(
        nodata=values.ignore_value,
        color_table=table,
        category_names=names,
        metadata={
            CLASSES_METADATA_KEY: json.dumps(
                {str(c.value): {"name": c.name, "color": c.color} for c in classes}
            ),
            MASK_VALUES_METADATA_KEY: json.dumps(mask_values),
        },
    )
