"""Layer post-processors: style outputs when Processing loads them into the project."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from ..core.labels.label_rules import LabelClass, MaskValues
from ..qgis_io.styling import style_class_layer

UNCLASSIFIED_COLOR = "#bdbdbd"
VECTOR_FILL_OPACITY = 0.6  # the imagery under class polygons stays visible
_Styler = TypeVar("_Styler", bound="_KeptAlivePostProcessor")


class _KeptAlivePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Processing keeps only a raw pointer to post-processors: keep them alive until used."""

    _alive: ClassVar[list[QgsProcessingLayerPostProcessorInterface]] = []

    @classmethod
    def create(cls: type[_Styler], *args: Any) -> _Styler:
        styler = cls(*args)
        _KeptAlivePostProcessor._alive.append(styler)
        return styler

    def postProcessLayer(  # noqa: N802 (QGIS API)
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        self.style(layer)
        if self in self._alive:
            self._alive.remove(self)

    def style(self, layer: QgsMapLayer) -> None:
        raise NotImplementedError


class ClassRasterStyler(_KeptAlivePostProcessor):
    """Applies the paletted class style to a class raster output."""

    def __init__(self, classes: list[LabelClass], values: MaskValues) -> None:
        super().__init__()
        self.classes = classes
        self.values = values

    def style(self, layer: QgsMapLayer) -> None:
        if isinstance(layer, QgsRasterLayer):
            style_class_layer(layer, self.classes, self.values)


def class_vector_renderer(
    layer: QgsVectorLayer, field: str, classes: list[LabelClass]
) -> QgsCategorizedSymbolRenderer:
    """One category per class name in its colour, and a grey one for features without a class."""
    categories = []
    for label_class in classes:
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(QColor(label_class.color))
        symbol.setOpacity(VECTOR_FILL_OPACITY)
        categories.append(QgsRendererCategory(label_class.name, symbol, label_class.name))
    unclassified = QgsSymbol.defaultSymbol(layer.geometryType())
    unclassified.setColor(QColor(UNCLASSIFIED_COLOR))
    unclassified.setOpacity(VECTOR_FILL_OPACITY)
    categories.append(QgsRendererCategory(None, unclassified, "no class"))  # matches NULL
    return QgsCategorizedSymbolRenderer(field, categories)


class ClassVectorStyler(_KeptAlivePostProcessor):
    """Categorises a vector output by its class name field, in the model's class colours."""

    def __init__(self, field: str, classes: list[LabelClass]) -> None:
        super().__init__()
        self.field = field
        self.classes = classes

    def style(self, layer: QgsMapLayer) -> None:
        if isinstance(layer, QgsVectorLayer):
            layer.setRenderer(class_vector_renderer(layer, self.field, self.classes))
            layer.triggerRepaint()
