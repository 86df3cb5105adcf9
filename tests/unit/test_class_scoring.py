"""Scoring with matched classes (QGIS-free): what is logged, what is refused, and the scores of
reference classes renumbered by name against torchmetrics on the renumbered pixels."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.metrics.class_scoring import (
    ScoringMatch,
    match_for_scoring,
    no_shared_class_error,
    score_matched,
)
from rsdl_qgis_plugin.core.metrics.confusion import PairCounts

# The model numbers its classes its own way; labels rasterized from a text field alphabetically.
MODEL = {0: "background", 1: "building", 2: "water"}
LABELS = {0: "background", 1: "building", 2: "vegetation", 3: "Water"}


def test_by_value_keeps_every_value_and_says_nothing():
    scoring = match_for_scoring(LABELS, MODEL, {0, 1, 2, 3}, by_value=True)
    assert scoring == ScoringMatch(scoring.matching)  # no infos, no warnings
    assert scoring.matching.reference_values == {} and not scoring.matching.by_name
    assert scoring.matching.names == {0: "background", 1: "building", 2: "water", 3: "Water"}


def test_by_name_logs_each_renamed_class_and_warns_about_unknown_ones():
    scoring = match_for_scoring(LABELS, MODEL, {0, 1, 2, 3}, by_value=False)
    # 'Water' (3) becomes the model's 2; 'vegetation' (2) collides with that value and moves up.
    assert scoring.matching.reference_values == {2: 4, 3: 2}
    assert scoring.infos == (
        "Reference class 'vegetation' (2) is scored as value 4 ('vegetation').",
        "Reference class 'Water' (3) is scored as value 2 ('water').",
    )
    assert scoring.warnings == (
        "Reference classes the class raster does not name (every pixel of theirs counts as an "
        "error): vegetation.",
    )


def test_no_shared_name_falls_back_to_values_with_a_warning():
    scoring = match_for_scoring({1: "1", 2: "2"}, MODEL, {0, 1, 2}, by_value=False)
    assert not scoring.matching.by_name and scoring.infos == ()
    assert scoring.warnings == (
        "The reference and the class raster share no class name; classes are matched by value. "
        "Check that the values mean the same classes.",
    )
    # A side with no names at all: nothing to warn about.
    assert match_for_scoring({}, MODEL, {0, 1}, by_value=False).warnings == ()


def test_a_layer_named_single_class_is_explained():
    scoring = match_for_scoring(
        {0: "background", 1: "buildings_all"},
        {0: "background", 5: "building"},
        {0, 1, 5},
        by_value=False,
        reference_unnamed=True,
    )
    assert scoring.matching.reference_values == {1: 5}
    assert scoring.infos[0].startswith("The labels' only class 'buildings_all' is named after its layer")
    assert "class raster's only class 'building'" in scoring.infos[0]
    assert scoring.infos[1] == "Reference class 'buildings_all' (1) is scored as value 5 ('building')."
    assert scoring.warnings == ()


@pytest.mark.parametrize(
    ("labels_from_mask", "fix"),
    [(True, "rasterize the labels again"), (False, "rename the label layers")],
)
def test_foreground_classes_that_share_no_name_are_refused(labels_from_mask, fix):
    reference = {0: "background", 1: "roofs", 2: "lakes"}
    with pytest.raises(RsdlError) as raised:
        match_for_scoring(reference, MODEL, {0, 1, 2}, by_value=False, labels_from_mask=labels_from_mask)
    message = str(raised.value)
    assert message == str(no_shared_class_error(reference, MODEL, labels_from_mask))
    assert "the reference has 'background' (0), 'roofs' (1), 'lakes' (2), the class raster " in message
    assert "'background' (0), 'building' (1), 'water' (2)" in message
    assert fix in message and "set CLASS_MATCHING to 1 (by value)" in message
    # By value, the same classes are scored as they are.
    assert match_for_scoring(reference, MODEL, {0, 1, 2}, by_value=True).matching.names[1] == "building"


def test_scores_of_renumbered_classes_agree_with_torchmetrics():
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(5)
    reference = rng.integers(0, 4, (41, 29)).astype(np.uint8)  # LABELS' numbering
    # The same classes in the numbering the match should give ('vegetation' 4, 'Water' 2).
    as_model = np.array([0, 1, 4, 2], dtype=np.uint8)[reference]
    # The model never predicts vegetation (it has no such class): mostly background there.
    right = np.array([0, 1, 0, 2], dtype=np.uint8)[reference]
    prediction = np.where(rng.random(reference.shape) < 0.7, right, rng.integers(0, 3, reference.shape))
    prediction = prediction.astype(np.uint8)
    counts = PairCounts()
    counts.add_block(reference, prediction)

    scoring = match_for_scoring(LABELS, MODEL, counts.values(), by_value=False)
    matrix, metrics = score_matched(counts, scoring.matching, MODEL, LABELS)
    assert scoring.matching.reference_values == {2: 4, 3: 2}
    assert matrix.values == (0, 1, 2, 4)  # 3 is no class any more: 'Water' moved to 2
    target = torch.from_numpy(as_model.astype(np.int64))
    preds = torch.from_numpy(prediction.astype(np.int64))
    expected = functional.multiclass_confusion_matrix(preds, target, num_classes=5).numpy()
    assert expected[3].sum() == expected[:, 3].sum() == 0
    np.testing.assert_array_equal(matrix.matrix, expected[np.ix_([0, 1, 2, 4], [0, 1, 2, 4])])
    accuracy = functional.multiclass_accuracy(preds, target, num_classes=5, average="micro")
    assert metrics["overall_accuracy"] == pytest.approx(float(accuracy), abs=1e-6)
    assert metrics["class_matching"] == "by name"
    names = {row["value"]: row["name"] for row in metrics["classes"]}
    assert names == {0: "background", 1: "building", 2: "water", 4: "vegetation"}


def test_scores_by_value_count_pixels_as_they_are():
    counts = PairCounts()
    counts.add_block(np.array([[1, 1, 3]], np.uint8), np.array([[1, 2, 3]], np.uint8))
    scoring = match_for_scoring(LABELS, MODEL, counts.values(), by_value=True)
    matrix, metrics = score_matched(counts, scoring.matching, MODEL, LABELS)
    assert matrix.values == (0, 1, 2, 3)  # named classes 0 and 2 take part though absent
    assert matrix.matrix[1].tolist() == [0, 1, 1, 0] and matrix.matrix[3, 3] == 1
    assert metrics["class_matching"] == "by value"
    assert metrics["overall_accuracy"] == pytest.approx(2 / 3)
