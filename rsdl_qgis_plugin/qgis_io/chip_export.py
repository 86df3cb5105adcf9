"""GDAL side of one chip export: cut the chips strip by strip, then write the index and dataset.json.

The decisions are core's: where chips go and which are kept (core/datasets/chips.py), the run's
classes, refusal and report (core/datasets/chip_export.py), the folder layout
(core/datasets/chip_folder.py). Strips are read by qgis_io/chip_writer.py, so memory stays at about
chip size x image width x bands whatever the image size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from osgeo import gdal, gdal_array
from qgis.core import QgsFeedback, QgsRasterLayer

from ..core.datasets.chip_export import (
    ChipExportSettings,
    all_classes,
    chip_report_lines,
    empty_split_warnings,
    refuse_no_chips,
    split_statistics,
)
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
from ..core.datasets.chips import ChipDecision, ChipOutcome, ChipTally, ChipWindow, Split, decide_chip
from ..core.datasets.object_chips import object_report_lines
from ..core.labels.label_rules import unnamed_class_name
from ..core.metrics.class_statistics import ClassStatistics
from ..core.raster.grid import RasterGrid
from .chip_index import write_chip_index
from .chip_writer import ChipFileWriter, Strip, StripReader
from .gdal_calls import raise_if_cancelled
from .label_source import LabelMask, LabelSource
from .mask_description import MaskDescription
from .object_chips import ObjectChips


class ChipCutter:
    """Decides, writes and records the chips of one run (one instance per run, never on an algorithm)."""

    def __init__(
        self,
        folder: Path,
        settings: ChipExportSettings,
        description: MaskDescription,
        writer: ChipFileWriter,
        objects: ObjectChips | None = None,
    ) -> None:
        self.folder = folder
        self.objects = objects
        self.settings = settings
        self.rules = settings.rules
        self.description = description
        self.ignore_value = description.values.ignore_value
        self.writer = writer
        self.names = {c.value: c.name for c in description.classes}
        if self.rules.background_value is not None:
            self.names.setdefault(self.rules.background_value, BACKGROUND_NAME)
        self.folders = ClassFolders(self.names) if self.rules.mode.writes_classification else None
        self.tally = ChipTally(self.ignore_value, classification=self.rules.mode.writes_classification)
        self.records: list[ChipRecord] = []

    def drop_straddling(self) -> None:
        self.tally.add(ChipDecision(ChipOutcome.STRADDLING))

    def cut(self, strip: Strip, window: ChipWindow, split: Split) -> None:
        mask = strip.mask_chip(window, self.ignore_value)
        statistics = ClassStatistics(self.ignore_value)
        statistics.add_block(mask)
        in_chip = self.objects.in_chip(window) if self.objects is not None else None
        object_count = len(in_chip.objects) if in_chip is not None else None
        decision = decide_chip(window, strip.image_all_nodata(window), statistics, self.rules, object_count)
        self.tally.add(decision, split, statistics)
        if decision.outcome != ChipOutcome.WRITTEN:
            return
        image = strip.image_chip(window)
        image_path = mask_path = class_path = class_name = None
        if self.objects is not None and in_chip is not None:
            image_path = image_chip_path(split, window.chip_id)
            self.writer.write_image(self.folder, image_path, window, image)
            self.objects.write(split, window, in_chip)
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
                object_count,
            )
        )

    def cut_all(self, reader: StripReader, feedback: QgsFeedback) -> None:
        """Walk the plan strip by strip; a strip is read only when one of its chips has a split."""
        plan, block_split = self.settings.plan, self.settings.block_split
        rows = plan.row_offsets
        for number, row in enumerate(rows):
            raise_if_cancelled(feedback)
            placed = []
            for window in plan.row(row):
                split = block_split.split_of(window)
                if split is None:
                    self.drop_straddling()
                else:
                    placed.append((window, split))
            if placed:
                strip = reader.read(row, feedback)
                for window, split in placed:
                    raise_if_cancelled(feedback)
                    self.cut(strip, window, split)
            feedback.setProgress(100.0 * (number + 1) / len(rows))


def cut_chips(
    folder: Path,
    settings: ChipExportSettings,
    image: gdal.Dataset,
    mask: LabelMask,
    grid: RasterGrid,
    feedback: QgsFeedback,
    objects: ObjectChips | None = None,
) -> ChipCutter:
    """Cut and write every chip of the plan into ``folder``; the cutter holds the tally and records.

    With ``objects`` (MODE objects) each written chip gets its objects' annotations."""
    values = mask.description.values
    writer = ChipFileWriter(image, mask.dataset, grid, values.ignore_value)
    cutter = ChipCutter(folder, settings.for_mask(values), mask.description, writer, objects)
    cutter.cut_all(StripReader(image, mask.dataset, settings.plan.size), feedback)
    return cutter


def write_chip_dataset(
    folder: Path,
    cutter: ChipCutter,
    image_layer: QgsRasterLayer,
    image: gdal.Dataset,
    source: LabelSource,
    feedback: QgsFeedback,
) -> dict[str, Any]:
    """Refuse a run without chips, write the index, log the report and write dataset.json;
    returns the class statistics per split."""
    tally, settings, description = cutter.tally, cutter.settings, cutter.description
    grid = cutter.writer.grid
    refuse_no_chips(tally, image_layer.name())
    classes = all_classes(description.classes, tally, settings.rules.background_value)
    pixel_values = sorted({c.value for c in classes} | set(cutter.names))
    write_chip_index(
        folder / INDEX_FILE, cutter.records, grid, cutter.writer.projection, pixel_values, feedback
    )
    statistics = split_statistics(classes, tally, description.values)
    for line in chip_report_lines(tally, statistics):
        if line.warning:
            feedback.pushWarning(line.text)
        else:
            feedback.pushInfo(line.text)
    for warning in empty_split_warnings(tally, settings.split):
        feedback.pushWarning(warning)
    objects = cutter.objects
    if objects is not None:
        objects.finish([split for split in Split if tally.written.get(split)])
        for line in object_report_lines(objects.tally, objects.classes, objects.without_area):
            if line.warning:
                feedback.pushWarning(line.text)
            else:
                feedback.pushInfo(line.text)
    document = dataset_document(
        rules=settings.rules,
        chip_size=settings.plan.size,
        stride=settings.plan.stride,
        split=settings.split,
        block_counts=settings.block_split.block_counts(),
        image=image_summary(image_layer, image, grid),
        labels=labels_summary(source, cutter.writer),
        classes=classes,
        values=description.values,
        folders=cutter.folders,
        tally=tally,
        statistics=statistics,
        objects=objects.summary() if objects is not None else None,
    )
    (folder / DATASET_FILE).write_text(json.dumps(document, indent=2), encoding="utf-8")
    return statistics


def labels_summary(source: LabelSource, writer: ChipFileWriter) -> dict[str, Any]:
    """The "labels" entry of dataset.json: the mask or the vector layers, and the mask chips' type."""
    return {
        "mask": source.mask.source() if source.mask is not None else None,
        "layers": [layer.source() for layer in source.layers],
        "dtype": dtype_name(writer.mask_type),
    }


def image_summary(layer: QgsRasterLayer, dataset: gdal.Dataset, grid: RasterGrid) -> dict[str, Any]:
    """The "image" entry of dataset.json: source, size, bands, type, nodata and georeferencing."""
    bands = [dataset.GetRasterBand(i) for i in range(1, dataset.RasterCount + 1)]
    return {
        "path": layer.source(),
        "width": grid.width,
        "height": grid.height,
        "band_count": len(bands),
        "dtype": dtype_name(bands[0].DataType),
        "nodata": [band.GetNoDataValue() for band in bands],
        "crs_wkt": grid.crs_wkt,
        "geotransform": list(grid.geotransform),
    }


def dtype_name(gdal_type: int) -> str:
    """The numpy name of a GDAL data type ("uint8", "uint16"...)."""
    return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(gdal_type)).name
