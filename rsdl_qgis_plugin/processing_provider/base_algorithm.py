"""What every rsdl algorithm shares: naming, help text built from parameter help, and errors.

Algorithms keep no per-run state on ``self`` (they run in batch mode and the Modeler), declare
parameters in ``initAlgorithm`` and work in ``compute`` (``QgsProcessingAlgorithm.run`` is
taken). An ``RsdlError`` raised anywhere below becomes a ``QgsProcessingException`` with the
same message.
"""

from __future__ import annotations

import html
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterDefinition,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..core.errors import RsdlError


class RsdlAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set NAME, DISPLAY_NAME, GROUP, GROUP_ID, DESCRIPTION and compute()."""

    NAME = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    DESCRIPTION = ""

    def tr(self, text: str) -> str:
        return QCoreApplication.translate(type(self).__name__, text)

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return self.tr(self.DISPLAY_NAME)

    def group(self) -> str:
        return self.tr(self.GROUP)

    def groupId(self) -> str:  # noqa: N802 (QGIS API)
        return self.GROUP_ID

    def createInstance(self) -> RsdlAlgorithm:  # noqa: N802 (QGIS API)
        return type(self)()

    def add_parameter(
        self, parameter: QgsProcessingParameterDefinition, help_text: str, advanced: bool = False
    ) -> None:
        """Add a parameter with its help text (shown in the dialog and in qgis_process help)."""
        parameter.setHelp(help_text)
        if advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(parameter)

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        items = "".join(
            f"<li><b>{html.escape(p.description())}</b> (<code>{p.name()}</code>): "
            f"{html.escape(p.help())}</li>"
            for p in self.parameterDefinitions()
        )
        return f"{self.tr(self.DESCRIPTION)}<h3>Parameters</h3><ul>{items}</ul>"

    def processAlgorithm(  # noqa: N802 (QGIS API)
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        try:
            return self.compute(parameters, context, feedback)
        except RsdlError as error:
            raise QgsProcessingException(str(error)) from error

    def compute(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        raise NotImplementedError
