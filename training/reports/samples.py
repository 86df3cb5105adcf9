"""A grid of sample predictions: image, reference and prediction overlaid (segmentation), the
image titled with reference and predicted class (classification), or the image with reference and
detected objects drawn over it (detection)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.objects.detections import Detections

from .figures import class_colors, class_names, display_rgb, overlay_classes, save_png

CLASSIFIER_COLUMNS = 4
OBJECT_COLUMNS = 3
REFERENCE_COLOR = "#00e5ff"  # reference objects: cyan, dashed (predictions take the class colours)
_RIGHT, _WRONG = "#1a7f37", "#c62828"


@dataclass(frozen=True)
class Sample:
    """One evaluated item: normalised (C, H, W) image, reference and prediction.

    For segmentation ``reference``/``prediction`` are (H, W) class arrays (reference pixels
    outside the classes, e.g. ``ignore_index``, are left clear); for classification, ints.
    """

    image: np.ndarray
    reference: np.ndarray | int
    prediction: np.ndarray | int


def write_sample_grid(
    samples: list[Sample], spec: ModelSpec, num_classes: int, path: str | os.PathLike
) -> Path:
    """One PNG of every sample (segmentation: a row each; classification: a grid of tiles)."""
    if not samples:
        raise ValueError("No samples to draw.")
    if np.ndim(samples[0].reference) == 0:
        return _classification_grid(samples, spec, num_classes, path)
    return _segmentation_rows(samples, spec, num_classes, path)


def _segmentation_rows(samples: list[Sample], spec: ModelSpec, num_classes: int, path) -> Path:
    colors = class_colors(spec, num_classes)
    figure = Figure(figsize=(9.0, 3.0 * len(samples) + 0.6))
    grid = figure.subplots(len(samples), 3, squeeze=False)
    for row, sample in enumerate(samples):
        picture = display_rgb(sample.image, spec)
        panels = (
            ("image", picture),
            ("reference", overlay_classes(picture, np.asarray(sample.reference), colors)),
            ("prediction", overlay_classes(picture, np.asarray(sample.prediction), colors)),
        )
        for axes, (title, shown) in zip(grid[row], panels):
            axes.imshow(shown, interpolation="nearest")
            axes.set_axis_off()
            if row == 0:
                axes.set_title(title)
    _legend(figure, spec, num_classes, colors)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.5 / figure.get_figheight()))
    return save_png(figure, path)


def _classification_grid(samples: list[Sample], spec: ModelSpec, num_classes: int, path) -> Path:
    names = class_names(spec, num_classes)
    columns = min(CLASSIFIER_COLUMNS, len(samples))
    rows = math.ceil(len(samples) / columns)
    figure = Figure(figsize=(2.6 * columns, 2.8 * rows))
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.ravel():
        axes.set_axis_off()
    for axes, sample in zip(grid.ravel(), samples):
        reference, prediction = int(sample.reference), int(sample.prediction)
        axes.imshow(display_rgb(sample.image, spec), interpolation="nearest")
        axes.set_title(
            f"true: {names.get(reference, reference)}\npred: {names.get(prediction, prediction)}",
            fontsize=8,
            color=_RIGHT if reference == prediction else _WRONG,
        )
    figure.tight_layout()
    return save_png(figure, path)


def _legend(figure: Figure, spec: ModelSpec, num_classes: int, colors: np.ndarray) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=colors[value], label=name) for value, name in class_names(spec, num_classes).items()
    ]
    figure.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), fontsize=8, frameon=False)


@dataclass(frozen=True)
class ObjectSample:
    """One evaluated chip of a detector: normalised (C, H, W) image, reference objects and
    detections (chip pixels; ``core.objects.detections``)."""

    image: np.ndarray
    reference: Detections
    prediction: Detections


def _outline(axes, objects: Detections, index: int, color, style: str) -> None:
    """An object's mask outline (pixel edges) when it has a mask, else its (oriented) box."""
    if objects.masks is not None and objects.masks[index].mask.any():
        mask = objects.masks[index]
        rows, cols = mask.mask.shape
        padded = np.pad(mask.mask.astype(np.float32), 1)
        # Contour at 0.5 of the mask, pixel centres at (col + 0.5, row + 0.5) in chip pixels.
        x = mask.col0 - 0.5 + np.arange(cols + 2)
        y = mask.row0 - 0.5 + np.arange(rows + 2)
        axes.contour(x, y, padded, levels=[0.5], colors=[color], linewidths=1.2, linestyles=style)
        return
    corners = objects.corners()[index]
    closed = np.vstack([corners, corners[:1]])
    axes.plot(closed[:, 0], closed[:, 1], color=color, linewidth=1.2, linestyle=style)


def write_object_grid(
    samples: list[ObjectSample], spec: ModelSpec, score_threshold: float, path: str | os.PathLike
) -> Path:
    """One PNG of chips with the reference objects (dashed, ``REFERENCE_COLOR``) and the detections
    scoring at least ``score_threshold`` (class colours, with their scores) drawn over them."""
    if not samples:
        raise ValueError("No samples to draw.")
    from matplotlib.lines import Line2D

    count = max(len(spec.class_names), 1)
    colors = class_colors(spec, count)
    names = class_names(spec, count)
    columns = min(OBJECT_COLUMNS, len(samples))
    rows = math.ceil(len(samples) / columns)
    figure = Figure(figsize=(3.6 * columns, 3.8 * rows + 0.5))
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.ravel():
        axes.set_axis_off()
    for axes, sample in zip(grid.ravel(), samples):
        height, width = sample.image.shape[-2:]
        axes.imshow(display_rgb(sample.image, spec), interpolation="nearest", extent=(0, width, height, 0))
        for index in range(len(sample.reference)):
            _outline(axes, sample.reference, index, REFERENCE_COLOR, "dashed")
        shown = np.flatnonzero(sample.prediction.scores >= score_threshold)
        for index in shown:
            class_id = int(sample.prediction.class_ids[index])
            color = colors[class_id] if 0 <= class_id < len(colors) else (1.0, 0.0, 1.0)
            _outline(axes, sample.prediction, index, color, "solid")
            x1, y1 = sample.prediction.boxes[index, :2]
            axes.text(x1, y1, f"{sample.prediction.scores[index]:.2f}", color=color, fontsize=6, va="bottom")
        axes.set_xlim(0, width)
        axes.set_ylim(height, 0)
        axes.set_title(f"{len(sample.reference)} reference, {len(shown)} detected", fontsize=8)
    handles = [Line2D([], [], color=REFERENCE_COLOR, linestyle="dashed", label="reference")]
    handles += [
        Line2D([], [], color=colors[value], label=f"{name} (score >= {score_threshold:g})")
        for value, name in names.items()
    ]
    figure.legend(handles=handles, loc="upper center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.5 / figure.get_figheight()))
    return save_png(figure, path)
