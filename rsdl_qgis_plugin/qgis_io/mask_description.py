"""Read back what a label-mask raster means: its classes and its background and ignore values.

Masks written by rsdl:rasterizelabels carry both as metadata (see mask_writer). For any other
single-band unsigned-integer mask:
- the ignore value is the band's nodata value, else the ignore value given;
- the background value is the one given, unless unlabelled area is declared ignore or the given
  background equals the ignore value (then the mask has no background);
- classes are named from the band's category names, else its raster attribute table (coloured
  from its colour table); values that nothing names are found while reading and named
  ``class_<value>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from osgeo import gdal

from ..core.errors import RsdlError
from ..core.labels.label_rules import LabelClass, MaskValues, default_class_color
from .raster_description import CLASSES_METADATA_KEY, MASK_VALUES_METADATA_KEY

UNSIGNED_GDAL_TYPES = (gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_UInt32)


@dataclass(frozen=True)
class MaskDescription:
    classes: list[LabelClass]
    values: MaskValues


def check_mask_raster(dataset: gdal.Dataset, name: str) -> None:
    """Refuse rasters that cannot be label masks, naming the reason."""
    if dataset.RasterCount != 1:
        raise RsdlError(
            f"The mask '{name}' has {dataset.RasterCount} bands; a label mask has one band of class values."
        )
    data_type = dataset.GetRasterBand(1).DataType
    if data_type not in UNSIGNED_GDAL_TYPES:
        raise RsdlError(
            f"The mask '{name}' holds {gdal.GetDataTypeName(data_type)} values; a label mask holds "
            "unsigned whole numbers (Byte, UInt16 or UInt32). Convert it (Raster > Conversion > "
            "Translate) or rasterize the labels with rsdl:rasterizelabels."
        )


def _json_item(dataset: gdal.Dataset, key: str, name: str) -> dict | None:
    text = dataset.GetMetadataItem(key)
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RsdlError(f"The mask '{name}' has unreadable {key} metadata: {error}.") from error


def _rgb_hex(entry: tuple[int, ...]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*entry[:3])


def _attribute_table_names(band: gdal.Band) -> dict[int, str]:
    """Class names from a thematic raster attribute table (a name column, one row per value)."""
    table = band.GetDefaultRAT()
    if table is None or not table.GetRowCount():
        return {}
    columns = range(table.GetColumnCount())
    name_column = next((i for i in columns if table.GetUsageOfCol(i) == gdal.GFU_Name), None)
    if name_column is None:
        name_column = next(
            (i for i in columns if table.GetNameOfCol(i).lower().replace("_", "") in ("classname", "class")),
            None,
        )
    if name_column is None:
        return {}
    value_column = next((i for i in columns if table.GetUsageOfCol(i) == gdal.GFU_MinMax), None)
    names = {}
    for row in range(table.GetRowCount()):
        value = table.GetValueAsInt(row, value_column) if value_column is not None else row
        name = table.GetValueAsString(row, name_column).strip()
        if name:
            names[value] = name
    return names


def band_class_names(band: gdal.Band) -> dict[int, str]:
    """Names of the band's values: its category names, else its raster attribute table's names
    (the .aux.xml of many classifiers)."""
    names = {value: name for value, name in enumerate(band.GetCategoryNames() or []) if name}
    return names or _attribute_table_names(band)


def class_names(dataset: gdal.Dataset) -> dict[int, str]:
    """Every value a class raster names: the rsdl metadata (background included), else the band's
    category names or attribute table."""
    stored = _json_item(dataset, CLASSES_METADATA_KEY, dataset.GetDescription())
    if stored is None:
        return band_class_names(dataset.GetRasterBand(1))
    names = {int(value): str(entry["name"]) for value, entry in stored.items()}
    stored_values = _json_item(dataset, MASK_VALUES_METADATA_KEY, dataset.GetDescription()) or {}
    if stored_values.get("background") is not None:
        names.setdefault(int(stored_values["background"]), "background")
    return names


def _classes_from_band(band: gdal.Band, values: MaskValues) -> list[LabelClass]:
    """Classes named by the band's category names (or attribute table), coloured from its colour
    table."""
    table = band.GetColorTable()
    reserved = {values.ignore_value} | (set() if values.unlabelled_is_ignore else {values.background_value})
    classes = []
    for value, name in sorted(band_class_names(band).items()):
        if value in reserved:
            continue
        if table is not None and value < table.GetCount():
            color = _rgb_hex(table.GetColorEntry(value))
        else:
            color = default_class_color(name, value)
        classes.append(LabelClass(value, name, color))
    return classes


def describe_mask(
    dataset: gdal.Dataset,
    name: str,
    background_value: int,
    ignore_value: int,
    unlabelled_is_ignore: bool,
) -> MaskDescription:
    """Classes and reserved values of a label mask (see the module docstring for the rules)."""
    check_mask_raster(dataset, name)
    band = dataset.GetRasterBand(1)
    stored_values = _json_item(dataset, MASK_VALUES_METADATA_KEY, name)
    if stored_values is not None:
        background = stored_values.get("background")
        values = MaskValues(
            background_value=0 if background is None else int(background),
            ignore_value=int(stored_values["ignore"]),
            unlabelled_is_ignore=background is None,
        )
    else:
        nodata = band.GetNoDataValue()
        ignore = (
            int(nodata) if nodata is not None and float(nodata).is_integer() and nodata >= 0 else ignore_value
        )
        no_background = unlabelled_is_ignore or background_value == ignore
        values = MaskValues(background_value, ignore, unlabelled_is_ignore=no_background)

    stored_classes = _json_item(dataset, CLASSES_METADATA_KEY, name)
    if stored_classes is not None:
        classes = [
            LabelClass(int(value), str(entry["name"]), str(entry["color"]))
            for value, entry in sorted(stored_classes.items(), key=lambda item: int(item[0]))
        ]
    else:
        classes = _classes_from_band(band, values)
    return MaskDescription(classes, values)
