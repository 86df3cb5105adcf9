"""Attribution overlay PNG: the image, the signed attribution map, and its magnitude over the image."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .figures import save_png

SCALE_PERCENTILE = 99.5  # colour scale: robust to a few extreme pixels


def write_attribution_png(
    picture: np.ndarray,
    attribution: np.ndarray,
    path: str | os.PathLike,
    title: str,
    target_window: tuple[int, int, int, int] | None = None,
) -> Path:
    """``picture`` (H, W, 3) in 0..1, ``attribution`` (H, W) summed over bands; ``target_window``
    (col, row, width, height) is outlined on the image."""
    finite = np.nan_to_num(attribution)
    scale = float(np.percentile(np.abs(finite), SCALE_PERCENTILE)) or float(np.abs(finite).max()) or 1.0
    figure = Figure(figsize=(12.0, 4.4))
    image_axes, signed_axes, overlay_axes = figure.subplots(1, 3)
    image_axes.imshow(picture, interpolation="nearest")
    image_axes.set_title("image" + (" and target window" if target_window else ""))
    shown = signed_axes.imshow(finite, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    if target_window is not None:
        col, row, width, height = target_window
        for axes, color in ((image_axes, "#ffd400"), (signed_axes, "#333333")):
            corner = (col - 0.5, row - 0.5)
            axes.add_patch(Rectangle(corner, width, height, fill=False, edgecolor=color, linewidth=2))
    figure.colorbar(shown, ax=signed_axes, fraction=0.046, pad=0.04)
    signed_axes.set_title("attribution (sum over bands)")
    magnitude = np.clip(np.abs(finite) / scale, 0.0, 1.0)
    grey = picture.mean(axis=2, keepdims=True).repeat(3, axis=2)
    heat = np.zeros_like(picture)
    heat[..., 0] = 1.0  # red where the attribution is strongest
    overlay_axes.imshow(
        grey * (1 - magnitude[..., None]) + heat * magnitude[..., None], interpolation="nearest"
    )
    overlay_axes.set_title("|attribution| over the image")
    for axes in (image_axes, signed_axes, overlay_axes):
        axes.set_axis_off()
    figure.suptitle(title)
    figure.tight_layout()
    return save_png(figure, path)
