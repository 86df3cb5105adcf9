"""The object evaluation report (core/reports/object_report.py): the CSV read back with the csv
module, the HTML page with the standard library's parser, and the precision-recall chart's lines
against the evaluation's curves."""

from __future__ import annotations

import base64
import csv
import io

import numpy as np
import pytest

from rsdl_qgis_plugin.core.metrics.object_matching import evaluate_objects
from rsdl_qgis_plugin.core.reports.figures import figure_png
from rsdl_qgis_plugin.core.reports.object_report import (
    ALL_CLASSES,
    OBJECT_CSV_COLUMNS,
    object_metrics_csv,
    object_report_html,
    precision_recall_figure,
)
from tests.html_pages import read_page

NAMES = {0: "tree", 1: 'the "old" <car> & co', 2: "only predicted", 3: "never predicted"}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture(scope="module")
def evaluation():
    rng = np.random.default_rng(3)
    predicted = np.array([0, 0, 0, 1, 1, 2])
    reference = np.array([0, 0, 1, 3])
    ious = rng.uniform(0.3, 1.0, (6, 4))
    result = evaluate_objects([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], predicted, reference, ious, class_names=NAMES)
    assert result.classes[2].ap is None and result.classes[3].precision is None  # undefined cells exist
    return result


def test_csv_reads_back_to_the_metrics(evaluation):
    metrics = evaluation.as_dict()
    rows = list(csv.DictReader(io.StringIO(object_metrics_csv(metrics))))
    assert tuple(rows[0]) == OBJECT_CSV_COLUMNS
    assert [row["name"] for row in rows] == [*NAMES.values(), ALL_CLASSES]
    for row, expected in zip(rows, [*metrics["classes"], metrics]):
        for key in ("references", "predictions", "tp", "fp", "fn"):
            assert int(row[key]) == expected[key]
        for key in ("precision", "recall", "f1", "ap_at_threshold", "ap50", "ap75", "ap"):
            if expected[key] is None:
                assert row[key] == ""  # undefined, not 0
            else:
                assert float(row[key]) == pytest.approx(expected[key], abs=5e-7)
    assert rows[-1]["class_id"] == ""
    assert int(rows[-1]["tp"]) == sum(int(row["tp"]) for row in rows[:-1])


def test_html_holds_inputs_summary_classes_and_the_chart(evaluation):
    metrics = evaluation.as_dict()
    page = object_report_html("Objects <run 1>", [("Reference", "<trees>.gpkg")], metrics, PNG)
    reader = read_page(page)
    assert reader.title == reader.headings["h1"][0] == "Objects <run 1>"
    inputs, summary, classes = reader.tables
    assert inputs[1:] == [["Reference", "<trees>.gpkg"]]
    shown = dict(summary[1:])
    assert int(shown["True positives (IoU ≥ 0.5)"]) == metrics["tp"]
    assert int(shown["False negatives (missed)"]) == metrics["fn"]
    assert float(shown["AP (COCO AP@[.5:.95])"]) == pytest.approx(metrics["ap"], abs=5e-5)
    assert float(shown["AP50 (COCO AP at IoU 0.5)"]) == pytest.approx(metrics["ap50"], abs=5e-5)
    assert [row[1] for row in classes[1:]] == list(NAMES.values())  # names escaped once, read back as given
    assert classes[3][-1] == ""  # a class only predicted has no AP
    sources = [attrs["src"] for tag, attrs in reader.tags if tag == "img"]
    assert len(sources) == 1 and base64.b64decode(sources[0].split(",", 1)[1]) == PNG
    assert "<car>" not in page


def test_html_without_a_chart_says_why(evaluation):
    reader = read_page(object_report_html("Objects", [], evaluation.as_dict(), None))
    assert all(tag != "img" for tag, _ in reader.tags)
    assert any("matplotlib" in text for text in reader.paragraphs)


def test_chart_draws_each_reference_class_curve(evaluation):
    pytest.importorskip("matplotlib", reason="the chart is drawn with matplotlib (optional)")
    figure = precision_recall_figure(evaluation.classes, 0.5)
    lines = figure.axes[0].get_lines()
    in_reference = [row for row in evaluation.classes if row.references]
    assert len(lines) == len(in_reference) == 3  # the class only predicted has no curve
    by_label = {line.get_label().split(" (AP")[0]: line for line in lines}
    tree = evaluation.classes[0]
    assert by_label["tree"].get_xdata()[1:].tolist() == pytest.approx(tree.curve_recall.tolist())
    assert by_label["tree"].get_ydata()[1:].tolist() == pytest.approx(tree.curve_precision.tolist())
    assert by_label["tree"].get_label().endswith(f"(AP {tree.ap_at_threshold:.3f})")
    assert figure_png(figure).startswith(b"\x89PNG")
