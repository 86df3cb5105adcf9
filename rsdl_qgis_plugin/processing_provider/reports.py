"""Class statistics in the log, as a JSON file and as a chart."""

from __future__ import annotations

import json

from qgis.core import QgsProcessingFeedback

from ..core.files.atomic_output import AtomicOutputs, atomic_file
from ..core.labels.label_rules import LabelClass, MaskValues
from ..core.metrics.class_statistics import ClassStatistics
from ..core.reports.class_chart import write_class_chart
from ..core.reports.class_table import class_table, class_table_lines


def log_class_table(rows: list[dict[str, object]], ignored: int, feedback: QgsProcessingFeedback) -> None:
    for line in class_table_lines(rows, ignored):
        if line.warning:
            feedback.pushWarning(line.text)
        else:
            feedback.pushInfo(line.text)


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
