"""The class-distribution bar chart (core/reports/class_chart.py): a PNG that PIL decodes to the
chart's size with each class drawn in its colour, written complete or absent."""

from __future__ import annotations

import io

import numpy as np
import pytest

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.files.atomic_output import AtomicOutputs, leftover_temporaries
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics
from rsdl_qgis_plugin.core.reports.class_chart import write_class_chart

pytest.importorskip("matplotlib", reason="the chart is drawn with matplotlib (optional)")
Image = pytest.importorskip("PIL.Image", reason="PIL decodes the PNG")

DPI = 120  # new_figure's default
ROWS = [
    {"value": 0, "name": "background", "pixels": 9000, "color": "#000000"},
    {"value": 1, "name": "building", "pixels": 2500, "color": "#e31a1c"},
    {"value": 2, "name": "water", "pixels": 1200, "color": "#1f78b4"},
]


def chart_size(rows: int) -> tuple[int, int]:
    """The documented figure size, max(4, 0.9 n + 2) x 3.6 inches, in pixels."""
    return round(max(4.0, 0.9 * rows + 2.0) * DPI), round(3.6 * DPI)


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def pixels_of(picture: np.ndarray, color: str) -> int:
    rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    return int((picture == rgb).all(axis=2).sum())


def test_the_chart_decodes_to_its_size_with_every_class_in_its_colour(tmp_path):
    path = write_class_chart(ROWS, tmp_path / "classes.png", title="Training chips")
    assert path == tmp_path / "classes.png"
    picture = read_png(path)
    assert picture.shape[:2][::-1] == chart_size(len(ROWS))
    areas = [pixels_of(picture, row["color"]) for row in ROWS[1:]]  # black is also the text's
    assert all(area > 50 for area in areas)
    # bars of one width: their areas follow the pixel counts (2500 : 1200), up to the edges
    assert areas[0] / areas[1] == pytest.approx(2500 / 1200, rel=0.15)
    assert leftover_temporaries(tmp_path) == []


def test_rows_of_class_statistics_draw_with_the_default_colour(tmp_path):
    statistics = ClassStatistics(255)
    statistics.add_block(np.repeat(np.arange(6, dtype=np.uint8), 100))
    rows = statistics.as_table({value: f"class {value}" for value in range(6)})
    picture = read_png(write_class_chart(rows, tmp_path / "six.png"))
    assert picture.shape[:2][::-1] == chart_size(6)
    assert pixels_of(picture, "#4c72b0") > 6 * 50


def test_a_class_without_pixels_and_an_empty_table_still_draw(tmp_path):
    zero = [dict(ROWS[0], pixels=0)]
    assert read_png(write_class_chart(zero, tmp_path / "zero.png")).shape[:2][::-1] == chart_size(1)
    assert read_png(write_class_chart([], tmp_path / "none.png")).shape[:2][::-1] == chart_size(0)


def test_a_chart_that_cannot_be_drawn_leaves_nothing(tmp_path):
    (tmp_path / "classes.png").write_bytes(b"the previous chart")
    with pytest.raises(ValueError):  # matplotlib refuses the colour before anything is written
        write_class_chart([dict(ROWS[1], color="not a colour")], tmp_path / "classes.png")
    assert (tmp_path / "classes.png").read_bytes() == b"the previous chart"
    assert leftover_temporaries(tmp_path) == []


def test_a_missing_folder_writes_nothing(tmp_path):
    with pytest.raises(RsdlError, match="does not exist"):
        write_class_chart(ROWS, tmp_path / "missing" / "classes.png")
    assert list(tmp_path.iterdir()) == []


def test_in_a_group_the_chart_waits_for_the_commit(tmp_path):
    final = tmp_path / "classes.png"
    with AtomicOutputs() as outputs:
        write_class_chart(ROWS, final, outputs=outputs)
        assert not final.exists() and len(leftover_temporaries(tmp_path)) == 1
    with Image.open(io.BytesIO(final.read_bytes())) as image:
        image.load()
        assert image.size == chart_size(len(ROWS))
