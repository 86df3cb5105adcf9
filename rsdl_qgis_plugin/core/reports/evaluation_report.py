"""An evaluation's results as a per-class CSV table and a self-contained HTML page.

Both take the dictionary of ``ConfusionMatrix.as_dict``; the HTML page embeds the heatmap PNG
(base64), so it can be moved or mailed as one file.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from typing import Any

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
_STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:3px 10px;text-align:right}"
    "td:first-child,th:first-child,td.name{text-align:left}th{background:#f0f0f0}"
    ".note{color:#555;font-size:90%}"
)


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def metrics_csv(metrics: dict[str, Any]) -> str:
    """One row per class; undefined ratios are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in metrics["classes"]:
        writer.writerow(
            [row[column] if column in COUNT_COLUMNS else _number(row[column], 6) for column in CSV_COLUMNS]
        )
    return buffer.getvalue()


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def metrics_html(
    title: str, inputs: list[tuple[str, str]], metrics: dict[str, Any], heatmap_png: bytes | None
) -> str:
    """The report page: inputs, summary, per-class table, heatmap and the matrix as a table."""
    summary = [[html.escape(label), _number(metrics[key])] for key, label in SUMMARY]
    summary += [
        ["Pixels evaluated", f"{metrics['labelled']:,}"],
        ["Pixels left out (ignore or nodata)", f"{metrics['excluded']:,}"],
    ]
    classes = [
        [
            html.escape(str(row["value"])),
            f"<span class='name'>{html.escape(row['name'])}</span>",
            *(_number(row[key]) for key in ("iou", "f1", "precision", "recall")),
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
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _table(["Input", ""], [[html.escape(k), html.escape(v)] for k, v in inputs]),
        "<h2>Summary</h2>",
        _table(["Metric", "Value"], summary),
        "<h2>Per class</h2>",
        _table(
            ["Value", "Class", "IoU", "F1", "Precision", "Recall", "Reference pixels", "Predicted pixels"],
            classes,
        ),
    ]
    if heatmap_png:
        encoded = base64.b64encode(heatmap_png).decode("ascii")
        parts += [
            "<h2>Confusion matrix</h2>",
            f'<img alt="Confusion matrix heatmap" src="data:image/png;base64,{encoded}">',
        ]
    else:
        parts.append("<h2>Confusion matrix</h2>")
    parts += [
        _table(["reference \\ prediction", *names], matrix_rows),
        "<p class='note'>Rows are reference classes, columns predicted classes. A blank value is "
        "undefined (a class never predicted has no precision, one absent from the reference no "
        "recall). Means are over the classes present in the reference or the prediction.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
