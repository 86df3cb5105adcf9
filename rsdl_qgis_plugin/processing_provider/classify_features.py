"""rsdl:classifyfeatures: one class per feature (e.g. a building), from the image around it."""

from __future__ import annotations

import math
from array import array
from collections import Counter
from typing import Any

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeature,
    QgsFeatureRequest,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSource,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsRectangle,
)

from ..core.contract.model_spec import ModelType
from ..core.errors import CancelledError
from ..inference.classifier import Classifier, classify_in_batches, crop_square
from ..qgis_io.compat import (
    FAST_INSERT,
    NUMBER_DOUBLE,
    SKIP_GEOMETRY_VALIDITY_CHECKS,
    SOURCE_VECTOR_ANY_GEOMETRY,
)
from ..qgis_io.provider_reader import ProviderWindowReader
from .classify_base import ClassifyAlgorithm

DEFAULT_MARGIN_PERCENT = 10.0
CLASSIFY_SHARE = 90.0  # percent of the progress bar for classifying; the rest is writing
# Every feature is copied, invalid geometries included: only their bounding box is used.
ALL_FEATURES = SKIP_GEOMETRY_VALIDITY_CHECKS

# Why a feature got no class, as counted in the log.
OUTSIDE = "outside the raster"
NO_GEOMETRY = "with no usable geometry (missing, empty or not transformable)"
NO_DATA = "over nodata only"


def _bounds_in(geometry: QgsGeometry, transform: QgsCoordinateTransform) -> QgsRectangle | None:
    """The geometry's bounding box in the raster's CRS; None for a missing, empty or
    untransformable geometry."""
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


class FeatureResults:
    """Probabilities by feature id, compact (8 + 4 x classes bytes per feature), for the second pass."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self._ids = array("q")
        self._values = array("f")
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, ids: np.ndarray, probabilities: np.ndarray) -> None:
        self._ids.extend(int(i) for i in ids)
        self._values.extend(probabilities.astype(np.float32).ravel().tolist())
        self._sorted = None

    def get(self, feature_id: int) -> np.ndarray:
        """The feature's probabilities; NaN when it was not classified."""
        if self._sorted is None:
            ids = np.frombuffer(self._ids, dtype=np.int64) if self._ids else np.zeros(0, np.int64)
            order = np.argsort(ids, kind="stable")
            values = np.frombuffer(self._values, dtype=np.float32).reshape(-1, self.classes)
            self._sorted = ids[order], values[order]
        ids, values = self._sorted
        position = int(np.searchsorted(ids, feature_id))
        if position < len(ids) and ids[position] == feature_id:
            return values[position]
        return np.full(self.classes, np.nan, dtype=np.float32)


class ClassifyFeaturesAlgorithm(ClassifyAlgorithm):
    NAME = "classifyfeatures"
    DISPLAY_NAME = "Classify features with a model"
    DESCRIPTION = (
        "Classifies every feature of a vector layer (e.g. building footprints: damaged or "
        "intact) with an ONNX or TorchScript classification model, from the image around it: "
        "the feature's bounding box (in the raster's CRS), made square and widened by a margin, "
        "read through QGIS and resampled to the model's input size. The output is a copy of the "
        "layer (every feature and field, geometries unchanged) with the class fields added; "
        "features outside the raster, over nodata only, or without a usable geometry get NULL "
        "classes and are counted in the log. The output is written once every feature is "
        "classified, so a cancelled run leaves none."
    )

    INPUT = "INPUT"
    RASTER = "RASTER"
    MARGIN = "MARGIN"
    CLASSIFIED = "CLASSIFIED"
    NOT_CLASSIFIED = "NOT_CLASSIFIED"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterFeatureSource(
                self.INPUT, self.tr("Features to classify"), [SOURCE_VECTOR_ANY_GEOMETRY]
            ),
            "The features to classify, in any CRS (their geometries are reprojected to the "
            "raster's CRS to find the image around them). Polygons usually; for points the crop "
            "is one model tile at the raster's pixel size.",
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.RASTER, self.tr("Raster layer")),
            "The image to classify the features from: a file, a VRT, or a WMS/XYZ layer.",
        )
        self.add_model_parameters(self.RASTER, self.MODEL_HELP)
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MARGIN,
                self.tr("Margin around each feature (%)"),
                NUMBER_DOUBLE,
                defaultValue=DEFAULT_MARGIN_PERCENT,
                minValue=0.0,
                maxValue=1000.0,
            ),
            "Context around the feature: the square crop (as wide as the feature's longer side) "
            "grows by this percentage of its side on every side. 0 crops to the feature.",
        )
        self.add_run_parameters(ModelType.CLASSIFIER, "Crops")
        self.add_output_parameter(
            SOURCE_VECTOR_ANY_GEOMETRY,
            "Classified features",
            "A copy of the input layer (same geometries, CRS and fields) with the class fields "
            "added; a field name already in the input gets a suffix (_2).",
        )
        self.addOutput(QgsProcessingOutputNumber(self.CLASSIFIED, self.tr("Features classified")))
        self.addOutput(QgsProcessingOutputNumber(self.NOT_CLASSIFIED, self.tr("Features with a NULL class")))

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.INPUT))
        layer = self.raster_layer(parameters, self.RASTER, context)
        classifier, bands = self.load_classifier(parameters, context, feedback, layer, None, False)
        margin = self.parameterAsDouble(parameters, self.MARGIN, context)
        transform = QgsCoordinateTransform(source.sourceCrs(), layer.crs(), context.transformContext())
        reader = ProviderWindowReader(layer.dataProvider().clone(), None, bands)
        raster_extent = layer.extent()
        tile = classifier.tile_size
        point_side = tile * layer.rasterUnitsPerPixelX()
        total = source.featureCount()  # -1 when the provider cannot tell: no progress then
        missing: Counter[str] = Counter()

        def crops():
            request = QgsFeatureRequest().setNoAttributes()
            for number, feature in enumerate(source.getFeatures(request, ALL_FEATURES)):
                if feedback.isCanceled():
                    raise CancelledError()
                if total > 0:
                    feedback.setProgress(CLASSIFY_SHARE * number / total)
                bounds = _bounds_in(feature.geometry(), transform)
                if bounds is None:
                    missing[NO_GEOMETRY] += 1
                    continue
                if not bounds.intersects(raster_extent):
                    missing[OUTSIDE] += 1
                    continue
                square = crop_square(
                    (bounds.xMinimum(), bounds.yMinimum(), bounds.xMaximum(), bounds.yMaximum()),
                    margin,
                    point_side,
                )
                data, valid = reader.read_extent(QgsRectangle(*square), tile, tile)
                if not valid.any():
                    missing[NO_DATA] += 1
                    continue
                yield feature.id(), data

        results = FeatureResults(len(classifier.class_names))
        batch_size = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        for keys, classification in classify_in_batches(classifier, crops(), batch_size):
            results.add(keys, classification.probabilities)
            if feedback.isCanceled():
                raise CancelledError()

        dest_id, written, classified = self._write(parameters, context, feedback, source, classifier, results)
        for reason, count in sorted(missing.items()):
            feedback.pushWarning(f"{count} feature(s) {reason}: their class is NULL.")
        feedback.pushInfo(f"Features: {classified} classified, {written - classified} with a NULL class.")
        return {
            self.OUTPUT: dest_id,
            self.EXECUTION_PROVIDER: classifier.backend.provider,
            self.CLASSIFIED: classified,
            self.NOT_CLASSIFIED: written - classified,
        }

    def _write(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        source: QgsProcessingFeatureSource,
        classifier: Classifier,
        results: FeatureResults,
    ) -> tuple[str, int, int]:
        """Copy every feature with its class fields; returns (output id, written, classified)."""
        class_fields = self.class_fields(classifier)
        fields = QgsProcessingUtils.combineFields(source.fields(), class_fields)
        offset = source.fields().count()
        sink, dest_id = self.create_output(
            parameters,
            context,
            fields,
            source.wkbType(),
            source.sourceCrs(),
            classifier,
            fields.at(offset + 1).name(),  # class_name, renamed when the input has one
        )
        total = source.featureCount()
        written = classified = 0
        for feature in source.getFeatures(QgsFeatureRequest(), ALL_FEATURES):
            probabilities = results.get(feature.id())
            output = QgsFeature(fields)
            output.setGeometry(feature.geometry())
            output.setAttributes(feature.attributes() + self.class_attributes(classifier, probabilities))
            sink.addFeature(output, FAST_INSERT)
            written += 1
            classified += not np.isnan(probabilities[0])
            if total > 0:
                feedback.setProgress(CLASSIFY_SHARE + (100 - CLASSIFY_SHARE) * written / total)
        del sink  # closes (commits) the file, so that it can be checked
        self.check_written_layer(dest_id, written, self.OUTPUT)
        return dest_id, written, classified
