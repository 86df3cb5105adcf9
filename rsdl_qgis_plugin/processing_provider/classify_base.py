"""What rsdl:classifytiles and rsdl:classifyfeatures share: the model parameters, loading and
checking the classifier, the class fields of the output, and writing the output at the end.

The output sink is created only after every crop has been classified (results are kept as a
compact float32 array meanwhile), so a cancelled or failed run leaves no output behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterFeatureSink,
    QgsRasterLayer,
    QgsWkbTypes,
)

from ..core.contract.model_spec import ModelType
from ..core.errors import RsdlError
from ..core.tiling import policy
from ..inference.classifier import Classifier, probability_field_names
from ..qgis_io.compat import FIELD_DOUBLE, FIELD_INT, FIELD_STRING
from .layer_styling import ClassVectorStyler
from .model_algorithm import ModelAlgorithm
from .tiling_parameters import TilingParameters

CLASS_FIELDS = ("class_id", "class_name", "probability")


class ClassifyAlgorithm(ModelAlgorithm):
    """Base of the classification algorithms; subclasses declare their inputs and compute()."""

    OUTPUT = "OUTPUT"
    UNDECLARED_MODEL_TYPE_OK = True  # a model without metadata runs when its outputs classify
    MODEL_HELP = (
        "A classification model (one score per class for a whole image crop): ONNX, or "
        "TorchScript with the rsdl spec. Segmentation models are refused (use rsdl:segment)."
    )

    # -- parameters -------------------------------------------------------------------------

    def add_output_parameter(self, geometry_type: int, description: str, help_text: str) -> None:
        """OUTPUT (a feature sink) and the EXECUTION_PROVIDER output."""
        self.add_parameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr(description), geometry_type),
            help_text + " Fields class_id, class_name and probability (of the winning class), "
            "then p_<class name> per class. Styled by class name in the model's class colours.",
        )

    # -- inputs -----------------------------------------------------------------------------

    def load_classifier(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        layer: QgsRasterLayer,
        tile_size: int | None,
        uses_resolution: bool,
    ) -> tuple[Classifier, tuple[int, ...]]:
        """The classifier (checked to classify) and the raster bands to feed it.

        ``tile_size`` is the crop size asked for (None: the model's); ``uses_resolution`` says
        whether the model's resolution matters (a geographic raster is then refused).
        """
        backend = self.load_backend(parameters, context, feedback)
        # The output shape is checked before the bands, so a segmentation model is named as such.
        name = Path(backend.path).name
        size = policy.tile_size(
            backend.spec,
            backend.input_size,
            tile_size,
            ModelType.CLASSIFIER,
            TilingParameters.TILE_SIZE,
            name,
        )
        classifier = Classifier(backend, backend.spec, size)
        bands = self.raster_bands(parameters, context, feedback, backend, layer, uses_resolution)
        for warning in classifier.warnings:
            feedback.pushWarning(warning)
        names = ", ".join(f"{value} {name}" for value, name in sorted(classifier.class_names.items()))
        feedback.pushInfo(f"Classes: {names}; crops of {classifier.tile_size} px; bands {list(bands)}.")
        return classifier, bands

    # -- output -----------------------------------------------------------------------------

    @staticmethod
    def class_fields(classifier: Classifier) -> QgsFields:
        """class_id, class_name, probability, then p_<name> per class."""
        fields = QgsFields()
        fields.append(QgsField(CLASS_FIELDS[0], FIELD_INT))
        fields.append(QgsField(CLASS_FIELDS[1], FIELD_STRING))
        fields.append(QgsField(CLASS_FIELDS[2], FIELD_DOUBLE))
        for name in probability_field_names(classifier.class_names):
            fields.append(QgsField(name, FIELD_DOUBLE))
        return fields

    @staticmethod
    def class_attributes(
        classifier: Classifier, probabilities: np.ndarray, min_probability: float = 0.0
    ) -> list[Any]:
        """The class field values for one row of probabilities.

        A row of NaN (not classified) gives NULL everywhere; a winning probability below
        ``min_probability`` gives a NULL class but keeps the probabilities.
        """
        if np.isnan(probabilities).any():
            return [None] * (len(CLASS_FIELDS) + len(probabilities))
        class_id = int(probabilities.argmax())
        best = float(probabilities[class_id])
        per_class = [float(p) for p in probabilities]
        if best < min_probability:
            return [None, None, best, *per_class]
        return [class_id, classifier.class_names[class_id], best, *per_class]

    def create_output(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        fields: QgsFields,
        geometry_type: QgsWkbTypes.Type,
        crs: QgsCoordinateReferenceSystem,
        classifier: Classifier,
        class_name_field: str,
    ) -> tuple[QgsFeatureSink, str]:
        """The OUTPUT sink (created now: call it once the results are complete) and its id; the
        layer is styled by ``class_name_field`` when Processing loads it."""
        sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, geometry_type, crs)
        if sink is None:
            raise RsdlError("OUTPUT: the output layer could not be created; choose another destination.")
        if context.willLoadLayerOnCompletion(dest_id):
            styler = ClassVectorStyler.create(class_name_field, classifier.classes)
            context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(styler)
        return sink, dest_id
