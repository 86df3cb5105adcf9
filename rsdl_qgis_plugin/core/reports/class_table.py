"""The class table of a label mask: rows per class from ClassStatistics, and its log lines.

Pure: the caller pushes the lines to its log (processing_provider/reports.py, qgis_io/chip_export.py).
"""

from __future__ import annotations

from typing import NamedTuple

from ..labels.label_rules import LabelClass, MaskValues
from ..metrics.class_statistics import ClassStatistics

__all__ = [
    "LogLine",
    "class_table",
    "class_table_lines",
]


class LogLine(NamedTuple):
    """One line of a report for a processing log; ``warning`` lines go to the log as warnings."""

    text: str
    warning: bool = False


def class_table(
    classes: list[LabelClass], statistics: ClassStatistics, values: MaskValues
) -> list[dict[str, object]]:
    """Rows per class (background included when it is a value of the mask), with colours."""
    names = {c.value: c.name for c in classes}
    colors = {c.value: c.color for c in classes}
    if not values.unlabelled_is_ignore:
        names.setdefault(values.background_value, "background")
        colors.setdefault(values.background_value, "#000000")
    rows = statistics.as_table(names)
    for row in rows:
        row["color"] = colors.get(int(row["value"]), "#808080")
    return rows


def class_table_lines(rows: list[dict[str, object]], ignored: int) -> list[LogLine]:
    """The table as log lines, with a warning for each class that has no pixels."""
    lines = [LogLine("Class pixel counts (suggested weights are inverse-frequency, 'balanced'):")]
    for row in rows:
        lines.append(
            LogLine(
                f"  {row['value']:>5}  {row['name']:<24} {row['pixels']:>12,} px  "
                f"{100.0 * float(row['share']):6.2f}%  weight {row['weight']:.4f}"
            )
        )
        if row["pixels"] == 0:
            lines.append(LogLine(f"Class '{row['name']}' ({row['value']}) has no pixels on this grid.", True))
    lines.append(LogLine(f"  ignore: {ignored:,} px"))
    return lines
