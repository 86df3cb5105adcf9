"""An object evaluation's results as a CSV table, precision-recall curves and a self-contained
HTML page.

The table and the page take the dictionary of ``ObjectEvaluation.as_dict``; the curves take the
``ClassEvaluation`` rows (they hold the points). The page embeds the chart (base64 PNG), so it can
be moved or mailed as one file.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from typing import Any

from ..metrics.object_matching import SCORE_NAMES, ClassEvaluation
from .figures import new_figure
from .html_page import embedded_png, number, page_start, table

__all__ = [
    "ALL_CLASSES",
    "OBJECT_CSV_COLUMNS",
    "object_metrics_csv",
    "object_report_html",
    "precision_recall_figure",
]

OBJECT_CSV_COLUMNS = ("class_id", "name", "references", "predictions", *SCORE_NAMES)
_COUNTS = ("class_id", "name", "references", "predictions", "tp", "fp", "fn")
ALL_CLASSES = "(all classes)"  # the CSV's last row: totals, and APs averaged over classes
MAX_CURVES = 12  # more classes than this: the chart shows those with the most references


def object_metrics_csv(metrics: dict[str, Any]) -> str:
    """One row per class, then ``ALL_CLASSES`` (counts summed, ratios from the sums, APs averaged
    over the classes in the reference); undefined values are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OBJECT_CSV_COLUMNS)
    total = {**metrics, "class_id": "", "name": ALL_CLASSES}
    for row in [*metrics["classes"], total]:
        writer.writerow(
            [row[column] if column in _COUNTS else number(row[column], 6) for column in OBJECT_CSV_COLUMNS]
        )
    return buffer.getvalue()


def precision_recall_figure(classes: Sequence[ClassEvaluation], iou_threshold: float) -> Any:
    """A matplotlib Figure with one precision-recall curve per class in the reference (predictions
    taken by descending score, matched at ``iou_threshold``), labelled with its AP there."""
    figure = new_figure(6.4, 4.8, dpi=110, purpose="The precision-recall chart")
    axes = figure.add_subplot()
    shown = sorted((row for row in classes if row.references > 0), key=lambda row: -row.references)
    for row in shown[:MAX_CURVES]:
        # Start at recall 0 with the first prediction's precision, as a curve is read.
        recall = [0.0, *row.curve_recall.tolist()]
        precision = [
            row.curve_precision[0] if len(row.curve_precision) else 0.0,
            *row.curve_precision.tolist(),
        ]
        axes.plot(
            recall, precision, drawstyle="steps-post", label=f"{row.name} (AP {row.ap_at_threshold:.3f})"
        )
    if len(shown) > MAX_CURVES:
        axes.set_title(
            f"Precision-recall at IoU {iou_threshold:g} ({MAX_CURVES} largest of {len(shown)} classes)"
        )
    else:
        axes.set_title(f"Precision-recall at IoU {iou_threshold:g}")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.05)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.grid(True, alpha=0.3)
    if shown:
        axes.legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    return figure


def object_report_html(
    title: str, inputs: list[tuple[str, str]], metrics: dict[str, Any], chart_png: bytes | None
) -> str:
    """The report page: inputs, summary, per-class table and the precision-recall chart."""
    threshold = metrics["iou_threshold"]
    summary = [
        ["Reference objects", f"{metrics['references']:,}"],
        ["Predicted objects", f"{metrics['predictions']:,}"],
        [f"True positives (IoU &ge; {threshold:g})", f"{metrics['tp']:,}"],
        ["False positives", f"{metrics['fp']:,}"],
        ["False negatives (missed)", f"{metrics['fn']:,}"],
        ["Precision", number(metrics["precision"])],
        ["Recall", number(metrics["recall"])],
        ["F1", number(metrics["f1"])],
        [f"AP at IoU {threshold:g}", number(metrics["ap_at_threshold"])],
        ["AP50 (COCO AP at IoU 0.5)", number(metrics["ap50"])],
        ["AP75", number(metrics["ap75"])],
        ["AP (COCO AP@[.5:.95])", number(metrics["ap"])],
    ]
    classes = [
        [
            html.escape(str(row["class_id"])),
            html.escape(row["name"]),
            *(f"{row[key]:,}" for key in ("references", "predictions", "tp", "fp", "fn")),
            *(
                number(row[key])
                for key in ("precision", "recall", "f1", "ap_at_threshold", "ap50", "ap75", "ap")
            ),
        ]
        for row in metrics["classes"]
    ]
    parts = [
        *page_start(title, inputs),
        "<h2>Summary</h2>",
        table(["Metric", "Value"], summary),
        "<h2>Per class</h2>",
        table(
            [
                "Id",
                "Class",
                "Reference",
                "Predicted",
                "TP",
                "FP",
                "FN",
                "Precision",
                "Recall",
                "F1",
                f"AP@{threshold:g}",
                "AP50",
                "AP75",
                "AP",
            ],
            classes,
        ),
        "<h2>Precision-recall</h2>",
    ]
    if chart_png:
        parts.append(embedded_png(chart_png, "Precision-recall curves"))
    else:
        parts.append("<p class='note'>No chart: matplotlib is not installed.</p>")
    parts += [
        f"<p class='note'>Predictions are matched class by class, by descending score, each to the "
        f"unmatched reference object of its class with the highest IoU &ge; {threshold:g} (COCO's "
        "rules). Counts, precision, recall and F1 are at that threshold over all predictions. AP "
        "follows COCO (pycocotools): 101-point interpolated precision, area range all, no limit on "
        "the number of detections; AP is the mean over IoU 0.50:0.05:0.95. Means are over the "
        "classes present in the reference. A blank value is undefined (a class never predicted has "
        "no precision; one absent from the reference no recall and no AP).</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
