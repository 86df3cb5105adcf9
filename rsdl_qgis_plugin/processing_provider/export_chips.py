"""rsdl:exportchips: cut an image and its labels into training chips with a spatial split.

The chip plan, split and keep rules are core/datasets/chips.py; the folder layout is
core/datasets/chip_folder.py (both docstrings are part of the algorithm's help). The image is read
in strips of chip-size rows, so memory stays at about chip size x image width x bands whatever the
image size.
Everything is written into a temporary folder that becomes OUTPUT only when complete.
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, gdal_array
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingMultiStepFeedback,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
)

from ..core.datasets import chip_folder as chip_dataset
from ..core.datasets import chips
from ..core.datasets.chip_folder import (
    BACKGROUND_NAME,
    DATASET_FILE,
    INDEX_FILE,
    ChipRecord,
    ClassFolders,
    classification_chip_path,
    dataset_document,
    image_chip_path,
    mask_chip_path,
)
from ..core.datasets.chips import (
    CHIP_MODE_DESCRIPTIONS,
    DEFAULT_BLOCK_CHIPS,
    BlockSplit,
    ChipDecision,
    ChipMode,
    ChipOutcome,
    ChipPlan,
    ChipRules,
    ChipTally,
    ChipWindow,
    Split,
    SplitSettings,
    decide_chip,
)
from ..core.errors import RsdlError
from ..core.files.atomic_output import atomic_folder
from ..core.labels.label_rules import LabelClass, make_label_classes, unnamed_class_name
from ..core.metrics.class_statistics import ClassStatistics
from ..core.raster.grid import RasterGrid
from ..qgis_io.chip_index import write_chip_index
from ..qgis_io.chip_writer import ChipFileWriter, Strip, StripReader
from ..qgis_io.compat import NUMBER_DOUBLE, NUMBER_INTEGER, SOURCE_VECTOR_ANY_GEOMETRY, SOURCE_VECTOR_POLYGON
from ..qgis_io.gdal_calls import raise_if_cancelled
from ..qgis_io.label_source import LabelSource, label_mask
from ..qgis_io.mask_description import MaskDescription
from ..qgis_io.raster_grid import grid_from_raster_layer, open_gdal
from .base_algorithm import RsdlAlgorithm
from .label_parameters import LabelParameters
from .reports import class_table, log_class_table

GRID_HINT = (
    "Rasterize the labels with the image as REFERENCE (rsdl:rasterizelabels), or give them as vector LABELS."
)


class _ChipCutter:
    """Decides, writes and records the chips of one run (one instance per run, never on the algorithm)."""

    def __init__(
        self,
        folder: Path,
        rules: ChipRules,
        description: MaskDescription,
        writer: ChipFileWriter,
    ) -> None:
        self.folder = folder
        self.rules = rules
        self.ignore_value = description.values.ignore_value
        self.writer = writer
        self.names = {c.value: c.name for c in description.classes}
        if rules.background_value is not None:
            self.names.setdefault(rules.background_value, BACKGROUND_NAME)
        self.folders = ClassFolders(self.names) if rules.mode.writes_classification else None
        self.tally = ChipTally(self.ignore_value, classification=rules.mode.writes_classification)
        self.records: list[ChipRecord] = []

    def drop_straddling(self) -> None:
        self.tally.add(ChipDecision(ChipOutcome.STRADDLING))

    def cut(self, strip: Strip, window: ChipWindow, split: Split) -> None:
        mask = strip.mask_chip(window, self.ignore_value)
        statistics = ClassStatistics(self.ignore_value)
        statistics.add_block(mask)
        decision = decide_chip(window, strip.image_all_nodata(window), statistics, self.rules)
        self.tally.add(decision, split, statistics)
        if decision.outcome != ChipOutcome.WRITTEN:
            return
        image = strip.image_chip(window)
        image_path = mask_path = class_path = class_name = None
        if self.rules.mode.writes_segmentation:
            image_path = image_chip_path(split, window.chip_id)
            mask_path = mask_chip_path(split, window.chip_id)
            self.writer.write_image(self.folder, image_path, window, image)
            self.writer.write_mask(self.folder, mask_path, window, mask)
        if decision.class_value is not None and self.folders is not None:
            class_name = self.names.get(decision.class_value, unnamed_class_name(decision.class_value))
            class_folder = self.folders.folder(decision.class_value, class_name)
            class_path = classification_chip_path(split, class_folder, window.chip_id)
            self.writer.write_image(self.folder, class_path, window, image)
        self.records.append(
            ChipRecord(
                window,
                split,
                image_path,
                mask_path,
                class_path,
                decision.class_value,
                class_name,
                dict(statistics.counts),
                statistics.ignored,
            )
        )


def _cut_all(
    plan: ChipPlan,
    block_split: BlockSplit,
    reader: StripReader,
    cutter: _ChipCutter,
    feedback: QgsProcessingFeedback,
) -> None:
    """Walk the plan strip by strip; a strip is read only when one of its chips has a split."""
    rows = plan.row_offsets
    for number, row in enumerate(rows):
        raise_if_cancelled(feedback)
        placed = []
        for window in plan.row(row):
            split = block_split.split_of(window)
            if split is None:
                cutter.drop_straddling()
            else:
                placed.append((window, split))
        if placed:
            strip = reader.read(row, feedback)
            for window, split in placed:
                raise_if_cancelled(feedback)
                cutter.cut(strip, window, split)
        feedback.setProgress(100.0 * (number + 1) / len(rows))


def _all_classes(description: MaskDescription, tally: ChipTally, background: int | None) -> list[LabelClass]:
    """The described classes plus values found in the chips that nothing described."""
    seen = {value for statistics in tally.statistics.values() for value in statistics.counts}
    known = {c.value for c in description.classes} | ({background} if background is not None else set())
    extra = make_label_classes({value: unnamed_class_name(value) for value in seen - known})
    return sorted(description.classes + extra, key=lambda c: c.value)


def _refuse_no_chips(tally: ChipTally, image_layer: QgsRasterLayer) -> None:
    if tally.total_written == 0:
        raise RsdlError(
            f"No chip was written from image '{image_layer.name()}': "
            f"{json.dumps(tally.counts())}. Check that the image holds data (not only "
            "nodata), that the labels cover it and that CHIP_SIZE, KEEP_EMPTY and MIN_COVER "
            "leave chips to keep."
        )


def _warn_empty_splits(tally: ChipTally, settings: SplitSettings, feedback: QgsProcessingFeedback) -> None:
    for split, fraction in ((Split.VAL, settings.val_fraction), (Split.TEST, settings.test_fraction)):
        if fraction > 0 and not tally.written.get(split):
            feedback.pushWarning(
                f"No chip went to '{split.value}' although its fraction is {fraction:g}: its "
                "blocks hold only skipped chips. Try another SEED or a smaller SPLIT_BLOCK."
            )


def _labels_summary(source: LabelSource, writer: ChipFileWriter) -> dict[str, Any]:
    return {
        "mask": source.mask.source() if source.mask is not None else None,
        "layers": [layer.source() for layer in source.layers],
        "dtype": _dtype_name(writer.mask_type),
    }


def _image_summary(layer: QgsRasterLayer, dataset: gdal.Dataset, grid: RasterGrid) -> dict[str, Any]:
    bands = [dataset.GetRasterBand(i) for i in range(1, dataset.RasterCount + 1)]
    return {
        "path": layer.source(),
        "width": grid.width,
        "height": grid.height,
        "band_count": len(bands),
        "dtype": _dtype_name(bands[0].DataType),
        "nodata": [band.GetNoDataValue() for band in bands],
        "crs_wkt": grid.crs_wkt,
        "geotransform": list(grid.geotransform),
    }


def _dtype_name(gdal_type: int) -> str:
    return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(gdal_type)).name


class ExportChipsAlgorithm(RsdlAlgorithm):
    NAME = "exportchips"
    DISPLAY_NAME = "Export training chips"
    GROUP = "Training data"
    GROUP_ID = "trainingdata"
    DESCRIPTION = (
        "Cuts an image and its labels (a label mask on the image's grid, or vector labels "
        "rasterized onto it by the rules of 'Rasterize labels to a class mask') into square "
        "training chips: georeferenced image/mask GeoTIFF pairs for segmentation and/or image "
        "chips in class folders for classification. Chips are split into train, validation and "
        "test sets by spatial blocks, so that no validation or test chip shares a pixel with a "
        "training chip. Nodata and all-ignore chips are skipped; a share of empty chips can be "
        "dropped. Writes a GeoPackage index of chip footprints and a dataset.json that "
        "describes the dataset; the output folder appears only when the export is complete."
        f"<h3>Rules</h3><pre>{html.escape(chips.__doc__ or '')}</pre>"
        f"<h3>Output folder</h3><pre>{html.escape(chip_dataset.__doc__ or '')}</pre>"
    )

    INPUT = "INPUT"
    MASK = "MASK"
    LABELS = "LABELS"
    CHIP_SIZE = "CHIP_SIZE"
    STRIDE = "STRIDE"
    MODE = "MODE"
    MIN_COVER = "MIN_COVER"
    VAL_FRACTION = "VAL_FRACTION"
    TEST_FRACTION = "TEST_FRACTION"
    SPLIT_BLOCK = "SPLIT_BLOCK"
    SEED = "SEED"
    KEEP_EMPTY = "KEEP_EMPTY"
    OUTPUT = "OUTPUT"
    INDEX = "INDEX"
    CHIP_COUNTS = "CHIP_COUNTS"
    STATISTICS = "STATISTICS"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Image raster")),
            "The image to cut (a raster file GDAL reads: GeoTIFF, VRT...). Chips keep its data "
            "type, bands and nodata; its nodata pixels become the ignore value in mask chips.",
        )
        self.add_parameter(
            QgsProcessingParameterRasterLayer(self.MASK, self.tr("Label mask raster"), optional=True),
            "A one-band label mask on exactly the image's grid (same size, geotransform and "
            "CRS), e.g. from 'Rasterize labels to a class mask' with the image as REFERENCE. Its "
            "classes, background and ignore values are read from it; for other masks the ignore "
            "value is the mask's nodata (else IGNORE_VALUE) and the background is "
            "BACKGROUND_VALUE. Give MASK or LABELS, not both.",
        )
        self.add_parameter(
            QgsProcessingParameterMultipleLayers(
                self.LABELS,
                self.tr("Vector label layers"),
                SOURCE_VECTOR_ANY_GEOMETRY,
                optional=True,
            ),
            "Vector labels, instead of MASK: they are rasterized onto the image's grid with the "
            "class, value, overlap and buffer parameters below (the rules of 'Rasterize labels "
            "to a class mask') into a temporary mask that is deleted afterwards.",
        )
        LabelParameters.declare(self)
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.CHIP_SIZE,
                self.tr("Chip size (pixels)"),
                NUMBER_INTEGER,
                defaultValue=256,
            ),
            f"Side of the square chips in pixels, from {chips.MIN_CHIP_SIZE} up to the image's smaller side.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.STRIDE,
                self.tr("Stride (pixels, 0: chip size)"),
                NUMBER_INTEGER,
                defaultValue=0,
            ),
            "Distance between the starts of neighbouring chips. 0 means the chip size (chips "
            "touch without overlap); smaller values make overlapping chips. The last chip of a "
            "row or column is moved flush with the image edge.",
        )
        self.add_parameter(
            QgsProcessingParameterEnum(
                self.MODE,
                self.tr("Chips for"),
                options=[CHIP_MODE_DESCRIPTIONS[m] for m in ChipMode],
                defaultValue=int(ChipMode.SEGMENTATION),
            ),
            "0: segmentation image/mask pairs; 1: classification chips in class folders; 2: both.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.MIN_COVER,
                self.tr("Minimum class cover (classification)"),
                NUMBER_DOUBLE,
                defaultValue=0.5,
            ),
            "Classification: a chip takes the foreground class with the largest share of its "
            "labelled pixels when that share is at least this (0..1); a chip without foreground "
            "takes 'background'; other chips are ambiguous and get no class folder.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.VAL_FRACTION,
                self.tr("Validation fraction"),
                NUMBER_DOUBLE,
                defaultValue=0.2,
            ),
            "Share of split blocks (0..1) whose chips go to validation.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.TEST_FRACTION,
                self.tr("Test fraction"),
                NUMBER_DOUBLE,
                defaultValue=0.0,
            ),
            "Share of split blocks (0..1) whose chips go to test; VAL_FRACTION + TEST_FRACTION "
            "must be below 1.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.SPLIT_BLOCK,
                self.tr("Split block size (pixels, 0: 8 chips)"),
                NUMBER_INTEGER,
                defaultValue=0,
            ),
            f"Side of the square blocks that are assigned to splits, in pixels; 0 means "
            f"{DEFAULT_BLOCK_CHIPS} x CHIP_SIZE. Chips touching blocks of different splits are "
            "dropped, so larger blocks lose fewer chips but give coarser fractions.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), NUMBER_INTEGER, defaultValue=42),
            "Seed of the block split and of the empty-chip sampling; the same seed gives the same chips.",
        )
        self.add_parameter(
            QgsProcessingParameterNumber(
                self.KEEP_EMPTY,
                self.tr("Share of empty chips to keep"),
                NUMBER_DOUBLE,
                defaultValue=1.0,
            ),
            "Chips without any foreground class pixel are kept with this probability (0..1; 1 "
            "keeps all), drawn per chip from the seed.",
        )
        self.add_parameter(
            QgsProcessingParameterFolderDestination(self.OUTPUT, self.tr("Output folder")),
            "A new (or empty) folder for the dataset; an existing non-empty folder is refused. "
            "See the layout in the algorithm help.",
        )
        self.addOutput(
            QgsProcessingOutputVectorLayer(self.INDEX, self.tr("Chip index"), SOURCE_VECTOR_POLYGON)
        )
        self.addOutput(QgsProcessingOutputString(self.CHIP_COUNTS, self.tr("Chip counts (JSON)")))
        self.addOutput(
            QgsProcessingOutputString(self.STATISTICS, self.tr("Class statistics per split (JSON)"))
        )

    def _settings(
        self, parameters: dict[str, Any], context: QgsProcessingContext, grid: RasterGrid
    ) -> tuple[ChipPlan, SplitSettings, ChipRules]:
        chip_size = self.parameterAsInt(parameters, self.CHIP_SIZE, context)
        stride = self.parameterAsInt(parameters, self.STRIDE, context)
        block = self.parameterAsInt(parameters, self.SPLIT_BLOCK, context)
        seed = self.parameterAsInt(parameters, self.SEED, context)
        plan = ChipPlan(grid.width, grid.height, chip_size, stride if stride != 0 else chip_size)
        split = SplitSettings(
            val_fraction=self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
            test_fraction=self.parameterAsDouble(parameters, self.TEST_FRACTION, context),
            block_size=block if block != 0 else DEFAULT_BLOCK_CHIPS * chip_size,
            seed=seed,
        )
        rules = ChipRules(
            mode=ChipMode(self.parameterAsEnum(parameters, self.MODE, context)),
            background_value=None,  # known once the mask is
            min_cover=self.parameterAsDouble(parameters, self.MIN_COVER, context),
            keep_empty=self.parameterAsDouble(parameters, self.KEEP_EMPTY, context),
            seed=seed,
        )
        return plan, split, rules

    def compute(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        image_layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if image_layer is None:
            raise RsdlError("INPUT: choose the image raster to cut into chips.")
        source = LabelParameters.read_source(
            self,
            parameters,
            context,
            self.MASK,
            self.LABELS,
            missing="Give the labels: a label mask raster (MASK) or vector label layers (LABELS).",
            both="Give either a label mask raster (MASK) or vector label layers (LABELS), not both.",
        )
        grid = grid_from_raster_layer(image_layer)
        image = open_gdal(image_layer)
        plan, split_settings, rules = self._settings(parameters, context, grid)
        block_split = BlockSplit(grid.width, grid.height, plan.size, split_settings)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        feedback.pushInfo(
            f"{len(plan)} chips of {plan.size} px every {plan.stride} px on a {grid.width} x {grid.height} "
            f"image; split blocks of {split_settings.block_size} px: {block_split.block_counts()}."
        )

        steps = QgsProcessingMultiStepFeedback(source.step_count, feedback)
        transform = context.transformContext()
        with atomic_folder(output) as folder:
            # The temporary mask lives in the temporary output folder: gone with it on failure.
            with label_mask(source, image_layer, grid, image, folder, transform, steps, GRID_HINT) as mask:
                values = mask.description.values
                rules = dataclasses.replace(
                    rules, background_value=None if values.unlabelled_is_ignore else values.background_value
                )
                writer = ChipFileWriter(image, mask.dataset, grid, values.ignore_value)
                cutter = _ChipCutter(folder, rules, mask.description, writer)
                _cut_all(plan, block_split, StripReader(image, mask.dataset, plan.size), cutter, steps)
            description = mask.description

            tally = cutter.tally
            _refuse_no_chips(tally, image_layer)
            classes = _all_classes(description, tally, rules.background_value)
            pixel_values = sorted({c.value for c in classes} | set(cutter.names))
            write_chip_index(
                folder / INDEX_FILE, cutter.records, grid, writer.projection, pixel_values, feedback
            )
            statistics = self._report(classes, tally, description, feedback)
            _warn_empty_splits(tally, split_settings, feedback)
            document = dataset_document(
                rules=rules,
                chip_size=plan.size,
                stride=plan.stride,
                split=split_settings,
                block_counts=block_split.block_counts(),
                image=_image_summary(image_layer, image, grid),
                labels=_labels_summary(source, writer),
                classes=classes,
                values=values,
                folders=cutter.folders,
                tally=tally,
                statistics=statistics,
            )
            (folder / DATASET_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")
            raise_if_cancelled(feedback)  # a cancel after the last chip still leaves no folder

        return {
            self.OUTPUT: output,
            self.INDEX: str(Path(output) / INDEX_FILE),
            self.CHIP_COUNTS: json.dumps(tally.counts()),
            self.STATISTICS: json.dumps(statistics),
        }

    @staticmethod
    def _report(
        classes: list[LabelClass],
        tally: ChipTally,
        description: MaskDescription,
        feedback: QgsProcessingFeedback,
    ) -> dict[str, Any]:
        """Log chip counts and a class table per split; returns the tables by split name."""
        counts = tally.counts()
        feedback.pushInfo(
            "Chips written: " + ", ".join(f"{split.value} {counts[split.value]}" for split in Split)
        )
        dropped = counts[ChipOutcome.STRADDLING.value]
        if dropped:
            feedback.pushWarning(
                f"{dropped} chips touch split blocks of different splits and were dropped, so that "
                "no validation or test chip overlaps a training chip."
            )
        for outcome in (ChipOutcome.NODATA, ChipOutcome.ALL_IGNORE, ChipOutcome.EMPTY, ChipOutcome.AMBIGUOUS):
            if counts[outcome.value]:
                feedback.pushInfo(f"{outcome.value.replace('_', ' ')}: {counts[outcome.value]} chips")
        statistics: dict[str, Any] = {}
        for split in Split:
            split_statistics = tally.statistics.get(split)
            if split_statistics is None:
                continue
            feedback.pushInfo(f"Split '{split.value}' ({tally.written[split]} chips):")
            rows = class_table(classes, split_statistics, description.values)
            log_class_table(rows, split_statistics.ignored, feedback)
            statistics[split.value] = {
                "chips": tally.written[split],
                "classes": rows,
                "ignored_pixels": split_statistics.ignored,
            }
        return statistics
