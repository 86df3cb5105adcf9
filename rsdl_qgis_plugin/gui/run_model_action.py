"""Toolbar and menu action "Run model on active raster".

It asks for the model file, reads the model's type from its metadata and opens the dialog of the
algorithm that runs that type (rsdl:segment for segmentors and regressors, rsdl:detect for
detectors and instance segmentors, rsdl:classifytiles for classifiers) with the active raster
layer and the model filled in. The dialog runs the algorithm as a background task (the GUI stays
responsive, with progress and cancel) and adds the styled results to the project.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsSettings
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QFileDialog

from ..core.errors import RsdlError
from ..processing_provider.algorithm_choice import algorithm_for_model
from ..qgis_io.compat import RASTER_LAYER

MENU = "&rsdl"
ICON = Path(__file__).resolve().parent.parent / "icons" / "rsdl.svg"
LAST_FOLDER_SETTING = "rsdl/last_model_folder"
MODEL_FILE_FILTER = "Models (*.onnx *.pt *.ts *.torchscript);;All files (*)"


class RunModelAction:
    """Owns the action; ``register`` adds it to the toolbar and Raster menu, ``unregister`` removes it."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.action: QAction | None = None
        self.dialog = None  # the last dialog opened (kept alive while shown)

    def register(self) -> None:
        self.action = QAction(QIcon(str(ICON)), "Run model on active raster", self.iface.mainWindow())
        self.action.setObjectName("rsdlRunModelOnActiveRaster")
        self.action.setToolTip(
            "Run a model on the active raster layer: rsdl:segment, rsdl:detect or rsdl:classifytiles, "
            "as the model's type says"
        )
        self.action.triggered.connect(self.run)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu(MENU, self.action)

    def unregister(self) -> None:
        if self.action is None:
            return
        self.iface.removeToolBarIcon(self.action)
        self.iface.removePluginRasterMenu(MENU, self.action)
        self.action.deleteLater()
        self.action = None

    def run(self) -> None:
        layer = self.iface.activeLayer()
        if layer is None or layer.type() != RASTER_LAYER:
            self.iface.messageBar().pushWarning(
                "rsdl", "Select a raster layer in the Layers panel, then run the model on it."
            )
            return
        model = self.choose_model_file()
        if not model:
            return  # the analyst cancelled the file dialog
        try:
            algorithm = algorithm_for_model(model)
        except RsdlError as error:
            self.iface.messageBar().pushWarning("rsdl", f"Cannot run the model '{model}': {error}")
            return
        import processing  # QGIS's Processing plugin: available in the desktop application

        dialog = processing.createAlgorithmDialog(algorithm, {"INPUT": layer.id(), "MODEL": model})
        if dialog is None:  # the algorithm is not registered (an older or partial install)
            self.iface.messageBar().pushWarning(
                "rsdl", f"The model '{model}' is run by {algorithm}, which is not installed; update rsdl."
            )
            return
        self.dialog = dialog
        self.dialog.show()

    def choose_model_file(self) -> str:
        """The model file the analyst picks ('' when cancelled), starting in the last folder used."""
        settings = QgsSettings()
        folder = settings.value(LAST_FOLDER_SETTING, "", type=str)
        path, _ = QFileDialog.getOpenFileName(
            self.iface.mainWindow(), "Choose the model to run", folder, MODEL_FILE_FILTER
        )
        if path:
            settings.setValue(LAST_FOLDER_SETTING, str(Path(path).parent))
        return path
