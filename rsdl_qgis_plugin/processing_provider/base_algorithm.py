"""What every rsdl algorithm shares: naming, help text built from parameter help, and errors.

Algorithms keep no per-run state on ``self`` (they run in batch mode and the Modeler), declare
parameters in ``initAlgorithm`` and work in ``compute`` (``QgsProcessingAlgorithm.run`` is
taken). An ``RsdlError`` raised anywhere below becomes a ``QgsProcessingException`` with the
same message, and so does a failed file operation (``OSError``: disk full, no permission),
described for the analyst. Every file output's folder is checked before any work starts, and
parameter values QGIS refuses are explained (the parameter, the value and what it accepts).
GDAL's Python bindings return error codes while an algorithm runs, on any QGIS (newer QGIS
switches their exceptions on process-wide; ``qgis_io.gdal_calls`` says why that matters).
"""

from __future__ import annotations

import contextlib
import html
import os
from pathlib import Path
from typing import Any

from osgeo import gdal, ogr
from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from ..core.errors import RsdlError, os_error_message
from ..core.files.atomic_output import check_output_folder, public_path
from ..qgis_io.compat import PARAMETER_FLAG_ADVANCED
from ..qgis_io.gdal_calls import gdal_return_codes

_LAYER_PARAMETERS = (
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterVectorLayer,
    QgsProcessingParameterMultipleLayers,
)
_NOT_FILES = ("memory:", "ogr:", "postgres:", "postgis:", "spatialite:", "mssql:", "oracle:")


def destination_path(value: Any) -> str | None:
    """The file (or folder) a destination parameter value names; None for temporary outputs,
    database URIs and anything not an absolute path."""
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.staticValue()
    if not isinstance(value, str) or value in ("", QgsProcessing.TEMPORARY_OUTPUT):
        return None
    if value.lower().startswith(_NOT_FILES):
        return None
    path = value.split("|", 1)[0]
    return path if os.path.isabs(path) else None


def _number_range(definition: QgsProcessingParameterNumber) -> str:
    def text(number: float) -> str:
        return f"{number:g}"

    low, high = definition.minimum(), definition.maximum()
    bounded_low, bounded_high = low > -1e300, high < 1e300
    if bounded_low and bounded_high:
        return f"between {text(low)} and {text(high)}"
    if bounded_low:
        return f"at least {text(low)}"
    return f"at most {text(high)}" if bounded_high else "a number"


def _layer_paths(value: Any) -> list[str]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [item for item in values if isinstance(item, str) and item]


def parameter_problem(definition: QgsProcessingParameterDefinition, value: Any) -> str | None:
    """Why QGIS refused ``value`` for ``definition``, with the way out; None when not known."""
    name = f"{definition.name()} ({definition.description()})"
    if value is None or value == "":
        return f"{name} is required; give a value."
    if isinstance(definition, QgsProcessingParameterNumber):
        return f"{name} is {value}; it must be {_number_range(definition)}. Give a value in that range."
    if isinstance(definition, _LAYER_PARAMETERS):
        for path in _layer_paths(value):
            file = path.split("|", 1)[0]
            if os.path.isabs(file) and not os.path.exists(file):
                return f"{name}: '{file}' does not exist. Check the path."
            if os.path.isfile(file):
                return (
                    f"{name}: QGIS cannot open '{file}' as a layer. The file may be truncated or "
                    "corrupt, or not a raster/vector file: check it (gdalinfo or ogrinfo), or copy "
                    "or export it again."
                )
    return None


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
            parameter.setFlags(parameter.flags() | PARAMETER_FLAG_ADVANCED)
        self.addParameter(parameter)

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        items = "".join(
            f"<li><b>{html.escape(p.description())}</b> (<code>{p.name()}</code>): "
            f"{html.escape(p.help())}</li>"
            for p in self.parameterDefinitions()
        )
        return f"{self.tr(self.DESCRIPTION)}<h3>Parameters</h3><ul>{items}</ul>"

    def checkParameterValues(  # noqa: N802 (QGIS API)
        self, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> tuple[bool, str]:
        ok, message = super().checkParameterValues(parameters, context)
        if ok:
            return ok, message
        for definition in self.parameterDefinitions():
            value = parameters.get(definition.name())
            if not definition.checkValueIsAcceptable(value, context):
                return False, parameter_problem(definition, value) or message
        return False, message

    def check_output_folders(self, parameters: dict[str, Any]) -> None:
        """Refuse a file output in a missing or read-only folder before any work is done."""
        for definition in self.destinationParameterDefinitions():
            path = destination_path(parameters.get(definition.name()))
            if path is None:
                continue
            try:
                check_output_folder(Path(path))
            except RsdlError as error:
                raise RsdlError(f"{definition.name()}: {error}") from None

    @staticmethod
    def remove_written_layer(destination: str) -> None:
        """Remove a closed vector output file (and its SQLite side files): a cancelled or failed run
        leaves no partial output."""
        path = destination_path(destination)
        if path is None:
            return
        for leftover in (path, f"{path}-journal", f"{path}-wal", f"{path}-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)

    @staticmethod
    def check_written_layer(destination: str, features: int, parameter: str) -> None:
        """Call once the sink is closed (its last reference dropped): a file output must hold every
        feature. QGIS commits a GeoPackage only when the sink closes, and only logs a failed commit
        (a full disk), so the run would look fine with a broken file; it is removed instead."""
        path = destination_path(destination)
        if path is None or not os.path.isfile(path):
            return
        gdal.ErrorReset()
        datasource = ogr.Open(path)
        layer = datasource.GetLayer(0) if datasource is not None and datasource.GetLayerCount() else None
        written = layer.GetFeatureCount() if layer is not None else -1
        reason = gdal.GetLastErrorMsg() or "the file cannot be read back"
        layer = datasource = None
        if written == features:
            return
        RsdlAlgorithm.remove_written_layer(destination)
        raise RsdlError(
            f"{parameter}: writing '{path}' failed ({reason}); {written if written >= 0 else 'no'} of "
            f"{features} features were stored. The disk may be full: free disk space in its folder "
            "or choose another destination. No partial output was kept."
        )

    def processAlgorithm(  # noqa: N802 (QGIS API)
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        try:
            # GDAL fails the same way on every QGIS: by return codes (see qgis_io.gdal_calls).
            with gdal_return_codes():
                self.check_output_folders(parameters)
                return self.compute(parameters, context, feedback)
        except RsdlError as error:
            raise QgsProcessingException(str(error)) from error
        except OSError as error:  # disk full, permissions: the file and the way out, no traceback
            path = public_path(error.filename) if error.filename else None
            raise QgsProcessingException(os_error_message(error, path)) from error

    def compute(
        self,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        raise NotImplementedError
