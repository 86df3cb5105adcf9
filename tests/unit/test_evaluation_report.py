"""The evaluation report (core/reports/evaluation_report.py): the CSV read back with the csv module
and the HTML page read back with the standard library's HTML parser, against the metrics."""

from __future__ import annotations

import base64
import csv
import io

import numpy as np
import pytest

from rsdl_qgis_plugin.core.metrics.confusion import ConfusionMatrix, PairCounts
from rsdl_qgis_plugin.core.reports.evaluation_report import CSV_COLUMNS, SUMMARY, metrics_csv, metrics_html
from tests.html_pages import read_page

IGNORE = 255
NAMES = {0: "background", 1: "roads, paved", 2: 'the "old" <town> & co', 3: "water", 4: "never predicted"}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))  # any bytes: the page must carry them unchanged


def _matrix(seed: int = 5, shape=(41, 29)) -> ConfusionMatrix:
    """Five classes; class 4 is in the reference but never predicted (no precision)."""
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, 5, shape).astype(np.uint8)
    prediction = np.where(rng.random(shape) < 0.6, reference, rng.integers(0, 4, shape)).astype(np.uint8)
    prediction[prediction == 4] = 3
    reference[rng.random(shape) < 0.1] = IGNORE
    counts = PairCounts()
    for rows in np.array_split(np.arange(shape[0]), 3):
        counts.add_block(reference[rows], prediction[rows], reference[rows] != IGNORE)
    return ConfusionMatrix.from_counts(counts, NAMES)


@pytest.fixture(scope="module")
def metrics() -> dict:
    matrix = _matrix()
    metrics = matrix.as_dict(NAMES)
    assert metrics["classes"][4]["precision"] is None  # the case of an empty cell is covered
    return metrics


def test_csv_reads_back_to_the_metrics(metrics):
    rows = list(csv.reader(io.StringIO(metrics_csv(metrics))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == 1 + len(metrics["classes"])
    for row, expected in zip(csv.DictReader(io.StringIO(metrics_csv(metrics))), metrics["classes"]):
        assert set(row) == set(CSV_COLUMNS)
        assert row["name"] == expected["name"]  # commas and quotes survive the quoting
        for key in ("value", "support", "predicted"):
            assert int(row[key]) == expected[key]
        for key in ("iou", "f1", "precision", "recall"):
            if expected[key] is None:
                assert row[key] == ""  # undefined, not 0
            else:
                assert float(row[key]) == pytest.approx(expected[key], abs=5e-7)


def test_html_holds_the_inputs_summary_class_table_and_matrix(metrics):
    page = metrics_html(
        "Evaluation <run 1>", [("Reference", "<mask>.tif"), ("Prediction", "a&b.tif")], metrics, PNG
    )
    reader = read_page(page)
    assert reader.title == reader.headings["h1"][0] == "Evaluation <run 1>"
    inputs, summary, classes, matrix = reader.tables
    assert inputs[1:] == [["Reference", "<mask>.tif"], ["Prediction", "a&b.tif"]]

    shown = dict(summary[1:])
    for key, label in SUMMARY:
        assert float(shown[label]) == pytest.approx(metrics[key], abs=5e-5)
    assert int(shown["Pixels evaluated"].replace(",", "")) == metrics["labelled"]
    assert int(shown["Pixels left out (ignore or nodata)"].replace(",", "")) == metrics["excluded"]

    assert classes[0][:2] == ["Value", "Class"]
    assert len(classes) == 1 + len(metrics["classes"])  # every class has its row
    for cells, expected in zip(classes[1:], metrics["classes"]):
        assert cells[:2] == [str(expected["value"]), expected["name"]]
        for cell, key in zip(cells[2:6], ("iou", "f1", "precision", "recall")):
            assert cell == ("" if expected[key] is None else f"{expected[key]:.4f}")
        assert [int(c.replace(",", "")) for c in cells[6:]] == [expected["support"], expected["predicted"]]

    table = metrics["confusion_matrix"]
    assert matrix[0][0] == "reference \\ prediction" and len(matrix[0]) == 1 + len(table["classes"])
    assert [row[0] for row in matrix[1:]] == table["classes"]
    assert [[int(c.replace(",", "")) for c in row[1:]] for row in matrix[1:]] == table["values"]


def test_html_is_self_contained_with_the_heatmap_embedded(metrics):
    reader = read_page(metrics_html("Evaluation", [], metrics, PNG))
    sources = [attrs["src"] for tag, attrs in reader.tags if tag == "img"]
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    assert base64.b64decode(sources[0].split(",", 1)[1], validate=True) == PNG
    links = [attrs for tag, attrs in reader.tags if tag != "img" for key in ("src", "href") if key in attrs]
    assert links == []  # no stylesheet, script or picture to fetch
    assert ("meta", {"charset": "utf-8"}) in reader.tags


def test_html_without_a_heatmap_still_has_the_matrix_table(metrics):
    reader = read_page(metrics_html("Evaluation", [], metrics, None))
    assert all(tag != "img" for tag, _ in reader.tags)
    assert "Confusion matrix" in reader.headings["h2"]
    assert [int(c.replace(",", "")) for c in reader.tables[-1][1][1:]] == metrics["confusion_matrix"][
        "values"
    ][0]


def test_class_names_bring_no_raw_markup_into_the_page(metrics):
    page = metrics_html("Evaluation", [], metrics, None)
    assert "<town>" not in page and '"old"' not in page  # no raw markup from a class name


def test_the_matrix_columns_read_as_the_class_names(metrics):
    """Each name is escaped once: 'a & b' reads 'a & b' in the browser, not 'a &amp; b'."""
    matrix = read_page(metrics_html("Evaluation", [], metrics, None)).tables[-1]
    assert matrix[0][1:] == metrics["confusion_matrix"]["classes"]


def test_csv_and_html_report():
    matrix = _matrix()
    names = {0: "background", 1: "building", 2: "water", 3: "road", 4: "bare soil"}
    metrics = matrix.as_dict(names)
    rows = list(csv.DictReader(io.StringIO(metrics_csv(metrics))))
    assert [row["name"] for row in rows] == list(names.values())
    assert float(rows[1]["iou"]) == pytest.approx(matrix.class_metrics()[1].iou, abs=1e-6)
    png = b"\x89PNG\r\n\x1a\nfake"
    page = metrics_html("Evaluation", [("Reference", "<mask>.tif")], metrics, png)
    assert base64.b64encode(png).decode() in page and "&lt;mask&gt;.tif" in page
    assert all(name in page for name in names.values())
    assert sum(map(sum, metrics["confusion_matrix"]["values"])) == matrix.total
