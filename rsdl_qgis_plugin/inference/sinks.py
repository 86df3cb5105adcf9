"""Turn blended rows into output rasters: classes and confidence, or values (regression).

QGIS-free: writers are anything with ``write_rows(first_row, values)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..core.contract.model_spec import DEFAULT_SEG_THRESH, ModelSpec
from ..core.labels.label_rules import LabelClass, default_class_color
from .engine import HeadLayout

__all__ = [
    "FLOAT_NODATA",
    "RowWriter",
    "SegmentationSink",
    "ValueSink",
    "class_nodata_value",
    "classes_and_confidence",
    "head_classes",
]

FLOAT_NODATA = float("nan")


class RowWriter(Protocol):
    def write_rows(self, first_row: int, values: np.ndarray) -> None: ...


def class_nodata_value(class_values: list[int]) -> tuple[np.dtype, int]:
    """The class raster's type and nodata value: 255 in Byte when classes fit below it."""
    top = max(class_values, default=0)
    if top < 255:
        return np.dtype(np.uint8), 255
    return np.dtype(np.uint16), 65535


def classes_and_confidence(
    values: np.ndarray,
    seg_thresh: float | None,
    class_dtype: np.dtype,
    class_nodata: int,
    confidence: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class per pixel (``class_nodata`` where there is no data) and, when asked, its probability
    (NaN where there is no data). A pixel is nodata when any channel is NaN.

    ``seg_thresh`` is the model's (``ModelSpec.seg_thresh``), applied as Deepness applies it:
    one channel is the probability of class 1, class 0 below the threshold (0.5 when None);
    several channels are per-class probabilities, argmax (the first of equal maxima wins) over
    the channels that reach the threshold, class 0 (the first channel's class) where none does.
    None leaves several channels to a plain argmax. The confidence of several channels is the
    highest probability, also where the threshold fell back to class 0 (there it is below the
    threshold and belongs to the channel that missed it, not to class 0).
    Works on (rows, width) planes with arithmetic rather than masked assignment: an argmax over
    the channel axis copies the whole array, and masked writes are slow on scattered masks.
    """
    class_dtype = np.dtype(class_dtype)
    if values.shape[0] == 1:
        probability = values[0]
        foreground = probability >= (DEFAULT_SEG_THRESH if seg_thresh is None else seg_thresh)
        classes = foreground.astype(class_dtype)
        certainty = None
        if confidence:  # NaN stays NaN: no nodata fill needed
            certainty = np.where(foreground, probability, np.float32(1.0) - probability).astype(
                np.float32, copy=False
            )
        nodata = np.isnan(probability)
    else:
        # Running maximum over the channels. A later channel wins only when strictly higher, so
        # the class index only grows: classes = max(classes, channel * higher) is the argmax.
        # np.maximum propagates NaN, so the maximum is NaN exactly where some channel is.
        certainty = values[0].astype(np.float32, copy=True)
        classes = np.zeros(certainty.shape, dtype=class_dtype)
        higher = np.empty(certainty.shape, dtype=bool)
        candidate = np.empty(certainty.shape, dtype=class_dtype)
        for channel in range(1, values.shape[0]):
            np.greater(values[channel], certainty, out=higher)
            np.multiply(higher, class_dtype.type(channel), out=candidate)
            np.maximum(classes, candidate, out=classes)
            np.maximum(certainty, values[channel], out=certainty)
        if seg_thresh is not None:
            # Deepness zeroes every channel below the threshold before its argmax: the winner is
            # unchanged where the maximum reaches it, and channel 0 (all zeros) where it does not.
            classes *= certainty >= seg_thresh
        nodata = np.isnan(certainty)
        if not confidence:
            certainty = None
    if nodata.any():
        classes *= ~nodata
        classes += nodata * class_dtype.type(class_nodata)
    return classes, certainty


class SegmentationSink:
    """Writes the class raster (and optionally the confidence raster) of one output head."""

    def __init__(
        self,
        class_writer: RowWriter,
        confidence_writer: RowWriter | None,
        seg_thresh: float | None,
        class_dtype: np.dtype,
        class_nodata: int,
    ) -> None:
        self.class_writer = class_writer
        self.confidence_writer = confidence_writer
        self.seg_thresh = seg_thresh
        self.class_dtype = np.dtype(class_dtype)
        self.class_nodata = class_nodata

    def write_rows(self, first_row: int, values: np.ndarray) -> None:
        classes, confidence = classes_and_confidence(
            values,
            self.seg_thresh,
            self.class_dtype,
            self.class_nodata,
            confidence=self.confidence_writer is not None,
        )
        self.class_writer.write_rows(first_row, classes[None])
        if self.confidence_writer is not None:
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
