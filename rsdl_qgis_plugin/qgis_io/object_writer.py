"""Detected objects into vector features: boxes, oriented boxes, instance polygons or centre points,
in map coordinates, streamed into a temporary GeoPackage and copied into the algorithm's output
once complete.

The objects arrive in pixels of the processing grid (``core/objects/detections.py``); the grid's
geotransform puts them on the map. Instance masks become polygons through GDAL's polygonizer, on
each mask's own small window.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from osgeo import gdal, ogr, osr
from qgis.core import QgsFeature, QgsFeatureSink, QgsFeedback, QgsField, QgsFields, QgsGeometry

from ..core.errors import RsdlError
from ..core.objects.detections import Detections, InstanceMask
from ..core.raster.grid import RasterGrid
from .compat import FAST_INSERT, FIELD_DOUBLE, FIELD_INT, FIELD_STRING
from .gdal_calls import check_gdal

COMMIT_EVERY = 2000  # features per GeoPackage transaction


class ObjectGeometry(str, enum.Enum):
    """What each object is drawn as (rsdl:detect's OUTPUT_GEOMETRY, in this order)."""

    BOXES = "boxes"
    POLYGONS = "instance polygons"
    CENTRES = "centre points"


def object_fields(oriented: bool) -> QgsFields:
    """class_id, class_name, score, area (square map units), and angle for oriented boxes."""
    fields = QgsFields()
    fields.append(QgsField("class_id", FIELD_INT))
    fields.append(QgsField("class_name", FIELD_STRING))
    fields.append(QgsField("score", FIELD_DOUBLE))
    fields.append(QgsField("area", FIELD_DOUBLE))
    if oriented:
        fields.append(QgsField("angle", FIELD_DOUBLE))
    return fields


def _to_map(grid: RasterGrid, points: np.ndarray) -> np.ndarray:
    """(..., 2) pixel (x = column, y = row) -> map coordinates."""
    x0, dx, _, y0, _, dy = grid.geotransform
    return np.stack([x0 + points[..., 0] * dx, y0 + points[..., 1] * dy], axis=-1)


def _ring(points: np.ndarray) -> ogr.Geometry:
    polygon = ogr.Geometry(ogr.wkbPolygon)
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for x, y in points:
        ring.AddPoint_2D(float(x), float(y))
    ring.AddPoint_2D(float(points[0][0]), float(points[0][1]))
    polygon.AddGeometry(ring)
    return polygon


def mask_polygon(grid: RasterGrid, mask: InstanceMask) -> ogr.Geometry | None:
    """The mask's pixels as one (multi)polygon in map coordinates; None for an empty mask."""
    rows, cols = mask.mask.shape
    if not rows or not cols or not mask.mask.any():
        return None
    window = gdal.GetDriverByName("MEM").Create("", cols, rows, 1, gdal.GDT_Byte)
    window.SetGeoTransform(grid.window_geotransform(mask.col0, mask.row0))
    band = window.GetRasterBand(1)
    band.WriteArray(mask.mask.astype(np.uint8))
    datasource = ogr.GetDriverByName("Memory").CreateDataSource("")  # must outlive its layer
    layer = datasource.CreateLayer("mask", None, ogr.wkbPolygon)
    polygonized = gdal.Polygonize(band, band, layer, -1, ["8CONNECTED=8"])
    check_gdal(polygonized == gdal.CE_None, "Polygonizing an instance mask")
    parts = ogr.Geometry(ogr.wkbMultiPolygon)
    for feature in layer:
        parts.AddGeometry(feature.GetGeometryRef())
    return parts


class ObjectFileWriter:
    """Writes objects to a temporary GeoPackage as they come (``write``), counting them per class.

    ``min_area`` (square map units) drops small objects, ``simplify`` (map units) smooths instance
    polygons. Close it (``with``) before reading the file.
    """

    def __init__(
        self,
        path: str | Path,
        grid: RasterGrid,
        geometry: ObjectGeometry,
        oriented: bool,
        class_name: Callable[[int], str],
        min_area: float = 0.0,
        simplify: float = 0.0,
    ) -> None:
        self.path = str(path)
        self.grid = grid
        self.geometry = geometry
        self.oriented = oriented
        self.class_name = class_name
        self.min_area = min_area
        self.simplify = simplify
        self.counts: Counter[str] = Counter()
        self.written = 0
        self._pixel_area = grid.pixel_width * grid.pixel_height
        srs = osr.SpatialReference(wkt=grid.crs_wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        self._datasource = ogr.GetDriverByName("GPKG").CreateDataSource(self.path)
        check_gdal(self._datasource is not None, f"Creating '{self.path}'", path=self.path)
        kind = ogr.wkbPoint if geometry is ObjectGeometry.CENTRES else ogr.wkbMultiPolygon
        self._layer = self._datasource.CreateLayer("objects", srs, kind)
        check_gdal(self._layer is not None, f"Creating a layer in '{self.path}'", path=self.path)
        for name, field_type in (
            ("class_id", ogr.OFTInteger),
            ("class_name", ogr.OFTString),
            ("score", ogr.OFTReal),
            ("area", ogr.OFTReal),
            *((("angle", ogr.OFTReal),) if oriented else ()),
        ):
            created = self._layer.CreateField(ogr.FieldDefn(name, field_type)) == ogr.OGRERR_NONE
            check_gdal(created, f"Creating the field '{name}' in '{self.path}'", path=self.path)
        self._layer.StartTransaction()
        self._in_transaction = 0

    def __enter__(self) -> ObjectFileWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        with contextlib.suppress(RsdlError):  # the error under way says what went wrong
            self.close()

    def _commit(self) -> None:
        # A full disk shows here first (SQLite writes at commit); unchecked, it would surface later
        # as a "missing table".
        committed = self._layer.CommitTransaction() == ogr.OGRERR_NONE
        check_gdal(committed, f"Writing to '{self.path}'", path=self.path)

    def close(self) -> None:
        if self._datasource is None:
            return
        try:
            self._commit()
        finally:
            self._layer = None
            self._datasource = None  # closes the file

    def _geometries(self, objects: Detections) -> list[tuple[ogr.Geometry | None, float]]:
        """(geometry, area in square map units) per object."""
        if self.geometry is ObjectGeometry.POLYGONS:
            shapes = []
            for mask in objects.masks:
                shape = mask_polygon(self.grid, mask)
                if shape is not None and self.simplify > 0:
                    shape = shape.SimplifyPreserveTopology(self.simplify)
                shapes.append((shape, shape.GetArea() if shape is not None else 0.0))
            return shapes
        areas = objects.areas() * self._pixel_area
        if self.geometry is ObjectGeometry.CENTRES:
            centres = _to_map(self.grid, objects.corners().mean(axis=1))
            points = []
            for (x, y), area in zip(centres, areas):
                point = ogr.Geometry(ogr.wkbPoint)
                point.AddPoint_2D(float(x), float(y))
                points.append((point, float(area)))
            return points
        shapes = []
        for corners, area in zip(_to_map(self.grid, objects.corners()), areas):
            box = ogr.Geometry(ogr.wkbMultiPolygon)
            box.AddGeometry(_ring(corners))
            shapes.append((box, float(area)))
        return shapes

    def write(self, objects: Detections) -> None:
        if self.geometry is ObjectGeometry.POLYGONS and not objects.has_masks:
            raise RsdlError("Instance polygons need a model that outputs instance masks.")
        definition = self._layer.GetLayerDefn()
        for index, (shape, area) in enumerate(self._geometries(objects)):
            if shape is None or area < self.min_area:
                continue
            feature = ogr.Feature(definition)
            feature.SetGeometry(shape)
            class_id = int(objects.class_ids[index])
            name = self.class_name(class_id)
            feature.SetField("class_id", class_id)
            feature.SetField("class_name", name)
            feature.SetField("score", float(objects.scores[index]))
            feature.SetField("area", area)
            if self.oriented:
                # Degrees clockwise from east, as the pixel-space angle on a north-up grid.
                feature.SetField("angle", math.degrees(float(objects.oriented[index, 4])) % 180.0)
            created = self._layer.CreateFeature(feature) == ogr.OGRERR_NONE
            check_gdal(created, f"Writing to '{self.path}'", path=self.path)
            self.counts[name] += 1
            self.written += 1
            self._in_transaction += 1
            if self._in_transaction >= COMMIT_EVERY:
                self._commit()
                self._layer.StartTransaction()
                self._in_transaction = 0


def copy_objects(
    path: str | Path, sink: QgsFeatureSink, fields: QgsFields, feedback: QgsFeedback | None = None
) -> int:
    """Copy every feature of the GeoPackage at ``path`` into ``sink`` (same fields, in order).

    Stops at the first feature the sink refuses, or on cancel; returns how many were added."""
    datasource = ogr.Open(str(path))
    layer = datasource.GetLayer(0)
    added = 0
    names = [fields.at(i).name() for i in range(fields.count())]
    for feature in layer:
        if feedback is not None and feedback.isCanceled():
            break
        qgis_feature = QgsFeature(fields)
        geometry = QgsGeometry()
        geometry.fromWkb(bytes(feature.GetGeometryRef().ExportToWkb()))
        qgis_feature.setGeometry(geometry)
        qgis_feature.setAttributes([feature.GetField(name) for name in names])
        if not sink.addFeature(qgis_feature, FAST_INSERT):
            break
        added += 1
    return added
