"""Layer post-processors: style outputs when Processing loads them into the project."""

from __future__ import annotations

from typing import ClassVar

from qgis.core import (
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
)

from ..core.label_rules import LabelClass, MaskValues
from ..qgis_io.styling import style_class_layer


class ClassRasterStyler(QgsProcessingLayerPostProcessorInterface):
    """Applies the paletted class style to a class raster output."""

    # Processing keeps only a raw pointer to post-processors; keep them alive until used.
    _alive: ClassVar[list[ClassRasterStyler]] = []

    def __init__(self, classes: list[LabelClass], values: MaskValues) -> None:
        super().__init__()
        self.classes = classes
        self.values = values

    @classmethod
    def create(cls, classes: list[LabelClass], values: MaskValues) -> ClassRasterStyler:
        styler = cls(classes, values)
        cls._alive.append(styler)
        return styler

    def postProcessLayer(  # noqa: N802 (QGIS API)
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        if isinstance(layer, QgsRasterLayer):
            style_class_layer(layer, self.classes, self.values)
        if self in self._alive:
            self._alive.remove(self)
