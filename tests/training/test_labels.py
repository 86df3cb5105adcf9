"""labels: class values of label features, by the plugin's rules (rsdl:rasterizelabels)."""

from __future__ import annotations

import pytest
import shapely
from rasterio.crs import CRS

from rsdl_qgis_plugin.core.errors import LabelValueError
from training.data.labels import LabelOptions, feature_values
from training.data.vectors import VectorLayer


def layer(name: str, classes: list[object]) -> VectorLayer:
    square = shapely.box(0, 0, 1, 1)
    return VectorLayer(
        name, f"{name}.gpkg", CRS.from_epsg(32636), [square] * len(classes), [{"kind": c} for c in classes]
    )


def test_blank_text_is_no_class_and_names_lose_surrounding_spaces():
    layers = [layer("a", ["water", " building ", "", "   ", None]), layer("b", ["building", "water "])]

    per_layer, names = feature_values(layers, LabelOptions(field="kind"))

    # Text classes take 1, 2, ... in sorted order (background 0 and ignore 255 reserved).
    assert names == {1: "building", 2: "water"}
    assert per_layer == [[2, 1, None, None, None], [1, 2]]


def test_a_field_blank_everywhere_holds_no_class():
    with pytest.raises(LabelValueError, match="hold no class values"):
        feature_values([layer("a", ["", None, " "])], LabelOptions(field="kind"))


def test_numbers_stay_class_values():
    per_layer, names = feature_values([layer("a", [3, None, 7])], LabelOptions(field="kind"))
    assert per_layer == [[3, None, 7]] and names == {3: "3", 7: "7"}
