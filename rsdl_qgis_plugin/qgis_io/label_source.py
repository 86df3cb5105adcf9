"""Reference labels as a mask on a grid, from a label mask raster or from vector layers.

rsdl:rasterizelabels, rsdl:evaluate and rsdl:exportchips turn labels into masks by the same rules
(``LabelRules``). Evaluate and exportchips take either a mask on the grid (MASK/REFERENCE) or
vector layers (LABELS), which are burnt into a temporary mask; ``label_mask`` gives both as one
open mask and its description, and deletes the temporary one afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from osgeo import gdal
from qgis.core import (
    QgsCoordinateTransformContext,
    QgsProcessingFeedback,
    QgsProcessingMultiStepFeedback,
    QgsRasterLayer,
    QgsVectorLayer,
)

from ..core.files.atomic_output import AtomicOutputs
from ..core.labels.label_rules import LabelClass, MaskValues, OverlapRule
from ..core.metrics.class_statistics import ClassStatistics
from ..core.raster.grid import RasterGrid
from .gdal_calls import check_gdal
from .label_features import BufferSpec, ClassSource, prepare_labels
from .mask_description import MaskDescription, describe_mask
from .mask_writer import BurnOptions, write_label_mask
from .raster_grid import open_gdal, require_same_grid
from .styling import write_class_style


@dataclass(frozen=True)
class LabelRules:
    """How vector labels become a mask, and what a mask's reserved values are.

    The values are kept as given: a label mask raster may legitimately have its background equal
    to its ignore value (then it has no background), which ``MaskValues`` refuses for burning."""

    source: ClassSource = field(default_factory=ClassSource)
    background_value: int = 0
    ignore_value: int = 255
    unlabelled_is_ignore: bool = False
    overlap: OverlapRule = OverlapRule.LAST_FEATURE
    buffer: BufferSpec = field(default_factory=BufferSpec)
    all_touched: bool = False

    @property
    def values(self) -> MaskValues:
        """The values to burn with (refuses a background equal to the ignore value)."""
        return MaskValues(self.background_value, self.ignore_value, self.unlabelled_is_ignore)

    @property
    def names_from_layers(self) -> bool:
        """Whether burnt classes are named after their layers (no field names them)."""
        return self.source.name_field is None and (
            self.source.field is None or self.source.burn_value is not None
        )


@dataclass(frozen=True)
class LabelSource:
    """The labels an algorithm was given: a mask raster on the grid, or vector layers."""

    mask: QgsRasterLayer | None
    layers: list[QgsVectorLayer]
    rules: LabelRules

    @property
    def step_count(self) -> int:
        """Steps of a run that uses the labels: burning vector labels is one more."""
        return 1 if self.mask is not None else 2

    def describe(self) -> str:
        if self.mask is not None:
            return self.mask.source()
        return "vector labels: " + ", ".join(layer.name() for layer in self.layers)


@dataclass(frozen=True)
class BurnedMask:
    """A label mask on disk and what burning it found."""

    path: str
    classes: list[LabelClass]
    values: MaskValues
    statistics: ClassStatistics
    repaired: int


@dataclass
class LabelMask:
    """An open label mask on the grid and what its values mean.

    ``names_from_layers``: its classes were named after vector layers, not by any field."""

    dataset: gdal.Dataset | None
    description: MaskDescription
    names_from_layers: bool = False


def burn_labels(
    layers: list[QgsVectorLayer],
    rules: LabelRules,
    grid: RasterGrid,
    reference: gdal.Dataset | None,
    output: str,
    transform_context: QgsCoordinateTransformContext,
    feedback: QgsProcessingFeedback,
    outputs: AtomicOutputs | None = None,
) -> BurnedMask:
    """Prepare the labels and write the mask (with its .qml style) at ``output``; with
    ``outputs`` both are renamed into place when that group commits. ``reference``'s nodata
    pixels become the ignore value."""
    values = rules.values
    feedback.pushInfo(
        f"Grid: {grid.width} x {grid.height} pixels of {grid.pixel_width:g} x {grid.pixel_height:g}."
    )
    prepared = prepare_labels(
        layers, grid, rules.source, values, rules.overlap, rules.buffer, transform_context, feedback
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
        values,
        BurnOptions(all_touched=rules.all_touched),
        output,
        reference,
        feedback,
        outputs,
    )
    write_class_style(output, prepared.classes, values, outputs)
    return BurnedMask(output, prepared.classes, values, statistics, prepared.repaired)


def _mask_raster(source: LabelSource, grid_layer: QgsRasterLayer, grid_hint: str) -> LabelMask:
    assert source.mask is not None
    require_same_grid(grid_layer, source.mask, grid_hint)
    dataset = open_gdal(source.mask)
    rules = source.rules
    description = describe_mask(
        dataset,
        source.mask.name(),
        background_value=rules.background_value,
        ignore_value=rules.ignore_value,
        unlabelled_is_ignore=rules.unlabelled_is_ignore,
    )
    return LabelMask(dataset, description)


@contextmanager
def label_mask(
    source: LabelSource,
    grid_layer: QgsRasterLayer,
    grid: RasterGrid,
    nodata_from: gdal.Dataset | None,
    work_parent: str | Path,
    transform_context: QgsCoordinateTransformContext,
    feedback: QgsProcessingMultiStepFeedback,
    grid_hint: str,
) -> Iterator[LabelMask]:
    """The labels as an open mask on ``grid`` (the grid of ``grid_layer``).

    A mask raster must be on exactly that grid (else refused with ``grid_hint``). Vector labels
    are burnt into a temporary folder under ``work_parent`` (step 0 of ``feedback``, whose step
    1 starts afterwards), with ``nodata_from``'s nodata pixels as ignore; the temporary mask is
    closed and deleted when the block ends, on failure too."""
    if source.mask is not None:
        yield _mask_raster(source, grid_layer, grid_hint)
        return
    values = source.rules.values  # refuse conflicting values before any work
    work = tempfile.mkdtemp(prefix=".rsdl-labels-", dir=str(work_parent))
    mask = None
    try:
        burned = burn_labels(
            source.layers,
            source.rules,
            grid,
            nodata_from,
            str(Path(work) / "labels.tif"),
            transform_context,
            feedback,
        )
        feedback.setCurrentStep(1)
        dataset = gdal.Open(burned.path, gdal.GA_ReadOnly)
        check_gdal(dataset is not None, f"Opening the temporary label mask '{burned.path}'", feedback)
        mask = LabelMask(dataset, MaskDescription(burned.classes, values), source.rules.names_from_layers)
        dataset = None
        yield mask
    finally:
        if mask is not None:
            mask.dataset = None  # close the temporary mask before its folder goes
        # Readers of the caller's may still hold the file open (Windows refuses to delete it):
        # what is left is in the caller's temporary folder.
        shutil.rmtree(work, ignore_errors=True)
