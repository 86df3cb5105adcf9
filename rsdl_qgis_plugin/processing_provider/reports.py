"""Class statistics in the log, as a JSON file and as a chart."""

from __future__ import annotations

import json

from qgis.core import QgsProcessingFeedback

from ..core.files.atomic_output import AtomicOutputs, atomic_file
from ..core.labels.label_rules import LabelClass, MaskValues
from ..core.metrics.class_statistics import ClassStatistics
from ..core.reports.class_chart import write_class_chart


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


def log_class_table(rows: list[dict[str, object]], ignored: int, feedback: QgsProcessingFeedback) -> None:
    feedback.pushInfo("Class pixel counts (suggested weights are inverse-frequency, 'balanced'):")
    for row in rows:
        feedback.pushInfo(
            f"  {row['value']:>5}  {row['name']:<24} {row['pixels']:>12,} px  "
            f"{100.0 * float(row['share']):6.2f}%  weight {row['weight']:.4f}"
        )
        if row["pixels"] == 0:
            feedback.pushWarning(f"Class '{row['name']}' ({row['value']}) has no pixels on this grid.")
    feedback.pushInfo(f"  ignore: {ignored:,} px")


def report_class_statistics(
    classes: list[LabelClass],
    statistics: ClassStatistics,
    values: MaskValues,
    feedback: QgsProcessingFeedback,
    json_path: str = "",
    chart_path: str = "",
    outputs: AtomicOutputs | None = None,
) -> list[dict[str, object]]:
    """Log the class table and write the optional JSON file and PNG chart (in ``outputs`` when
    given); returns the rows."""
    rows = class_table(classes, statistics, values)
    log_class_table(rows, statistics.ignored, feedback)
    if json_path:
        document = {
            "classes": rows,
            "ignored_pixels": statistics.ignored,
            "ignore_value": values.ignore_value,
        }
        with atomic_file(json_path, sidecars=(), outputs=outputs) as temp:
            temp.write_text(json.dumps(document, indent=2), encoding="utf-8")
    if chart_path:
        write_class_chart(rows, chart_path, outputs=outputs)
    return rows
