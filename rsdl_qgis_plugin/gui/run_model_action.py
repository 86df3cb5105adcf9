"""Toolbar and menu action "Run model on active raster".

It opens the rsdl:segment dialog with the active raster layer filled in. The dialog runs the
algorithm as a background task (the GUI stays responsive, with progress and cancel) and adds the
styled results to the project.
"""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from ..qgis_io.compat import RASTER_LAYER

ALGORITHM_ID = "rsdl:segment"
MENU = "&rsdl"
ICON = Path(__file__).resolve().parent.parent / "icons" / "rsdl.svg"


class RunModelAction:
    """Owns the action; ``register`` adds it to the toolbar and Raster menu, ``unregister`` removes it."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.action: QAction | None = None
        self.dialog = None  # the last dialog opened (kept alive while shown)

    def register(self) -> None:
        self.action = QAction(QIcon(str(ICON)), "Run model on active raster", self.iface.mainWindow())
        self.action.setObjectName("rsdlRunModelOnActiveRaster")
        self.action.setToolTip("Run a segmentation model on the active raster layer (rsdl:segment)")
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
        import processing  # QGIS's Processing plugin: available in the desktop application

        self.dialog = processing.createAlgorithmDialog(ALGORITHM_ID, {"INPUT": layer.id()})
        self.dialog.show()
