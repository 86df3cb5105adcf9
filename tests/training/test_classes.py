"""Class tables (training/data/classes.py): mask values to channel indices, names, colours, weights."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.core.labels.label_rules import default_class_color
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics
from training.data import IGNORE_INDEX, ClassTable


def test_targets_map_values_to_indices_and_everything_else_to_ignore():
    table = ClassTable((0, 2, 5), ("background", "road", "water"), ("#000000", "#111111", "#222222"))
    mask = np.array([[0, 1, 2, 5], [255, 7, 3, 0]], dtype=np.uint8)
    expected = np.array([[0, IGNORE_INDEX, 1, 2], [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 0]])
    targets = table.targets(mask)
    assert targets.dtype == np.int64
    np.testing.assert_array_equal(targets, expected)
    assert table.index_of_value(5) == 2 and len(table) == 3


def test_entries_are_sorted_by_value_with_default_colours():
    table = ClassTable.from_entries(
        [{"value": 7, "name": "water"}, {"value": "2", "name": "forest", "color": "#00ff00"}]
    )
    assert table.values == (2, 7) and table.names == ("forest", "water")
    assert table.colors == ("#00ff00", default_class_color("water", 7))
    assert table.names_by_index == {0: "forest", 1: "water"}
    assert ClassTable.from_names(["cat", "dog"]).values == (0, 1)


@pytest.mark.parametrize("values", [(), (2, 1), (1, 1)])
def test_tables_refuse_no_classes_and_unsorted_values(values):
    with pytest.raises(ValueError):
        ClassTable(values, tuple("x" * len(values)), tuple("#000000" for _ in values))


def test_weights_follow_the_channel_order():
    table = ClassTable((1, 4), ("a", "b"), ("#000000", "#ffffff"))
    counts = {4: 900, 1: 100}
    expected = ClassStatistics(-1, counts=counts).suggested_weights([1, 4])
    assert table.weights(counts) == pytest.approx([expected[1], expected[4]])
    assert table.weights(counts)[0] > table.weights(counts)[1]  # the rare class weighs more
