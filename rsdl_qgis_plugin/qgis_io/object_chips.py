"""GDAL side of object chips: label features as objects in pixels, and the annotation files.

The features are read by the rules of every label (qgis_io/label_features.py: class values,
reprojection to the image's CRS, repair, buffers), one object per feature. Clipping, visibility
and the COCO / YOLO / Pascal VOC records are core/datasets/object_chips.py; the paths are
core/datasets/chip_folder.py. YOLO and VOC files are written chip by chip; each split's COCO
document is held (a few hundred bytes per object) and written when the chips are cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import ogr
from qgis.core import QgsCoordinateTransformContext, QgsFeedback

from ..core.datasets.chip_folder import (
    IMAGES_FOLDER,
    YOLO_DATA_FILE,
    coco_annotations_path,
    voc_annotation_path,
    yolo_label_path,
)
from ..core.datasets.chips import ChipWindow, Split
from ..core.datasets.object_chips import (
    ChipObjects,
    CocoSplit,
    LabelObject,
    ObjectClasses,
    ObjectFormat,
    ObjectIndex,
    ObjectPart,
    ObjectSettings,
    ObjectTally,
    map_to_pixel,
    voc_annotation_xml,
    yolo_data_yaml,
    yolo_label_text,
)
from ..core.errors import RsdlError
from ..core.labels.label_rules import LabelClass
from ..core.raster.grid import RasterGrid
from .label_features import BURN_FIELD, prepare_labels
from .label_source import LabelSource

_COLLECTIONS = (ogr.wkbMultiPolygon, ogr.wkbGeometryCollection)


@dataclass(frozen=True)
class LabelObjects:
    """The label features as objects in the grid's pixels, with their classes."""

    objects: list[LabelObject]
    classes: list[LabelClass]
    without_area: int  # line and point features that were not buffered into areas


def _ring(ring: ogr.Geometry, geotransform: tuple[float, ...]) -> np.ndarray:
    points = ring.GetPoints() or []
    return map_to_pixel(geotransform, np.asarray([p[:2] for p in points], dtype=np.float64))


def object_parts(geometry: ogr.Geometry, geotransform: tuple[float, ...]) -> list[ObjectPart]:
    """The polygons of a geometry (in map coordinates) as parts in pixel coordinates; lines and
    points have none."""
    if geometry is None or geometry.IsEmpty():
        return []
    if geometry.HasCurveGeometry():
        geometry = geometry.GetLinearGeometry()
    kind = ogr.GT_Flatten(geometry.GetGeometryType())
    if kind == ogr.wkbPolygon:
        rings = [_ring(geometry.GetGeometryRef(i), geotransform) for i in range(geometry.GetGeometryCount())]
        if not rings or len(rings[0]) < 3:
            return []
        return [ObjectPart(rings[0], tuple(ring for ring in rings[1:] if len(ring) >= 3))]
    if kind in _COLLECTIONS:
        parts: list[ObjectPart] = []
        for index in range(geometry.GetGeometryCount()):
            parts += object_parts(geometry.GetGeometryRef(index), geotransform)
        return parts
    return []


def read_label_objects(
    source: LabelSource,
    grid: RasterGrid,
    transform_context: QgsCoordinateTransformContext,
    feedback: QgsFeedback | None = None,
) -> LabelObjects:
    """Every label feature on the grid as one object, by the rules the label mask is burnt with."""
    rules = source.rules
    prepared = prepare_labels(
        source.layers,
        grid,
        rules.source,
        rules.values,
        rules.overlap,
        rules.buffer,
        transform_context,
        feedback,
    )
    objects: list[LabelObject] = []
    without_area = 0
    layer = prepared.layer
    layer.ResetReading()
    for feature in layer:
        parts = object_parts(feature.GetGeometryRef(), grid.geotransform)
        if not parts:
            without_area += 1
            continue
        objects.append(LabelObject(int(feature.GetField(BURN_FIELD)), tuple(parts)))
    if not objects:
        raise RsdlError(
            f"MODE objects needs polygon labels: the {without_area} label features on the image are "
            "lines or points without area. Give them a width (BUFFER_WIDTH) or use polygon labels."
        )
    return LabelObjects(objects, prepared.classes, without_area)


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise RsdlError(f"Writing '{path}' failed: {error}") from error


class ObjectChips:
    """The objects of one export run: found per chip, then written in the chosen format."""

    def __init__(
        self,
        folder: Path,
        settings: ObjectSettings,
        labels: LabelObjects,
        band_count: int,
    ) -> None:
        self.folder = folder
        self.settings = settings
        self.index = ObjectIndex(labels.objects, settings.min_visible_fraction)
        self.classes = ObjectClasses(labels.classes)
        self.without_area = labels.without_area
        self.band_count = band_count
        self.tally = ObjectTally()
        self.coco: dict[Split, CocoSplit] = {}

    def in_chip(self, window: ChipWindow) -> ChipObjects:
        return self.index.in_chip(window)

    def write(self, split: Split, window: ChipWindow, chip: ChipObjects) -> None:
        """Record a written chip's objects: its YOLO or VOC file now, its COCO entries for later."""
        self.tally.add(split, chip)
        file_name = f"{window.chip_id}.tif"
        if self.settings.format == ObjectFormat.COCO:
            self.coco.setdefault(split, CocoSplit()).add_chip(
                f"{IMAGES_FOLDER}/{file_name}", window, chip.objects
            )
        elif self.settings.format == ObjectFormat.YOLO:
            text = yolo_label_text(chip.objects, window.size, self.classes)
            _write_text(self.folder / yolo_label_path(split, window.chip_id), text)
        else:
            text = voc_annotation_xml(
                file_name, IMAGES_FOLDER, window.size, self.band_count, chip.objects, self.classes
            )
            _write_text(self.folder / voc_annotation_path(split, window.chip_id), text)

    def finish(self, splits: list[Split]) -> None:
        """Write what is written once for all chips: COCO documents, YOLO's data.yaml."""
        if self.settings.format == ObjectFormat.COCO:
            for split, coco in self.coco.items():
                text = json.dumps(coco.document(self.classes), separators=(",", ":"))
                _write_text(self.folder / coco_annotations_path(split), text)
        elif self.settings.format == ObjectFormat.YOLO:
            _write_text(self.folder / YOLO_DATA_FILE, yolo_data_yaml(self.classes, splits))

    def counts(self) -> dict[str, Any]:
        """Objects written per split and class name, and appearances left out."""
        return self.tally.counts(self.classes)

    def summary(self) -> dict[str, Any]:
        """The "objects" entry of dataset.json."""
        return {
            "format": self.settings.format.name.lower(),
            "min_visible_fraction": self.settings.min_visible_fraction,
            "classes": self.classes.entries(),
            "counts": self.counts(),
        }


def open_object_chips(
    folder: Path,
    settings: ObjectSettings,
    source: LabelSource,
    grid: RasterGrid,
    band_count: int,
    transform_context: QgsCoordinateTransformContext,
    feedback: QgsFeedback | None = None,
) -> ObjectChips:
    """The objects of the vector labels, ready to be cut into the chips written under ``folder``."""
    labels = read_label_objects(source, grid, transform_context, feedback)
    return ObjectChips(folder, settings, labels, band_count)
