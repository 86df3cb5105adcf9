"""The label-rule parameters shared by rasterizelabels and exportchips, and burning a mask with them.

Both algorithms must turn vectors into masks by the same rules, so the parameters are declared,
read and applied here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from osgeo import gdal
from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsVectorLayer,
)

from ..core.errors import RsdlError
from ..core.files.atomic_output import AtomicOutputs
from ..core.labels.label_rules import OVERLAP_RULE_DESCRIPTIONS, LabelClass, MaskValues, OverlapRule
from ..core.metrics.class_statistics import ClassStatistics
from ..core.raster.grid import RasterGrid
from ..qgis_io.compat import NUMBER_DOUBLE, NUMBER_INTEGER
from ..qgis_io.label_features import BufferSpec, ClassSource, prepare_labels
from ..qgis_io.mask_writer import BurnOptions, write_label_mask
from ..qgis_io.styling import write_class_style

UNLABELLED_OPTIONS = ("Background value", "Ignore value (sparse samples: unlabelled is unknown)")
BUFFER_UNIT_OPTIONS = ("Map units of the grid CRS", "Metres")


@dataclass(frozen=True)
class BurnedMask:
    """A label mask on disk and what burning it found."""

    path: str
    classes: list[LabelClass]
    values: MaskValues
    statistics: ClassStatistics
    repaired: int


@dataclass(frozen=True)
class LabelParameters:
    """Label layers and the rules that turn them into a mask."""

    layers: list[QgsVectorLayer]
    source: ClassSource
    values: MaskValues
    overlap: OverlapRule
    buffer: BufferSpec

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
    def read(
        cls,
        algorithm: QgsProcessingAlgorithm,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
        layers_parameter: str = "INPUT",
    ) -> LabelParameters:
        layers = algorithm.parameterAsLayerList(parameters, layers_parameter, context)
        vector_layers = [layer for layer in layers if isinstance(layer, QgsVectorLayer)]
        if len(vector_layers) != len(layers) or not layers:
            raise RsdlError(f"{layers_parameter}: give one or more vector layers of labels.")
        burn_value = None
        if parameters.get(cls.BURN_VALUE) not in (None, ""):
            burn_value = algorithm.parameterAsInt(parameters, cls.BURN_VALUE, context)
        return cls(
            layers=vector_layers,
            source=ClassSource(
                burn_value=burn_value,
                field=algorithm.parameterAsString(parameters, cls.FIELD, context).strip() or None,
                name_field=algorithm.parameterAsString(parameters, cls.NAME_FIELD, context).strip() or None,
            ),
            values=MaskValues(
                background_value=algorithm.parameterAsInt(parameters, cls.BACKGROUND_VALUE, context),
                ignore_value=algorithm.parameterAsInt(parameters, cls.IGNORE_VALUE, context),
                unlabelled_is_ignore=algorithm.parameterAsEnum(parameters, cls.UNLABELLED, context) == 1,
            ),
            overlap=OverlapRule(algorithm.parameterAsEnum(parameters, cls.OVERLAP_RULE, context)),
            buffer=BufferSpec(
                width=algorithm.parameterAsDouble(parameters, cls.BUFFER_WIDTH, context),
                in_metres=algorithm.parameterAsEnum(parameters, cls.BUFFER_UNITS, context) == 1,
                width_field=algorithm.parameterAsString(parameters, cls.BUFFER_FIELD, context).strip()
                or None,
            ),
        )

    def burn(
        self,
        grid: RasterGrid,
        reference: gdal.Dataset | None,
        output: str,
        all_touched: bool,
        context: QgsProcessingContext,
        feedback: QgsProcessingFeedback,
        outputs: AtomicOutputs | None = None,
    ) -> BurnedMask:
        """Prepare the labels and write the mask (with its .qml style) at ``output``; with
        ``outputs`` both are renamed into place when that group commits."""
        feedback.pushInfo(
            f"Grid: {grid.width} x {grid.height} pixels of {grid.pixel_width:g} x {grid.pixel_height:g}."
        )
        prepared = prepare_labels(
            self.layers,
            grid,
            self.source,
            self.values,
            self.overlap,
            self.buffer,
            context.transformContext(),
            feedback,
        )
        feedback.pushInfo(
            f"Labels: {prepared.features_read} features read, {prepared.features_on_grid} on the "
            f"grid, {prepared.buffered} lines/points buffered."
        )
        if prepared.repaired:
            feedback.pushWarning(f"Repaired {prepared.repaired} invalid geometries (GEOS make-valid).")
        if prepared.skipped_null:
            feedback.pushWarning(f"Skipped {prepared.skipped_null} features whose class field is NULL.")
        if prepared.skipped_empty:
            feedback.pushWarning(f"Skipped {prepared.skipped_empty} features without geometry.")
        statistics = write_label_mask(
            prepared.layer,
            prepared.classes,
            grid,
            self.values,
            BurnOptions(all_touched=all_touched),
            output,
            reference,
            feedback,
            outputs,
        )
        write_class_style(output, prepared.classes, self.values, outputs)
        return BurnedMask(output, prepared.classes, self.values, statistics, prepared.repaired)
