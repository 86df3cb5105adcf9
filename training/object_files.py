"""Detected objects into a GeoPackage without QGIS: ``python -m training predict``'s writer for
detectors and instance segmentors, the headless counterpart of the plugin's
``qgis_io/object_writer.py`` (same layer, fields and geometries, so both tools' files read alike).

The objects arrive in raster pixels (``core/objects/detections.py``); the raster's affine transform
puts them on the map. Boxes (oriented boxes by their 4 corners) become one-part MultiPolygons;
instance masks are polygonized by ``rasterio.features.shapes`` (8-connected, as GDAL's polygonizer
in the plugin) on each mask's own small window. Features are appended with pyogrio every
``FLUSH_EVERY`` objects, so memory does not grow with the raster, into a temporary file renamed
into place only when the run completes (complete or absent).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from rasterio.features import shapes
from rasterio.transform import Affine
from shapely.geometry import MultiPolygon, shape

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file, public_path
from rsdl_qgis_plugin.core.objects.detections import Detections, InstanceMask

__all__ = ["FLUSH_EVERY", "LAYER", "ObjectFileWriter", "mask_polygon", "object_geometries"]

LAYER = "objects"
FLUSH_EVERY = 2000  # features per append to the GeoPackage (one transaction each)


def _to_map(transform: Affine, points: np.ndarray) -> np.ndarray:
    """(..., 2) pixel (x = column, y = row) -> map coordinates."""
    a, b, c, d, e, f = transform[:6]
    x, y = points[..., 0], points[..., 1]
    return np.stack([a * x + b * y + c, d * x + e * y + f], axis=-1)


def mask_polygon(mask: InstanceMask, transform: Affine) -> MultiPolygon | None:
    """The mask's pixels as one MultiPolygon in map coordinates; None for an empty mask."""
    if not mask.mask.size or not mask.mask.any():
        return None
    window = transform * Affine.translation(mask.col0, mask.row0)
    pixels = mask.mask.astype(np.uint8)
    parts = [
        shape(geometry) for geometry, _ in shapes(pixels, mask=mask.mask, connectivity=8, transform=window)
    ]
    return MultiPolygon(parts)


def object_geometries(
    objects: Detections, transform: Affine, polygons: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(MultiPolygons, areas in square map units) per object: the instance polygon (None for an
    empty mask) when ``polygons``, else the box (the oriented box when there is one)."""
    if polygons:
        if not objects.has_masks:
            raise RsdlError("Instance polygons need a model that outputs instance masks.")
        geometries = np.array([mask_polygon(mask, transform) for mask in objects.masks or []], dtype=object)
        areas = np.array([0.0 if g is None else g.area for g in geometries], dtype=np.float64)
        return geometries, areas
    rings = shapely.polygons(_to_map(transform, objects.corners()))
    boxes = shapely.multipolygons(rings, indices=np.arange(len(objects)))
    return np.asarray(boxes, dtype=object).reshape(-1), objects.areas() * abs(transform.determinant)


class ObjectFileWriter:
    """Writes objects to the GeoPackage ``path`` (layer ``objects``) as they come (``write``),
    counting them per class name. Use it as a context manager: the file appears, complete, when
    the block ends without error; on an error nothing is left.

    Fields: class_id, class_name, score, area (square map units) and, for ``oriented`` boxes,
    angle (degrees clockwise from east, 0-180, on a north-up raster).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        transform: Affine,
        crs_wkt: str | None,
        polygons: bool,
        oriented: bool,
        class_name: Callable[[int], str],
    ) -> None:
        self.path = Path(path)
        self.transform = transform
        self.crs_wkt = crs_wkt
        self.polygons = polygons
        self.oriented = oriented
        self.class_name = class_name
        self.counts: Counter[str] = Counter()
        self.written = 0
        self.fields = ["class_id", "class_name", "score", "area", *(["angle"] if oriented else [])]
        self._pending: list[tuple[Any, int, str, float, float, float]] = []
        self._stack = contextlib.ExitStack()
        self._temp: Path | None = None

    def __enter__(self) -> ObjectFileWriter:
        # No sidecars: the GeoPackage's journal is gone once pyogrio closes each append.
        self._temp = self._stack.enter_context(atomic_file(self.path, sidecars=()))
        try:
            self._append([], append=False)  # the layer and its fields, even when no object comes
        except BaseException as error:
            self._stack.__exit__(type(error), error, error.__traceback__)
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> bool:
        if exc_type is None:
            try:
                self._flush()
            except BaseException as error:
                self._stack.__exit__(type(error), error, error.__traceback__)
                raise
        return self._stack.__exit__(exc_type, exc, traceback)

    def write(self, objects: Detections) -> None:
        """Queue ``objects`` (raster pixels) as features; appended every ``FLUSH_EVERY``."""
        geometries, areas = object_geometries(objects, self.transform, self.polygons)
        angles = (
            np.degrees(objects.oriented[:, 4]) % 180.0
            if self.oriented and objects.oriented is not None
            else np.full(len(objects), math.nan)
        )
        for index, geometry in enumerate(geometries):
            if geometry is None:  # a mask left empty: nothing to draw
                continue
            class_id = int(objects.class_ids[index])
            name = self.class_name(class_id)
            self._pending.append(
                (geometry, class_id, name, float(objects.scores[index]), float(areas[index]), angles[index])
            )
            self.counts[name] += 1
            if len(self._pending) >= FLUSH_EVERY:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._append(self._pending, append=True)
            self.written += len(self._pending)
            self._pending = []

    def _append(self, rows: list[tuple[Any, int, str, float, float, float]], append: bool) -> None:
        columns = list(zip(*rows)) if rows else [()] * 6
        field_data = [
            np.array(columns[1], dtype=np.int32),
            np.array(columns[2], dtype=object),
            np.array(columns[3], dtype=np.float64),
            np.array(columns[4], dtype=np.float64),
            np.array(columns[5], dtype=np.float64),
        ][: len(self.fields)]
        try:
            pyogrio.raw.write(
                str(self._temp),
                shapely.to_wkb(np.array(columns[0], dtype=object)),
                field_data,
                self.fields,
                layer=LAYER,
                driver="GPKG",
                geometry_type="MultiPolygon",
                crs=self.crs_wkt,
                append=append,
            )
        except (DataSourceError, DataLayerError) as error:
            # The message names the hidden temporary file; the analyst chose the final one.
            reason = public_path(str(error))
            raise RsdlError(f"Writing the objects to '{self.path}' failed: {reason}") from None
