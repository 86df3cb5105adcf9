"""The rsdl Processing provider (id ``rsdl``)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .classify_features import ClassifyFeaturesAlgorithm
from .classify_tiles import ClassifyTilesAlgorithm
from .export_chips import ExportChipsAlgorithm
from .model_info import ModelInfoAlgorithm
from .rasterize_labels import RasterizeLabelsAlgorithm
from .segment import SegmentAlgorithm

ALGORITHMS = (
    RasterizeLabelsAlgorithm,
    ExportChipsAlgorithm,
    SegmentAlgorithm,
    ClassifyTilesAlgorithm,
    ClassifyFeaturesAlgorithm,
    ModelInfoAlgorithm,
)
ICON_PATH = Path(__file__).resolve().parent.parent / "icons" / "rsdl.svg"


class RsdlProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "rsdl"

    def name(self) -> str:
        return "rsdl (deep learning for remote sensing)"

    def longName(self) -> str:  # noqa: N802 (QGIS API)
        return self.name()

    def icon(self) -> QIcon:
        return QIcon(str(ICON_PATH))

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API)
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())
