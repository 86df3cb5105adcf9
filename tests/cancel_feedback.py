"""A Processing feedback that presses cancel once progress reaches a percentage."""

from __future__ import annotations

from qgis.core import QgsProcessingFeedback


class CancelAt(QgsProcessingFeedback):
    def __init__(self, percent: float) -> None:
        super().__init__()
        self.percent = percent
        self.progressChanged.connect(self._maybe_cancel)

    def _maybe_cancel(self, progress: float) -> None:
        if progress >= self.percent:
            self.cancel()
