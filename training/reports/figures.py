"""Shared figure plumbing: saving PNGs atomically, images for display, class colours."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.files.atomic_output import atomic_file
from rsdl_qgis_plugin.core.labels.label_rules import default_class_color, hex_to_rgb

DPI = 110
STRETCH_PERCENTILES = (2.0, 98.0)
OVERLAY_ALPHA = 0.45


def save_png(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` as a PNG, complete or absent (temporary file, then rename)."""
    with atomic_file(path, sidecars=()) as temp:
        figure.savefig(temp, format="png", dpi=DPI)
    return Path(path)


def display_rgb(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """A normalised (C, H, W) model input as an (H, W, 3) picture in 0..1.

    The spec's standardisation is undone, then each channel is stretched between its 2nd and
    98th percentile, because multispectral or 16-bit inputs are unreadable at their raw scale.
    The first three channels are shown as red, green, blue; one channel as grey.
    """
    channels = image.shape[0]
    mean = np.resize(np.asarray(spec.standardization_mean, dtype=np.float32), channels)
    std = np.resize(np.asarray(spec.standardization_std, dtype=np.float32), channels)
    pixels = image * std[:, None, None] + mean[:, None, None]
    shown = pixels[:3] if channels >= 3 else np.repeat(pixels[:1], 3, axis=0)
    low, high = np.nanpercentile(shown, STRETCH_PERCENTILES, axis=(1, 2), keepdims=True)
    stretched = (shown - low) / np.where(high > low, high - low, 1.0)
    return np.clip(np.nan_to_num(stretched), 0.0, 1.0).transpose(1, 2, 0)


def class_names(spec: ModelSpec, count: int) -> dict[int, str]:
    """Names of classes 0..count-1 (``class_<value>`` where the spec names none)."""
    return {value: spec.class_name(value) for value in range(count)}


def class_colors(spec: ModelSpec, count: int) -> np.ndarray:
    """(count, 3) RGB colours in 0..1: the spec's ``class_colors``, else the plugin's defaults."""
    colors = []
    for value, name in class_names(spec, count).items():
        color = spec.class_colors.get(value) or default_class_color(name, value + 1)
        colors.append(hex_to_rgb(color))
    return np.asarray(colors, dtype=np.float32) / 255.0


def overlay_classes(picture: np.ndarray, classes: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """``picture`` (H, W, 3) with class colours blended in; values outside the palette stay clear."""
    known = (classes >= 0) & (classes < len(colors))
    tinted = picture.copy()
    tinted[known] = (1 - OVERLAY_ALPHA) * picture[known] + OVERLAY_ALPHA * colors[classes[known]]
    return tinted
