"""The image around each feature of a vector layer, read through a raster's data provider.

rsdl:classifyfeatures classifies a feature from a square crop around its bounding box (in the
raster's CRS), read at the model's tile size. A feature gets no crop when its geometry is
missing, empty or cannot be transformed, when it lies outside the raster, or when its crop is
nodata only; ``FeatureCrops.missing`` counts these by reason for the log. How the square is made
from the bounds (margin, a point's side) is the caller's ``square`` function.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeatureRequest,
    QgsFeedback,
    QgsGeometry,
    QgsProcessingFeatureSource,
    QgsRectangle,
)

from .compat import SKIP_GEOMETRY_VALIDITY_CHECKS
from .gdal_calls import raise_if_cancelled
from .provider_reader import ProviderWindowReader

# Every feature is read, invalid geometries included: only their bounding box is used.
ALL_FEATURES = SKIP_GEOMETRY_VALIDITY_CHECKS

# Why a feature got no crop, as counted in the log.
OUTSIDE = "outside the raster"
NO_GEOMETRY = "with no usable geometry (missing, empty or not transformable)"
NO_DATA = "over nodata only"

Bounds = tuple[float, float, float, float]  # xmin, ymin, xmax, ymax


def bounds_in(geometry: QgsGeometry | None, transform: QgsCoordinateTransform) -> QgsRectangle | None:
    """The geometry's bounding box in the transform's destination CRS; None for a missing, empty
    or untransformable geometry."""
    if geometry is None or geometry.isNull() or geometry.isEmpty():
        return None
    moved = QgsGeometry(geometry)
    try:
        moved.transform(transform)
    except QgsCsException:
        return None
    bounds = moved.boundingBox()
    corners = (bounds.xMinimum(), bounds.yMinimum(), bounds.xMaximum(), bounds.yMaximum())
    return bounds if all(math.isfinite(value) for value in corners) else None


class FeatureCrops:
    """Square crops of ``tile`` x ``tile`` pixels around features, and why some have none."""

    def __init__(
        self,
        reader: ProviderWindowReader,
        transform: QgsCoordinateTransform,
        raster_extent: QgsRectangle,
        tile: int,
        square: Callable[[Bounds], Bounds],
    ) -> None:
        self.reader = reader
        self.transform = transform
        self.raster_extent = raster_extent
        self.tile = tile
        self.square = square
        self.missing: Counter[str] = Counter()

    def crop(self, geometry: QgsGeometry | None) -> np.ndarray | None:
        """The (bands, tile, tile) crop around the geometry; None (reason counted) when it has none."""
        bounds = bounds_in(geometry, self.transform)
        if bounds is None:
            self.missing[NO_GEOMETRY] += 1
            return None
        if not bounds.intersects(self.raster_extent):
            self.missing[OUTSIDE] += 1
            return None
        square = self.square((bounds.xMinimum(), bounds.yMinimum(), bounds.xMaximum(), bounds.yMaximum()))
        data, valid = self.reader.read_extent(QgsRectangle(*square), self.tile, self.tile)
        if not valid.any():
            self.missing[NO_DATA] += 1
            return None
        return data

    def read(
        self, source: QgsProcessingFeatureSource, feedback: QgsFeedback, progress_share: float = 100.0
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(feature id, crop) for every feature that has a crop, lazily; progress runs up to
        ``progress_share`` percent (none when the source cannot count its features)."""
        total = source.featureCount()  # -1 when the provider cannot tell
        request = QgsFeatureRequest().setNoAttributes()
        for number, feature in enumerate(source.getFeatures(request, ALL_FEATURES)):
            raise_if_cancelled(feedback)
            if total > 0:
                feedback.setProgress(progress_share * number / total)
            data = self.crop(feature.geometry())
            if data is not None:
                yield feature.id(), data
