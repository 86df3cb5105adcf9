"""Matching reference classes to predicted classes (core/labels/class_matching.py): by name, by value,
the single unnamed class rule and the case of foreground names that match nothing."""

from __future__ import annotations

from rsdl_qgis_plugin.core.labels.class_matching import is_real_name, match_classes, reference_class_names
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues

MODEL = {0: "background", 1: "buildings"}  # models/buildings_kampala's class names


def test_single_class_named_after_its_layer_is_the_models_single_class():
    reference = {0: "background", 1: "buildings_all"}  # one layer, no field: named after the file
    matching = match_classes(reference, MODEL, {0, 1}, reference_unnamed=True)
    assert matching.single_class == ("buildings_all", "buildings")
    assert matching.by_name and not matching.no_shared_foreground
    assert matching.reference_values == {} and matching.unmatched_reference == ()
    assert matching.names == MODEL


def test_single_class_takes_the_predicted_value_when_values_differ():
    # sparse labels (no background) burnt as value 3; the model's class is 1
    matching = match_classes(
        {3: "roofs"}, {0: "_background", 1: "building"}, {0, 1, 3}, reference_unnamed=True
    )
    assert matching.single_class == ("roofs", "building")
    assert matching.reference_values == {3: 1} and matching.names[1] == "building"


def test_without_the_unnamed_flag_names_that_match_nothing_are_flagged():
    # the same names, but chosen by a field (or read from a mask): no guess
    matching = match_classes({0: "background", 1: "buildings_all"}, MODEL, {0, 1})
    assert matching.no_shared_foreground and matching.single_class is None


def test_two_foreground_classes_are_never_guessed():
    prediction = {0: "background", 1: "building", 2: "water"}
    matching = match_classes({0: "background", 1: "houses"}, prediction, {0, 1, 2}, reference_unnamed=True)
    assert matching.no_shared_foreground and matching.single_class is None
    two_layers = match_classes({1: "roofs", 2: "lakes"}, MODEL, {0, 1, 2}, reference_unnamed=True)
    assert two_layers.no_shared_foreground and two_layers.single_class is None


def test_a_name_match_wins_over_the_single_class_rule():
    matching = match_classes({0: "background", 1: "Buildings"}, MODEL, {0, 1}, reference_unnamed=True)
    assert matching.single_class is None and not matching.no_shared_foreground and matching.by_name


def test_partly_matching_names_keep_their_rule():
    # one reference class the model knows, one it does not: scored apart, not refused
    prediction = {0: "background", 1: "building", 2: "water"}
    matching = match_classes({0: "background", 1: "building", 2: "vegetation"}, prediction, {0, 1, 2})
    assert not matching.no_shared_foreground and matching.unmatched_reference == ("vegetation",)


def test_unnamed_sides_are_still_matched_by_value():
    # numeric class fields and class rasters without names say nothing: matched by value as before
    numeric = match_classes({1: "1", 2: "class_2"}, MODEL, {0, 1, 2}, reference_unnamed=True)
    assert not numeric.no_shared_foreground and numeric.single_class is None
    assert numeric.reference_values == {}
    no_names = match_classes({0: "background", 1: "buildings_all"}, {}, {0, 1}, reference_unnamed=True)
    assert not no_names.by_name and not no_names.no_shared_foreground and no_names.single_class is None
    background_only = match_classes({0: "background", 1: "roofs"}, {0: "background"}, {0, 1})
    assert not background_only.no_shared_foreground and background_only.reference_values == {}


def test_reference_class_names_name_the_background():
    classes = [LabelClass(1, "building", "#e31a1c")]
    assert reference_class_names(classes, MaskValues(0, 255)) == {1: "building", 0: "background"}
    sparse = MaskValues(0, 255, unlabelled_is_ignore=True)
    assert reference_class_names(classes, sparse) == {1: "building"}


def test_class_names_that_only_repeat_the_value_are_no_names():
    assert not is_real_name(3, "3") and not is_real_name(3, "class_3") and not is_real_name(3, " ")
    assert is_real_name(3, "class_4") and is_real_name(3, "water") and is_real_name(0, "background")


def test_classes_matched_by_name_across_numbering():
    # a model (background 0, building 1, water 2) against labels from a text field
    prediction = {0: "background", 1: "building", 2: "water"}
    reference = {0: "background", 1: "building", 2: "vegetation", 3: "Water"}
    matching = match_classes(reference, prediction, {0, 1, 2, 3})
    assert matching.by_name
    # water 3 -> 2; vegetation 2 would merge with the model's water: it gets a value of its own
    assert matching.reference_values == {3: 2, 2: 4}
    assert matching.names == {0: "background", 1: "building", 2: "water", 4: "vegetation"}
    assert matching.unmatched_reference == ("vegetation",)


def test_classes_matched_by_value_without_shared_names():
    aber_prediction = {1: "Forest", 2: "Grass", 3: "Urban", 4: "Water"}
    unnamed = match_classes({}, aber_prediction)
    assert not unnamed.by_name and unnamed.reference_values == {} and unnamed.names == aber_prediction
    numeric = match_classes({1: "1", 2: "2"}, aber_prediction)  # a numeric class field
    assert not numeric.by_name and numeric.names[1] == "Forest"
    same = match_classes(dict(aber_prediction), aber_prediction)
    assert same.by_name and same.reference_values == {}
