"""A class raster to score (rsdl:evaluate's PREDICTION): opened through GDAL, checked, named.

A class raster is one band of unsigned whole numbers; its class names come from rsdl's metadata,
GDAL category names or a raster attribute table (``mask_description.class_names``).
"""

from __future__ import annotations

from osgeo import gdal
from qgis.core import QgsRasterLayer

from ..core.errors import RsdlError
from .mask_description import UNSIGNED_GDAL_TYPES, class_names
from .raster_grid import open_gdal


def check_class_raster(dataset: gdal.Dataset, layer_name: str) -> None:
    """Refuse a prediction that is not one band of class numbers, naming what it is."""
    if dataset.RasterCount != 1:
        raise RsdlError(
            f"PREDICTION: '{layer_name}' has {dataset.RasterCount} bands; a class raster has one "
            "band of class values (e.g. the OUTPUT of rsdl:segment)."
        )
    data_type = dataset.GetRasterBand(1).DataType
    if data_type not in UNSIGNED_GDAL_TYPES:
        raise RsdlError(
            f"PREDICTION: '{layer_name}' holds {gdal.GetDataTypeName(data_type)} values; a class "
            "raster holds unsigned whole numbers (Byte, UInt16 or UInt32). Regression outputs "
            "cannot be scored with class metrics; convert a class raster with Raster > "
            "Conversion > Translate."
        )


def open_class_raster(layer: QgsRasterLayer) -> gdal.Dataset:
    """The layer's GDAL dataset, once it is known to be a class raster."""
    dataset = open_gdal(layer)
    check_class_raster(dataset, layer.name())
    return dataset


def class_raster_names(dataset: gdal.Dataset) -> dict[int, str]:
    """The class raster's class names, less its nodata value (nodata pixels are never scored)."""
    names = class_names(dataset)
    nodata = dataset.GetRasterBand(1).GetNoDataValue()
    if nodata is not None:
        names.pop(int(nodata), None)
    return names
