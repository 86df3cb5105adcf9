"""rsdl:classifyfeatures: one class per feature (e.g. a building), from the image around it."""

from __future__ import annotations

from typing import Any

import numpy as np
from qgis.core import (
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureRequest,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeatureSource,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingUtils,
    QgsRasterLayer,
)

from ..core.contract.model_spec import ModelType
from ..inference.classifier import Classifier, crop_square
from ..inference.feature_results import FeatureResults, collect_probabilities
from ..qgis_io.compat import FAST_INSERT, NUMBER_DOUBLE, SOURCE_VECTOR_ANY_GEOMETRY
from ..qgis_io.feature_crops import ALL_FEATURES, FeatureCrops
from ..qgis_io.provider_reader import ProviderWindowReader
from .classify_base import ClassifyAlgorithm

DEFAULT_MARGIN_PERCENT = 10.0
CLASSIFY_SHARE = 90.0  # percent of the progress bar for classifying; the rest is writing


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
        batch_size = self.parameterAsInt(parameters, self.BATCH_SIZE, context)

        crops = self._feature_crops(source, layer, bands, classifier.tile_size, margin, context)
        results = collect_probabilities(
            classifier, crops.read(source, feedback, CLASSIFY_SHARE), batch_size, feedback.isCanceled
        )
        dest_id, written, classified = self._write(parameters, context, feedback, source, classifier, results)
        for reason, count in sorted(crops.missing.items()):
            feedback.pushWarning(f"{count} feature(s) {reason}: their class is NULL.")
        feedback.pushInfo(f"Features: {classified} classified, {written - classified} with a NULL class.")
        return {
            self.OUTPUT: dest_id,
            self.EXECUTION_PROVIDER: classifier.backend.provider,
            self.CLASSIFIED: classified,
            self.NOT_CLASSIFIED: written - classified,
        }

    @staticmethod
    def _feature_crops(
        source: QgsProcessingFeatureSource,
        layer: QgsRasterLayer,
        bands: tuple[int, ...],
        tile: int,
        margin: float,
        context: QgsProcessingContext,
    ) -> FeatureCrops:
        """Crops of ``tile`` pixels around the features, ``margin`` percent wider than their bounds;
        a point's crop is one tile at the raster's pixel size."""
        point_side = tile * layer.rasterUnitsPerPixelX()
        return FeatureCrops(
            ProviderWindowReader(layer.dataProvider().clone(), None, bands),
            QgsCoordinateTransform(source.sourceCrs(), layer.crs(), context.transformContext()),
            layer.extent(),
            tile,
            lambda bounds: crop_square(bounds, margin, point_side),
        )

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
