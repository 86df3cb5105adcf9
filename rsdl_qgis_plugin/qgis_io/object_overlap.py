"""Predicted and reference objects read from vector layers, and their IoUs from QGIS geometry.

rsdl:evaluateobjects matches predicted polygons (boxes or outlines) to reference polygons. This
module reads each side's geometries (the reference transformed into the predictions' CRS),
classes (a field's values compared as text) and scores, repairs invalid geometries with GEOS
make-valid (counted for the log), and computes IoU = intersection area / union area, planar in
the predictions' CRS, only for pairs of the same class whose bounding boxes meet (a spatial
index keeps it sparse). The matching itself is ``core.metrics.object_matching``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeatureRequest,
    QgsFeatureSource,
    QgsFeedback,
    QgsGeometry,
    QgsRectangle,
    QgsSpatialIndex,
    QgsWkbTypes,
)

from ..core.errors import RsdlError
from ..core.metrics.object_matching import IouPairs
from .compat import GEOMETRY_POLYGON, SKIP_GEOMETRY_VALIDITY_CHECKS, is_null
from .gdal_calls import raise_if_cancelled

__all__ = [
    "NO_CLASS",
    "ObjectLayer",
    "class_text",
    "number_classes",
    "overlap_pairs",
    "read_objects",
]

NO_CLASS = "(no class)"  # the class of a feature whose class field is NULL or empty


def class_text(value: Any) -> str:
    """A class field's value as the text classes are compared by: ``1``, ``1.0`` and ``"1"`` are
    one class; NULL and blank text are ``NO_CLASS``."""
    if is_null(value):
        return NO_CLASS
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or NO_CLASS


@dataclass
class ObjectLayer:
    """One side's usable objects (features without a usable geometry are left out and counted),
    in the order they were read: feature ids, geometries in the working CRS, class texts and
    scores."""

    feature_ids: list[int] = field(default_factory=list)
    geometries: list[QgsGeometry] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    repaired: int = 0  # invalid geometries made valid
    skipped: int = 0  # no geometry, empty, no area, or not transformable
    null_scores: int = 0  # scored 0

    def __len__(self) -> int:
        return len(self.feature_ids)

    def extent(self) -> QgsRectangle:
        # Started from the first box: QGIS 3.44 deprecates setMinimal() (setNull() is new there).
        boxes = [geometry.boundingBox() for geometry in self.geometries]
        if not boxes:
            return QgsRectangle()
        extent = QgsRectangle(boxes[0])
        for box in boxes[1:]:
            extent.combineExtentWith(box)
        return extent


def _repair(geometry: QgsGeometry) -> QgsGeometry:
    """GEOS make-valid, keeping only the polygon parts (no slivers of lines or points)."""
    repaired = geometry.makeValid()
    if QgsWkbTypes.isMultiType(repaired.wkbType()) or repaired.type() != GEOMETRY_POLYGON:
        repaired.convertGeometryCollectionToSubclass(GEOMETRY_POLYGON)
    return repaired


def _score(value: Any, field_name: str, feature_id: int) -> float | None:
    if is_null(value):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise RsdlError(
            f"SCORE_FIELD: '{field_name}' holds '{value}' (feature {feature_id}), not a number. Choose "
            "a numeric field of confidences, or leave SCORE_FIELD empty to score every prediction 1."
        ) from None
    if not math.isfinite(score):
        raise RsdlError(
            f"SCORE_FIELD: '{field_name}' holds {value} (feature {feature_id}); scores must be finite."
        )
    return score


def read_objects(
    source: QgsFeatureSource,
    class_field: str = "",
    score_field: str = "",
    transform: QgsCoordinateTransform | None = None,
    feedback: QgsFeedback | None = None,
) -> ObjectLayer:
    """Every feature with a polygon geometry of non-zero area, transformed by ``transform`` (when
    given) and made valid where it is not. Without ``class_field`` every class is ''; without
    ``score_field`` every score is 1 (NULL scores count as 0)."""
    fields = source.fields()
    class_index = fields.lookupField(class_field) if class_field else -1
    score_index = fields.lookupField(score_field) if score_field else -1
    objects = ObjectLayer()
    total = max(source.featureCount(), 1)
    request = QgsFeatureRequest()
    for number, feature in enumerate(source.getFeatures(request, SKIP_GEOMETRY_VALIDITY_CHECKS)):
        if feedback is not None:
            raise_if_cancelled(feedback)
            feedback.setProgress(100.0 * number / total)
        geometry = feature.geometry()
        if geometry is None or geometry.isNull() or geometry.isEmpty() or geometry.type() != GEOMETRY_POLYGON:
            objects.skipped += 1
            continue
        geometry = QgsGeometry(geometry)
        if transform is not None:
            try:
                geometry.transform(transform)
            except QgsCsException:
                objects.skipped += 1
                continue
        if not geometry.isGeosValid():
            geometry = _repair(geometry)
            objects.repaired += 1
        if geometry.isEmpty() or not geometry.area() > 0:
            objects.skipped += 1
            continue
        score = 1.0
        if score_index >= 0:
            value = _score(feature.attribute(score_index), score_field, feature.id())
            if value is None:
                objects.null_scores += 1
            score = 0.0 if value is None else value
        objects.feature_ids.append(feature.id())
        objects.geometries.append(geometry)
        objects.classes.append(class_text(feature.attribute(class_index)) if class_index >= 0 else "")
        objects.scores.append(score)
    return objects


def number_classes(
    predicted: Sequence[str], reference: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Class ids for both sides (one id per class text, shared by the sides) and their names; the
    reference's classes first, in their sorted order, then those only predicted."""

    def order(text: str) -> tuple[int, float, str]:
        try:
            return (0, float(text), text)  # numbers in numeric order: 2 before 10
        except ValueError:
            return (1, 0.0, text.casefold())

    names = sorted(set(reference), key=order)
    names += sorted(set(predicted) - set(reference), key=order)
    ids = {name: index for index, name in enumerate(names)}
    return (
        np.array([ids[name] for name in predicted], dtype=np.int64),
        np.array([ids[name] for name in reference], dtype=np.int64),
        dict(enumerate(names)),
    )


def overlap_pairs(
    predictions: ObjectLayer,
    references: ObjectLayer,
    predicted_classes: np.ndarray,
    reference_classes: np.ndarray,
    feedback: QgsFeedback | None = None,
) -> IouPairs:
    """IoUs of every prediction with the references of its class that it overlaps (area > 0)."""
    index = QgsSpatialIndex()
    for number, geometry in enumerate(references.geometries):
        index.addFeature(number, geometry.boundingBox())
    reference_areas = [geometry.area() for geometry in references.geometries]
    rows: list[int] = []
    cols: list[int] = []
    ious: list[float] = []
    total = max(len(predictions), 1)
    for row, geometry in enumerate(predictions.geometries):
        if feedback is not None:
            raise_if_cancelled(feedback)
            feedback.setProgress(100.0 * row / total)
        area = geometry.area()
        engine = QgsGeometry.createGeometryEngine(geometry.constGet())
        engine.prepareGeometry()
        for col in sorted(index.intersects(geometry.boundingBox())):
            if reference_classes[col] != predicted_classes[row]:
                continue
            other = references.geometries[col]
            if not engine.intersects(other.constGet()):
                continue
            inter = geometry.intersection(other).area()
            union = area + reference_areas[col] - inter
            if inter > 0 and union > 0:
                rows.append(row)
                cols.append(col)
                ious.append(min(inter / union, 1.0))
    return IouPairs(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(ious))
