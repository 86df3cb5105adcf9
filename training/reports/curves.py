"""Training curves from a Lightning ``CSVLogger`` log (``metrics.csv``).

Lightning writes one row per logging call, with empty cells for metrics not logged in that row;
epoch-level metrics sit on the step at which the epoch ended. Each metric is drawn against the
step from its own non-empty rows.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from matplotlib.figure import Figure

from rsdl_qgis_plugin.core.errors import RsdlError

from .figures import save_png

_AXIS_COLUMNS = ("epoch", "step")


def read_metrics_csv(path: str | os.PathLike) -> dict[str, tuple[list[float], list[float]]]:
    """metric name -> (steps, values) from a Lightning metrics.csv (steps are epochs if no step)."""
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    if not rows:
        raise RsdlError(f"The training log '{path}' has no rows; train for at least one step first.")
    axis = "step" if "step" in rows[0] else "epoch"
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        x = _number(row.get(axis))
        if x is None:
            continue
        for name, cell in row.items():
            value = _number(cell)
            if name in _AXIS_COLUMNS or value is None:
                continue
            steps, values = series.setdefault(name, ([], []))
            steps.append(x)
            values.append(value)
    return series


def _number(cell: str | None) -> float | None:
    try:
        value = float(cell) if cell not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _group(name: str) -> str:
    lowered = name.lower()
    if "loss" in lowered:
        return "loss"
    if lowered.startswith("lr") or "learning_rate" in lowered:
        return "learning_rate"
    return "metrics"


def write_training_curves(metrics_csv: str | os.PathLike, folder: str | os.PathLike) -> list[Path]:
    """``training_<loss|metrics|learning_rate>.png`` in ``folder``, one per group with data."""
    series = read_metrics_csv(metrics_csv)
    groups: dict[str, list[str]] = {}
    for name in sorted(series):
        groups.setdefault(_group(name), []).append(name)
    written = []
    for group, names in groups.items():
        figure = Figure(figsize=(7.0, 4.0))
        axes = figure.add_subplot()
        for name in names:
            steps, values = series[name]
            marker = "o" if len(values) < 30 else None  # epoch-level series are short: show points
            axes.plot(steps, values, label=name, marker=marker, markersize=3)
        axes.set_xlabel("step")
        axes.set_ylabel(group.replace("_", " "))
        if group == "learning_rate":
            axes.set_yscale("log")
        axes.set_title(f"Training {group.replace('_', ' ')}")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        written.append(save_png(figure, Path(folder) / f"training_{group}.png"))
    return written
