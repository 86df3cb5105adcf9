"""The label-rule parameters of rsdl:rasterizelabels, rsdl:evaluate and rsdl:exportchips.

All three turn vectors into masks by the same rules, so the parameters are declared once
(``LabelParameters.declare``) and read back into one ``LabelRules`` (``read_rules``), or with the
labels themselves into a ``LabelSource`` (``read_source``); burning lives in qgis_io/label_source.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsVectorLayer,
)

from ..core.errors import RsdlError
from ..core.labels.label_rules import OVERLAP_RULE_DESCRIPTIONS, OverlapRule
from ..qgis_io.compat import NUMBER_DOUBLE, NUMBER_INTEGER
from ..qgis_io.label_features import BufferSpec, ClassSource
from ..qgis_io.label_source import LabelRules, LabelSource

UNLABELLED_OPTIONS = ("Background value", "Ignore value (sparse samples: unlabelled is unknown)")
BUFFER_UNIT_OPTIONS = ("Map units of the grid CRS", "Metres")


class LabelParameters:
    """Names, declaration and reading of the label-rule parameters."""

    FIELD = "FIELD"
    NAME_FIELD = "NAME_FIELD"
    BURN_VALUE = "BURN_VALUE"
    BACKGROUND_VALUE = "BACKGROUND_VALUE"
    IGNORE_VALUE = "IGNORE_VALUE"
    UNLABELLED = "UNLABELLED"
    OVERLAP_RULE = "OVERLAP_RULE"
    BUFFER_WIDTH = "BUFFER_WIDTH"
    BUFFER_UNITS = "BUFFER_UNITS"
    BUFFER_FIELD = "BUFFER_FIELD"
    ALL_TOUCHED = "ALL_TOUCHED"

    @classmethod
    def declare(cls, algorithm: Any, after_class_parameters: Callable[[], None] | None = None) -> None:
        """Declare every label-rule parameter on ``algorithm`` (an ``RsdlAlgorithm``), in dialog
        order: class, all-touched, values, overlap, buffer. ``after_class_parameters`` declares
        the algorithm's own parameters that come between the class parameters and the rest."""
        cls.add_class_parameters(algorithm)
        if after_class_parameters is not None:
            after_class_parameters()
        cls.add_all_touched_parameter(algorithm)
        cls.add_value_parameters(algorithm)
        cls.add_overlap_parameter(algorithm)
        cls.add_buffer_parameters(algorithm)

    @classmethod
    def add_class_parameters(cls, algorithm: Any) -> None:
        algorithm.add_parameter(
            QgsProcessingParameterString(cls.FIELD, algorithm.tr("Class field"), optional=True),
            "Name of the field holding each feature's class: whole numbers (used as pixel "
            "values) or text (class names; they get values 1, 2, ... in alphabetical order, "
            "skipping the background and ignore values). Features with NULL are skipped. "
            "Leave empty for one class per layer.",
        )
        algorithm.add_parameter(
            QgsProcessingParameterString(cls.NAME_FIELD, algorithm.tr("Class name field"), optional=True),
            "Optional field with a readable name for each numeric class value (e.g. class_name "
            "beside class_id); stored with the mask.",
            advanced=True,
        )
        algorithm.add_parameter(
            QgsProcessingParameterNumber(
                cls.BURN_VALUE,
                algorithm.tr("Burn a constant value"),
                NUMBER_INTEGER,
                optional=True,
                minValue=0,
            ),
            "Optional: burn this value for every feature of every layer (as gdal_rasterize "
            "-burn), ignoring FIELD and the layer order.",
            advanced=True,
        )

    @classmethod
    def add_value_parameters(cls, algorithm: Any) -> None:
        algorithm.add_parameter(
            QgsProcessingParameterNumber(
                cls.BACKGROUND_VALUE,
                algorithm.tr("Background value"),
                NUMBER_INTEGER,
                defaultValue=0,
                minValue=0,
            ),
            "Value of pixels under no label, when unlabelled area is background.",
        )
        algorithm.add_parameter(
            QgsProcessingParameterNumber(
                cls.IGNORE_VALUE,
                algorithm.tr("Ignore value (nodata)"),
                NUMBER_INTEGER,
                defaultValue=255,
                minValue=0,
            ),
            "Value of pixels that training must ignore: reference nodata, and unlabelled area "
            "when UNLABELLED is 'Ignore'. It is the mask's nodata value; no class may use it.",
        )
        algorithm.add_parameter(
            QgsProcessingParameterEnum(
                cls.UNLABELLED,
                algorithm.tr("Pixels under no label"),
                options=list(UNLABELLED_OPTIONS),
                defaultValue=0,
            ),
            "0: background (complete labels, e.g. every building is mapped). 1: ignore, for "
            "sparse samples where unlabelled area is unknown.",
        )

    @classmethod
    def add_overlap_parameter(cls, algorithm: Any) -> None:
        algorithm.add_parameter(
            QgsProcessingParameterEnum(
                cls.OVERLAP_RULE,
                algorithm.tr("Where labels overlap"),
                options=[OVERLAP_RULE_DESCRIPTIONS[rule] for rule in OverlapRule],
                defaultValue=int(OverlapRule.LAST_FEATURE),
            ),
            "Which class a pixel takes where labels overlap: the last feature drawn (layers in "
            "the order given, features in layer order; gdal_rasterize's rule), the highest class "
            "value, or the lowest.",
        )

    @classmethod
    def add_all_touched_parameter(cls, algorithm: Any) -> None:
        algorithm.add_parameter(
            QgsProcessingParameterBoolean(
                cls.ALL_TOUCHED, algorithm.tr("Burn all touched pixels"), defaultValue=False
            ),
            "Off: a pixel is burnt when its centre lies inside a label (as gdal_rasterize). "
            "On: every pixel a label touches is burnt (gdal_rasterize -at).",
        )

    @classmethod
    def add_buffer_parameters(cls, algorithm: Any) -> None:
        algorithm.add_parameter(
            QgsProcessingParameterNumber(
                cls.BUFFER_WIDTH,
                algorithm.tr("Width of line and point labels"),
                NUMBER_DOUBLE,
                defaultValue=0.0,
                minValue=0.0,
            ),
            "Full width of the band burnt along line labels (diameter around point labels). "
            "0 burns lines and points as they are (one pixel wide). Polygons are never buffered.",
        )
        algorithm.add_parameter(
            QgsProcessingParameterEnum(
                cls.BUFFER_UNITS,
                algorithm.tr("Width units"),
                options=list(BUFFER_UNIT_OPTIONS),
                defaultValue=0,
            ),
            "0: map units of the grid CRS. 1: metres, measured on the ground in any CRS "
            "(geographic grids are buffered in a local equidistant projection).",
        )
        algorithm.add_parameter(
            QgsProcessingParameterString(cls.BUFFER_FIELD, algorithm.tr("Width field"), optional=True),
            "Optional numeric field giving each line or point its own width (in the width "
            "units); NULL falls back to BUFFER_WIDTH.",
            advanced=True,
        )

    @classmethod
    def read_rules(
        cls, algorithm: QgsProcessingAlgorithm, parameters: dict[str, Any], context: QgsProcessingContext
    ) -> LabelRules:
        burn_value = None
        if parameters.get(cls.BURN_VALUE) not in (None, ""):
            burn_value = algorithm.parameterAsInt(parameters, cls.BURN_VALUE, context)

        def text(name: str) -> str | None:
            return algorithm.parameterAsString(parameters, name, context).strip() or None

        return LabelRules(
            source=ClassSource(burn_value=burn_value, field=text(cls.FIELD), name_field=text(cls.NAME_FIELD)),
            background_value=algorithm.parameterAsInt(parameters, cls.BACKGROUND_VALUE, context),
            ignore_value=algorithm.parameterAsInt(parameters, cls.IGNORE_VALUE, context),
            unlabelled_is_ignore=algorithm.parameterAsEnum(parameters, cls.UNLABELLED, context) == 1,
            overlap=OverlapRule(algorithm.parameterAsEnum(parameters, cls.OVERLAP_RULE, context)),
            buffer=BufferSpec(
                width=algorithm.parameterAsDouble(parameters, cls.BUFFER_WIDTH, context),
                in_metres=algorithm.parameterAsEnum(parameters, cls.BUFFER_UNITS, context) == 1,
                width_field=text(cls.BUFFER_FIELD),
            ),
            all_touched=algorithm.parameterAsBoolean(parameters, cls.ALL_TOUCHED, context),
        )

    @staticmethod
    def read_layers(
        algorithm: QgsProcessingAlgorithm,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        layers_parameter: str,
    ) -> list[QgsVectorLayer]:
        layers = algorithm.parameterAsLayerList(parameters, layers_parameter, context)
        vector_layers = [layer for layer in layers if isinstance(layer, QgsVectorLayer)]
        if len(vector_layers) != len(layers) or not layers:
            raise RsdlError(f"{layers_parameter}: give one or more vector layers of labels.")
        return vector_layers

    @classmethod
    def read_source(
        cls,
        algorithm: QgsProcessingAlgorithm,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        mask_parameter: str,
        layers_parameter: str,
        missing: str,
        both: str,
    ) -> LabelSource:
        """The labels given as a mask raster or as vector layers, exactly one of the two (else
        ``missing`` or ``both`` is the error), with the label rules."""
        mask = algorithm.parameterAsRasterLayer(parameters, mask_parameter, context)
        has_layers = bool(algorithm.parameterAsLayerList(parameters, layers_parameter, context))
        if mask is None and not has_layers:
            raise RsdlError(missing)
        if mask is not None and has_layers:
            raise RsdlError(both)
        rules = cls.read_rules(algorithm, parameters, context)
        if mask is not None:
            return LabelSource(mask, [], rules)
        _ = rules.values  # refuses a background equal to the ignore value before any work
        return LabelSource(None, cls.read_layers(algorithm, parameters, context, layers_parameter), rules)
