"""Turn blended rows into output rasters: classes and confidence, or values (regression).

QGIS-free: writers are anything with ``write_rows(first_row, values)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..core.label_rules import LabelClass, default_class_color
from ..core.model_spec import ModelSpec
from .engine import HeadLayout

FLOAT_NODATA = float("nan")
# Tiling when neither the user nor the model says otherwise (rsdl:segment and training predict).
DEFAULT_TILE_SIZE = 512
DEFAULT_OVERLAP_PERCENT = 15.0


class RowWriter(Protocol):
    def write_rows(self, first_row: int, values: np.ndarray) -> None: ...


def class_nodata_value(class_values: list[int]) -> tuple[np.dtype, int]:
    """The class raster's type and nodata value: 255 in Byte when classes fit below it."""
    top = max(class_values, default=0)
    if top < 255:
        return np.dtype(np.uint8), 255
    return np.dtype(np.uint16), 65535


def classes_and_confidence(
    values: np.ndarray, seg_thresh: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class per pixel, its probability, and where there is no data (NaN).

    One channel is the probability of class 1 (class 0 below ``seg_thresh``), as in Deepness;
    several channels are per-class probabilities (argmax).
    """
    nodata = np.isnan(values).any(axis=0)
    filled = np.where(np.isnan(values), 0.0, values)
    if values.shape[0] == 1:
        probability = filled[0]
        classes = (probability >= seg_thresh).astype(np.int64)
        confidence = np.where(classes == 1, probability, 1.0 - probability)
    else:
        classes = filled.argmax(axis=0)
        confidence = filled.max(axis=0)
    return classes, confidence.astype(np.float32), nodata


class SegmentationSink:
    """Writes the class raster (and optionally the confidence raster) of one output head."""

    def __init__(
        self,
        class_writer: RowWriter,
        confidence_writer: RowWriter | None,
        seg_thresh: float,
        class_dtype: np.dtype,
        class_nodata: int,
    ) -> None:
        self.class_writer = class_writer
        self.confidence_writer = confidence_writer
        self.seg_thresh = seg_thresh
        self.class_dtype = class_dtype
        self.class_nodata = class_nodata

    def write_rows(self, first_row: int, values: np.ndarray) -> None:
        classes, confidence, nodata = classes_and_confidence(values, self.seg_thresh)
        classes = classes.astype(self.class_dtype)
        classes[nodata] = self.class_nodata
        self.class_writer.write_rows(first_row, classes[None])
        if self.confidence_writer is not None:
            confidence[nodata] = FLOAT_NODATA
            self.confidence_writer.write_rows(first_row, confidence[None])


class ValueSink:
    """Writes a head's values as they are (regression): float32, NaN where there is no data."""

    def __init__(self, writer: RowWriter) -> None:
        self.writer = writer

    def write_rows(self, first_row: int, values: np.ndarray) -> None:
        self.writer.write_rows(first_row, values.astype(np.float32, copy=False))


def head_classes(spec: ModelSpec, layout: HeadLayout, head: int) -> list[LabelClass]:
    """Classes of a segmentation head. One channel is background (0) against its class (1):
    named by the spec's class 1 when it names two classes, else by its class 0 (Deepness)."""
    named = spec.head_class_names[head] if head < len(spec.head_class_names) else {}
    if layout.channels == 1:
        foreground = named.get(1) or named.get(0) or "foreground"
        names = {0: named.get(0, "background") if 1 in named else "background", 1: foreground}
    else:
        names = {value: spec.class_name(value, head) for value in range(layout.channels)}
    colors = spec.class_colors if head == 0 else {}
    return [
        LabelClass(value, name, colors.get(value) or default_class_color(name, value + 1))
        for value, name in names.items()
    ]
