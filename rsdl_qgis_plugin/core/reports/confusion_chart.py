"""Confusion-matrix heatmap: counts coloured by the share of each reference class (row).

Row shares (the recall of each class) keep rare classes readable beside a dominant background.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .figures import new_figure

__all__ = [
    "MAX_ANNOTATED_SHARES",
    "confusion_figure",
]

MAX_ANNOTATED_SHARES = 8  # above this many classes, cells show the count only


def confusion_figure(matrix: np.ndarray, names: list[str], title: str = "Confusion matrix") -> Any:
    """A matplotlib Figure of ``matrix[reference, prediction]`` with ``names`` on both axes."""
    matrix = np.asarray(matrix, dtype=np.int64)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    size = max(4.0, 0.75 * len(names) + 2.5)
    figure = new_figure(size + 1.0, size, dpi=110, purpose="The confusion-matrix heatmap")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the reference class")
    ticks = np.arange(len(names))
    axes.set_xticks(ticks)
    slanted = len(names) > 3
    axes.set_xticklabels(names, rotation=30 if slanted else 0, ha="right" if slanted else "center")
    axes.set_yticks(ticks)
    axes.set_yticklabels(names)
    axes.set_xlabel("prediction")
    axes.set_ylabel("reference")
    axes.set_title(title)
    small = len(names) > MAX_ANNOTATED_SHARES
    for row in range(len(names)):
        for col in range(len(names)):
            share = shares[row, col]
            text = f"{matrix[row, col]:,}" if small else f"{matrix[row, col]:,}\n{100 * share:.1f}%"
            axes.text(
                col,
                row,
                text,
                ha="center",
                va="center",
                fontsize=6 if small else 8,
                color="white" if share > 0.5 else "black",
            )
    figure.tight_layout()
    return figure
