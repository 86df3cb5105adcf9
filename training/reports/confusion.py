"""Confusion-matrix heatmap: counts coloured by the share of each reference class (row)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .figures import save_png


def write_confusion_matrix(
    matrix: np.ndarray, names: list[str], path: str | os.PathLike, title: str = "Confusion matrix"
) -> Path:
    """Heatmap of ``matrix[reference, prediction]``; colour is the row share, text the count and share.

    Row shares (recall per class) keep rare classes readable next to a dominant background.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    size = max(4.0, 0.75 * len(names) + 2.5)
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the reference class")
    ticks = np.arange(len(names))
    axes.set_xticks(ticks, names, rotation=30 if len(names) > 3 else 0, ha="right")
    axes.set_yticks(ticks, names)
    axes.set_xlabel("prediction")
    axes.set_ylabel("reference")
    axes.set_title(title)
    small = len(names) > 8
    for row in range(len(names)):
        for col in range(len(names)):
            share = shares[row, col]
            axes.text(
                col,
                row,
                f"{matrix[row, col]:,}" if small else f"{matrix[row, col]:,}\n{100 * share:.1f}%",
                ha="center",
                va="center",
                fontsize=6 if small else 8,
                color="white" if share > 0.5 else "black",
            )
    figure.tight_layout()
    return save_png(figure, path)
