"""Class-distribution bar chart (PNG), shared by the plugin's reports and training."""

from __future__ import annotations

import os
from pathlib import Path

from ..files.atomic_output import AtomicOutputs
from .figures import new_figure, save_png

__all__ = [
    "write_class_chart",
]


def write_class_chart(
    rows: list[dict[str, object]],
    path: str | os.PathLike,
    title: str = "Class distribution",
    outputs: AtomicOutputs | None = None,
) -> Path:
    """Bar chart of pixel counts per class (rows as from ``ClassStatistics.as_table``); with
    ``outputs`` it is renamed into place when that group commits."""
    names = [str(row["name"]) for row in rows]
    pixels = [int(row["pixels"]) for row in rows]
    colors = [str(row.get("color", "#4c72b0")) for row in rows]
    figure = new_figure(max(4.0, 0.9 * len(rows) + 2.0), 3.6, purpose="The class chart")
    axes = figure.add_subplot()
    bars = axes.bar(names, pixels, color=colors, edgecolor="#333333")
    total = sum(pixels) or 1
    for bar, count in zip(bars, pixels):
        axes.annotate(
            f"{count:,}\n{100.0 * count / total:.1f}%",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axes.set_ylabel("pixels")
    axes.set_title(title)
    axes.margins(y=0.25)
    axes.tick_params(axis="x", labelrotation=30 if len(rows) > 4 else 0)
    figure.tight_layout()
    return save_png(figure, path, outputs)
