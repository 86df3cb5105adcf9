"""An evaluation's results as a per-class CSV table and a self-contained HTML page.

Both take the dictionary of ``ConfusionMatrix.as_dict``; the HTML page embeds the heatmap PNG
(base64), so it can be moved or mailed as one file.
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any

from .html_page import embedded_png, number, page_start, table

__all__ = [
    "COUNT_COLUMNS",
    "CSV_COLUMNS",
    "SUMMARY",
    "metrics_csv",
    "metrics_html",
]

CSV_COLUMNS = ("value", "name", "iou", "f1", "precision", "recall", "support", "predicted")
COUNT_COLUMNS = ("value", "name", "support", "predicted")
SUMMARY = (
    ("overall_accuracy", "Overall accuracy"),
    ("kappa", "Cohen's kappa"),
    ("mean_iou", "Mean IoU"),
    ("mean_f1", "Mean F1"),
)


def metrics_csv(metrics: dict[str, Any]) -> str:
    """One row per class; undefined ratios are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in metrics["classes"]:
        writer.writerow(
            [row[column] if column in COUNT_COLUMNS else number(row[column], 6) for column in CSV_COLUMNS]
        )
    return buffer.getvalue()


def metrics_html(
    title: str, inputs: list[tuple[str, str]], metrics: dict[str, Any], heatmap_png: bytes | None
) -> str:
    """The report page: inputs, summary, per-class table, heatmap and the matrix as a table."""
    summary = [[html.escape(label), number(metrics[key])] for key, label in SUMMARY]
    summary += [
        ["Pixels evaluated", f"{metrics['labelled']:,}"],
        ["Pixels left out (ignore or nodata)", f"{metrics['excluded']:,}"],
    ]
    classes = [
        [
            html.escape(str(row["value"])),
            f"<span class='name'>{html.escape(row['name'])}</span>",
            *(number(row[key]) for key in ("iou", "f1", "precision", "recall")),
            f"{row['support']:,}",
            f"{row['predicted']:,}",
        ]
        for row in metrics["classes"]
    ]
    matrix = metrics["confusion_matrix"]
    names = matrix["classes"]  # raw: the header escapes its cells, row cells are escaped here
    matrix_rows = [
        [html.escape(name), *(f"{count:,}" for count in counts)]
        for name, counts in zip(names, matrix["values"])
    ]
    parts = [
        *page_start(title, inputs),
        "<h2>Summary</h2>",
        table(["Metric", "Value"], summary),
        "<h2>Per class</h2>",
        table(
            ["Value", "Class", "IoU", "F1", "Precision", "Recall", "Reference pixels", "Predicted pixels"],
            classes,
        ),
    ]
    if heatmap_png:
        parts += [
            "<h2>Confusion matrix</h2>",
            embedded_png(heatmap_png, "Confusion matrix heatmap"),
        ]
    else:
        parts.append("<h2>Confusion matrix</h2>")
    parts += [
        table(["reference \\ prediction", *names], matrix_rows),
        "<p class='note'>Rows are reference classes, columns predicted classes. A blank value is "
        "undefined (a class never predicted has no precision, one absent from the reference no "
        "recall). Means are over the classes present in the reference or the prediction.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
