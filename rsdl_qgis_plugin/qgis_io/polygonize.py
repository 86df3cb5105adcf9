"""Class polygons from a finished class raster: dissolved across tile seams by construction.

GDAL polygonizes the whole class raster (it streams by rows), so regions that cross tile seams
come out as one polygon. Each polygon gets its class name and the mean confidence under it;
small polygons are dropped and shapes optionally simplified. ``add_class_polygons`` writes them
to a QGIS feature sink as multipolygons with the fields of ``class_polygon_fields``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr
from qgis.core import QgsFeature, QgsFeatureSink, QgsFeedback, QgsField, QgsFields, QgsGeometry

from .compat import FAST_INSERT, FIELD_DOUBLE, FIELD_INT, FIELD_STRING
from .gdal_calls import check_gdal, progress_callback, raise_if_cancelled

CLASS_FIELD = "class_id"


@dataclass(frozen=True)
class ClassPolygon:
    wkb: bytes
    class_id: int
    area: float
    mean_confidence: float | None


def _mean_under(geometry: ogr.Geometry, confidence: gdal.Dataset) -> float | None:
    """Mean confidence of the pixels whose centres lie in the polygon."""
    x0, dx, _, y0, _, dy = confidence.GetGeoTransform()
    xmin, xmax, ymin, ymax = geometry.GetEnvelope()
    col0 = max(0, math.floor((xmin - x0) / dx))
    col1 = min(confidence.RasterXSize, math.ceil((xmax - x0) / dx))
    row0 = max(0, math.floor((ymax - y0) / dy))
    row1 = min(confidence.RasterYSize, math.ceil((ymin - y0) / dy))
    if col1 <= col0 or row1 <= row0:
        return None
    window = gdal.GetDriverByName("MEM").Create("", col1 - col0, row1 - row0, 1, gdal.GDT_Byte)
    window.SetGeoTransform((x0 + col0 * dx, dx, 0.0, y0 + row0 * dy, 0.0, dy))
    window.SetProjection(confidence.GetProjection())
    datasource = ogr.GetDriverByName("Memory").CreateDataSource("")  # must outlive its layer
    layer = datasource.CreateLayer("p", geometry.GetSpatialReference(), ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(geometry)
    layer.CreateFeature(feature)
    gdal.RasterizeLayer(window, [1], layer, burn_values=[1])
    inside = window.ReadAsArray() > 0
    values = confidence.GetRasterBand(1).ReadAsArray(col0, row0, col1 - col0, row1 - row0)[inside]
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def polygonize_classes(
    class_path: str | Path,
    confidence_path: str | Path | None,
    skip_values: set[int],
    min_area: float = 0.0,
    simplify: float = 0.0,
    feedback: QgsFeedback | None = None,
) -> list[ClassPolygon]:
    """Polygons of each class region (8-connected), without nodata and ``skip_values``."""
    classes = gdal.Open(str(class_path))
    band = classes.GetRasterBand(1)
    srs = osr.SpatialReference(wkt=classes.GetProjection())
    datasource = ogr.GetDriverByName("Memory").CreateDataSource("")  # must outlive its layer
    layer = datasource.CreateLayer("classes", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(CLASS_FIELD, ogr.OFTInteger))
    result = gdal.Polygonize(
        band, band.GetMaskBand(), layer, 0, ["8CONNECTED=8"], callback=progress_callback(feedback, 0.0, 60.0)
    )
    check_gdal(result == gdal.CE_None, "Polygonizing the classes", feedback)
    confidence = gdal.Open(str(confidence_path)) if confidence_path else None
    polygons = []
    total = max(layer.GetFeatureCount(), 1)
    for number, feature in enumerate(layer):
        if number % 200 == 0:
            raise_if_cancelled(feedback)
            if feedback is not None:
                feedback.setProgress(60.0 + 40.0 * number / total)
        class_id = feature.GetField(CLASS_FIELD)
        geometry = feature.GetGeometryRef()
        if class_id in skip_values or geometry.GetArea() < min_area:
            continue
        if simplify > 0:
            geometry = geometry.SimplifyPreserveTopology(simplify)
        mean = _mean_under(feature.GetGeometryRef(), confidence) if confidence is not None else None
        polygons.append(ClassPolygon(bytes(geometry.ExportToWkb()), class_id, geometry.GetArea(), mean))
    return polygons


def class_polygon_fields() -> QgsFields:
    """The attributes of a class polygon feature: class_id, class_name, mean_confidence, area."""
    fields = QgsFields()
    fields.append(QgsField("class_id", FIELD_INT))
    fields.append(QgsField("class_name", FIELD_STRING))
    fields.append(QgsField("mean_confidence", FIELD_DOUBLE))
    fields.append(QgsField("area", FIELD_DOUBLE))
    return fields


def add_class_polygons(
    sink: QgsFeatureSink, fields: QgsFields, polygons: Iterable[ClassPolygon], names: dict[int, str]
) -> int:
    """Add each polygon to ``sink`` as a multipolygon named by ``names`` (else by its value).

    Stops at the first feature the sink refuses; returns how many were added, so that the caller
    can tell a partial file (and name the failure)."""
    added = 0
    for polygon in polygons:
        feature = QgsFeature(fields)
        geometry = QgsGeometry()
        geometry.fromWkb(polygon.wkb)
        geometry.convertToMultiType()
        feature.setGeometry(geometry)
        feature.setAttributes(
            [
                polygon.class_id,
                names.get(polygon.class_id, str(polygon.class_id)),
                polygon.mean_confidence,
                polygon.area,
            ]
        )
        if not sink.addFeature(feature, FAST_INSERT):
            break
        added += 1
    return added
