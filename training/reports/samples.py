"""A grid of sample predictions: image, reference and prediction overlaid (segmentation), or
the image titled with reference and predicted class (classification)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec

from .figures import class_colors, class_names, display_rgb, overlay_classes, save_png

CLASSIFIER_COLUMNS = 4
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
