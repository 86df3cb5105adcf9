"""The QGIS plugin object: registers the Processing provider (desktop and qgis_process)."""

from __future__ import annotations

from qgis.core import QgsApplication


class RsdlPlugin:
    def __init__(self, iface: object) -> None:
        self.iface = iface
        self.provider = None
        self.run_model_action = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API; qgis_process calls it)
        from .processing_provider.provider import RsdlProvider

        if self.provider is None:
            self.provider = RsdlProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        from .gui.run_model_action import RunModelAction

        self.initProcessing()
        self.run_model_action = RunModelAction(self.iface)
        self.run_model_action.register()

    def unload(self) -> None:
        if self.run_model_action is not None:
            self.run_model_action.unregister()
            self.run_model_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
