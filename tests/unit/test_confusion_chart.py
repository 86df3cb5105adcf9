"""The confusion-matrix heatmap (core/reports/confusion_chart.py): row shares computed as numpy's
row normalisation, cell texts, and a PNG that PIL decodes to the figure's size."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from rsdl_qgis_plugin.core.files.atomic_output import leftover_temporaries
from rsdl_qgis_plugin.core.reports.confusion_chart import MAX_ANNOTATED_SHARES, confusion_figure
from rsdl_qgis_plugin.core.reports.figures import figure_png, save_png

pytest.importorskip("matplotlib", reason="the heatmap is drawn with matplotlib (optional)")
Image = pytest.importorskip("PIL.Image", reason="PIL decodes the PNG")

DPI = 110
MATRIX = np.array([[50, 3, 0], [10, 30, 1200], [0, 0, 0]])  # class 2: absent from the reference
NAMES = ["background", "building", "water"]


def figure_size(classes: int) -> tuple[int, int]:
    """The documented figure: (s + 1) x s inches with s = max(4, 0.75 n + 2.5), at 110 dpi."""
    side = max(4.0, 0.75 * classes + 2.5)
    return round((side + 1.0) * DPI), round(side * DPI)


def cell_texts(figure) -> dict[tuple[int, int], object]:
    axes = figure.axes[0]
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in axes.texts}


def test_cells_show_counts_and_row_shares():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty reference row must not divide by zero
        figure = confusion_figure(MATRIX, NAMES)
    expected_shares = MATRIX / np.maximum(MATRIX.sum(axis=1, keepdims=True), 1)
    texts = cell_texts(figure)
    assert set(texts) == {(r, c) for r in range(3) for c in range(3)}
    for (row, col), text in texts.items():
        count, share = MATRIX[row, col], expected_shares[row, col]
        assert text.get_text() == f"{count:,}\n{100 * share:.1f}%"
        assert text.get_color() == ("white" if share > 0.5 else "black")
    assert texts[(1, 2)].get_text() == "1,200\n96.8%"  # 1200 / 1240
    image = figure.axes[0].images[0]
    np.testing.assert_allclose(image.get_array(), expected_shares)
    assert image.get_clim() == (0.0, 1.0)


def test_axes_name_the_classes_and_the_roles():
    figure = confusion_figure(MATRIX, NAMES, title="Validation")
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == NAMES
    assert [t.get_text() for t in axes.get_yticklabels()] == NAMES
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == (
        "prediction",
        "reference",
        "Validation",
    )


def test_many_classes_show_counts_only():
    classes = MAX_ANNOTATED_SHARES + 1
    matrix = np.arange(classes * classes).reshape(classes, classes) * 1000
    texts = cell_texts(confusion_figure(matrix, [f"c{i}" for i in range(classes)]))
    assert len(texts) == classes * classes
    assert texts[(2, 3)].get_text() == f"{matrix[2, 3]:,}" and "%" not in texts[(2, 3)].get_text()


@pytest.mark.parametrize("classes", [2, 3, 12])
def test_the_png_decodes_to_the_figure_size(tmp_path, classes):
    matrix = np.eye(classes, dtype=np.int64) * 7 + 1
    figure = confusion_figure(matrix, [f"class {i}" for i in range(classes)])
    with Image.open(io.BytesIO(figure_png(figure))) as image:
        image.load()
        assert image.format == "PNG" and image.size == figure_size(classes)
    path = save_png(figure, tmp_path / "confusion.png")
    with Image.open(path) as image:
        image.load()
        assert image.size == figure_size(classes)
    assert leftover_temporaries(tmp_path) == []
