"""The rsdl Processing provider (id ``rsdl``): the algorithms, and the Modeler models it ships."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication, QgsMessageLog, QgsProcessingModelAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .classify_features import ClassifyFeaturesAlgorithm
from .classify_tiles import ClassifyTilesAlgorithm
from .detect import DetectAlgorithm
from .evaluate import EvaluateAlgorithm
from .evaluate_objects import EvaluateObjectsAlgorithm
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
    DetectAlgorithm,
    EvaluateAlgorithm,
    EvaluateObjectsAlgorithm,
    ModelInfoAlgorithm,
)
PLUGIN_FOLDER = Path(__file__).resolve().parent.parent
ICON_PATH = PLUGIN_FOLDER / "icons" / "rsdl.svg"
MODELS_FOLDER = PLUGIN_FOLDER / "models"  # Graphical Modeler models (.model3), written by scripts


class RsdlProvider(QgsProcessingProvider):
    def __init__(self, load_models: bool = True) -> None:
        super().__init__()
        self.load_models = load_models

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
        if not self.load_models:
            return
        registry = QgsApplication.processingRegistry()
        if registry.providerById(self.id()) is None:
            # A model finds its steps (rsdl:segment...) through the registry, which lists this
            # provider only once its first load is over: load again then, with the models.
            registry.providerAdded.connect(self._registered)
            return
        for path in sorted(MODELS_FOLDER.glob("*.model3")):
            self._add_model(path)

    def _registered(self, provider_id: str) -> None:
        if provider_id == self.id():
            QgsApplication.processingRegistry().providerAdded.disconnect(self._registered)
            self.refreshAlgorithms()

    def _add_model(self, path: Path) -> None:
        model = QgsProcessingModelAlgorithm()
        if not model.fromFile(str(path)):
            # A broken model must not take the algorithms down with it: log it and go on.
            QgsMessageLog.logMessage(f"Could not load the model '{path}'.", "rsdl")
            return
        model.setSourceFilePath(str(path))
        self.addAlgorithm(model)
