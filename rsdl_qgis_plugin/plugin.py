"""The QGIS plugin object: registers the Processing provider (desktop and qgis_process)."""

from __future__ import annotations

from qgis.core import QgsApplication


class RsdlPlugin:
    def __init__(self, iface: object) -> None:
        self.iface = iface
        self.provider = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS API; qgis_process calls it)
        from .processing_provider.provider import RsdlProvider

        if self.provider is None:
            self.provider = RsdlProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
