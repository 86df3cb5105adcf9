"""Normalisation for training: a ModelSpec (the plugin's own code) built from data and options.

Training normalises with ``ModelSpec.normalize`` and exports the same spec, so the plugin applies
exactly what training applied. Mean and std not given are measured on training images, in units
of ``pixels / max_pixel_value``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rsdl_qgis_plugin.core.contract.model_spec import DEFAULT_MAX_PIXEL_VALUE

MIN_STD = 1e-6  # a constant band must not divide by zero (ModelSpec refuses std 0)


def default_max_pixel_value(dtype: str | np.dtype) -> float:
    """255 for 8-bit data, the type's maximum for other integers, 1 for floats."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui" and dtype.itemsize > 1:
        return float(np.iinfo(dtype).max)
    if dtype.kind == "f":
        return 1.0
    return DEFAULT_MAX_PIXEL_VALUE


class BandStatistics:
    """Running per-band sums over valid pixels, for mean and standard deviation."""

    def __init__(self, bands: int, max_pixel_value: float) -> None:
        self.scale = float(max_pixel_value)
        self.total = np.zeros(bands, dtype=np.float64)
        self.squares = np.zeros(bands, dtype=np.float64)
        self.count = 0

    def add(self, pixels: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Add a (C, H, W) block; ``valid`` (H, W) marks the pixels to count."""
        values = pixels.reshape(pixels.shape[0], -1).astype(np.float64) / self.scale
        keep = np.isfinite(values).all(axis=0)
        if valid is not None:
            keep &= valid.reshape(-1)
        values = values[:, keep]
        self.total += values.sum(axis=1)
        self.squares += np.square(values).sum(axis=1)
        self.count += values.shape[1]

    def mean_std(self) -> tuple[list[float], list[float]]:
        if self.count == 0:
            raise ValueError("No valid training pixels to measure the band mean and std on.")
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.squares / self.count - mean**2, 0.0))
        return [float(v) for v in mean], [float(max(v, MIN_STD)) for v in std]


def per_band(name: str, values: Sequence[float] | None, bands: int) -> list[float] | None:
    """One value per band (a single value is repeated); refuses other lengths."""
    if values is None:
        return None
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * bands
    if len(values) != bands:
        raise ValueError(
            f"{name} has {len(values)} values for {bands} bands; give one per band or one for all."
        )
    return values
