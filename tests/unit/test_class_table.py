"""core/reports/class_table.py: class rows from pixel counts, and their log lines."""

from __future__ import annotations

import numpy as np

from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics
from rsdl_qgis_plugin.core.reports.class_table import LogLine, class_table, class_table_lines


def statistics_of(mask: np.ndarray, ignore_value: int) -> ClassStatistics:
    statistics = ClassStatistics(ignore_value)
    statistics.add_block(mask)
    return statistics


def test_rows_count_pixels_name_and_colour_every_class():
    mask = np.array([[0, 0, 0, 1], [1, 7, 255, 255]], dtype=np.uint8)
    classes = [LabelClass(1, "building", "#ff0000"), LabelClass(2, "water", "#0000ff")]
    rows = class_table(classes, statistics_of(mask, 255), MaskValues(0, 255))
    by_value = {row["value"]: row for row in rows}
    assert [row["value"] for row in rows] == [0, 1, 2, 7]
    assert (by_value[0]["name"], by_value[0]["color"], by_value[0]["pixels"]) == ("background", "#000000", 3)
    assert (by_value[1]["name"], by_value[1]["color"], by_value[1]["pixels"]) == ("building", "#ff0000", 2)
    assert (by_value[2]["pixels"], by_value[2]["weight"]) == (0, 0.0)  # described, absent
    assert (by_value[7]["name"], by_value[7]["color"]) == ("7", "#808080")  # found, undescribed
    assert by_value[1]["share"] == 2 / 6
    # balanced weights over the three present classes: 6 / (3 * count)
    assert by_value[0]["weight"] == round(6 / 9, 6) and by_value[7]["weight"] == 2.0


def test_no_background_row_when_unlabelled_pixels_are_ignored():
    mask = np.array([[1, 1, 255]], dtype=np.uint8)
    rows = class_table([LabelClass(1, "tree", "#00ff00")], statistics_of(mask, 255), MaskValues(0, 255, True))
    assert [(row["value"], row["name"]) for row in rows] == [(1, "tree")]


def test_lines_format_each_row_and_warn_for_empty_classes():
    rows = [
        {"value": 0, "name": "background", "pixels": 1234567, "share": 0.75, "weight": 0.666667},
        {"value": 3, "name": "road", "pixels": 0, "share": 0.0, "weight": 0.0},
    ]
    lines = class_table_lines(rows, 4321)
    assert lines == [
        LogLine("Class pixel counts (suggested weights are inverse-frequency, 'balanced'):"),
        LogLine("      0  background                  1,234,567 px   75.00%  weight 0.6667"),
        LogLine("      3  road                                0 px    0.00%  weight 0.0000"),
        LogLine("Class 'road' (3) has no pixels on this grid.", warning=True),
        LogLine("  ignore: 4,321 px"),
    ]
    assert [line.warning for line in lines].count(True) == 1
