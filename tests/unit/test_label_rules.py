"""Label rules (core/labels/label_rules.py): class values, mask values, class names and colours."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.core.errors import LabelValueError
from rsdl_qgis_plugin.core.labels.label_rules import (
    LabelClass,
    MaskValues,
    assign_text_class_values,
    check_classes_against_mask_values,
    class_value_from_number,
    default_class_color,
    smallest_unsigned_dtype,
    text_class_name,
)


@pytest.mark.parametrize("raw, expected", [(3, 3), (4.0, 4), (np.int64(7), 7), (0, 0)])
def test_numeric_class_values(raw, expected):
    assert class_value_from_number(raw, "cls", "layer") == expected


@pytest.mark.parametrize("raw", [1.5, -1, float("nan"), "3", True, 2**40])
def test_non_class_values_are_refused_with_the_field_named(raw):
    with pytest.raises(LabelValueError, match="'cls' of layer 'roads'"):
        class_value_from_number(raw, "cls", "roads")


def test_text_classes_sorted_and_skip_reserved_values():
    assert assign_text_class_values(["water", "building", "road", "water"], reserved={0, 2}) == {
        "building": 1,
        "road": 3,
        "water": 4,
    }


@pytest.mark.parametrize(
    "values, dtype", [([0, 255], np.uint8), ([256], np.uint16), ([65535], np.uint16), ([65536], np.uint32)]
)
def test_smallest_unsigned_dtype(values, dtype):
    assert smallest_unsigned_dtype(values) == np.dtype(dtype)


def test_mask_values_conflicts():
    with pytest.raises(LabelValueError, match="both 7"):
        MaskValues(background_value=7, ignore_value=7)
    assert MaskValues(background_value=0, ignore_value=0, unlabelled_is_ignore=True).unlabelled_value == 0
    with pytest.raises(LabelValueError, match="ignore"):
        check_classes_against_mask_values([LabelClass(255, "x", "#000000")], MaskValues())


def test_named_colours_follow_conventions():
    assert default_class_color("water", 9) == "#1f78b4"
    assert default_class_color("cls_forest_smpls", 1) == "#1b7837"
    assert default_class_color("thing", 1) != default_class_color("other", 2)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("\t", None),
        (" building ", "building"),
        ("water", "water"),
        (3, "3"),
    ],
)
def test_text_class_names_are_stripped_and_blank_text_is_no_class(raw, expected):
    assert text_class_name(raw) == expected
