"""The chip index: a GeoPackage layer with one footprint polygon per written chip.

Fields are listed in core/datasets/chip_folder.py. Rows are collected during the export (a few hundred
bytes per chip) and written in one transaction at the end, once every class value is known.
"""

from __future__ import annotations

from pathlib import Path

from osgeo import gdal, ogr, osr
from qgis.core import QgsFeedback

from ..core.datasets.chip_folder import INDEX_LAYER, ChipRecord, pixel_field
from ..core.raster.grid import RasterGrid
from .gdal_calls import check_gdal, gdal_errors, no_gdal_failure, raise_if_cancelled

_FIELDS = (
    ("chip_id", ogr.OFTString),
    ("split", ogr.OFTString),
    ("row_off", ogr.OFTInteger),
    ("col_off", ogr.OFTInteger),
    ("size", ogr.OFTInteger),
    ("image", ogr.OFTString),
    ("mask", ogr.OFTString),
    ("class_image", ogr.OFTString),
    ("chip_class", ogr.OFTString),
    ("class_value", ogr.OFTInteger64),
    ("labelled_frac", ogr.OFTReal),
    ("ignored_frac", ogr.OFTReal),
)
_OBJECTS_FIELD = "objects"


def footprint(grid: RasterGrid, record: ChipRecord) -> ogr.Geometry:
    """The chip's bounds as a polygon in the grid's CRS.

    Taken from the chip's own grid (the geotransform its GeoTIFF gets), so the footprint is the
    chip file's extent as GDAL reports it, to the last bit.
    """
    window = record.window
    xmin, ymin, xmax, ymax = grid.window_grid(window.row, window.col, window.size, window.size).bounds
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in ((xmin, ymax), (xmax, ymax), (xmax, ymin), (xmin, ymin), (xmin, ymax)):
        ring.AddPoint_2D(x, y)
    polygon = ogr.Geometry(ogr.wkbPolygon)
    polygon.AddGeometry(ring)
    return polygon


def write_chip_index(
    path: Path,
    records: list[ChipRecord],
    grid: RasterGrid,
    crs_wkt: str,
    pixel_values: list[int],
    feedback: QgsFeedback | None = None,
) -> None:
    """Write the index GeoPackage at ``path`` with a ``px_<value>`` field per value."""
    gdal.ErrorReset()
    with gdal_errors(f"Writing the chip index '{path}'", feedback, path):
        _write_index(path, records, grid, crs_wkt, pixel_values, feedback)


def _write_index(
    path: Path,
    records: list[ChipRecord],
    grid: RasterGrid,
    crs_wkt: str,
    pixel_values: list[int],
    feedback: QgsFeedback | None,
) -> None:
    # A GeoPackage that cannot be written (a full disk) is still returned, with an error; every
    # later step would then fail for a missing table, naming no disk.
    datasource = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    created = datasource is not None and no_gdal_failure()
    check_gdal(created, f"Creating the chip index '{path}'", feedback, path)
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    layer = datasource.CreateLayer(INDEX_LAYER, srs, ogr.wkbPolygon, ["SPATIAL_INDEX=YES"])
    action = f"Creating layer '{INDEX_LAYER}' in '{path}'"
    check_gdal(layer is not None and no_gdal_failure(), action, feedback, path)
    # Object chips add their object count; other exports keep the fields they always had.
    with_objects = any(record.objects is not None for record in records)
    fields = (*_FIELDS, (_OBJECTS_FIELD, ogr.OFTInteger)) if with_objects else _FIELDS
    for name, field_type in fields:
        check_gdal(layer.CreateField(ogr.FieldDefn(name, field_type)) == 0, action, feedback, path)
    for value in pixel_values:
        field = ogr.FieldDefn(pixel_field(value), ogr.OFTInteger64)
        check_gdal(layer.CreateField(field) == 0, action, feedback, path)
    definition = layer.GetLayerDefn()

    layer.StartTransaction()
    for number, record in enumerate(records):
        if number % 1000 == 0:
            raise_if_cancelled(feedback)
        feature = ogr.Feature(definition)
        window = record.window
        attributes = {
            "chip_id": window.chip_id,
            "split": record.split.value,
            "row_off": window.row,
            "col_off": window.col,
            "size": window.size,
            "image": record.image_path,
            "mask": record.mask_path,
            "class_image": record.class_path,
            "chip_class": record.class_name,
            "class_value": record.class_value,
            "labelled_frac": record.labelled_fraction,
            "ignored_frac": record.ignored_fraction,
        }
        for value in pixel_values:
            attributes[pixel_field(value)] = record.counts.get(value, 0)
        if with_objects:
            attributes[_OBJECTS_FIELD] = record.objects
        for name, value in attributes.items():
            if value is None:
                feature.SetFieldNull(name)
            else:
                feature.SetField(name, value)
        feature.SetGeometryDirectly(footprint(grid, record))
        check_gdal(
            layer.CreateFeature(feature) == 0,
            f"Writing chip '{window.chip_id}' to the index '{path}'",
            feedback,
            path=path,
        )
    check_gdal(layer.CommitTransaction() == 0, f"Writing the chip index '{path}'", feedback, path=path)
    # Features must go before their datasource closes (they use its layer definition).
    feature = definition = layer = None
    datasource = None
    check_gdal(no_gdal_failure(), f"Writing the chip index '{path}'", feedback, path=path)
