"""The confusion matrix and its metrics, against torchmetrics and a per-pixel count by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.core.metrics.confusion import ConfusionMatrix, PairCounts

IGNORE = 255
CLASSES = 4


def _random_pair(seed: int, shape=(37, 23)) -> tuple[np.ndarray, np.ndarray]:
    """Reference with some ignore pixels; a prediction right about 60 % of the time."""
    rng = np.random.default_rng(seed)
    reference = rng.integers(0, CLASSES, shape).astype(np.uint8)
    prediction = np.where(rng.random(shape) < 0.6, reference, rng.integers(0, CLASSES, shape)).astype(
        np.uint8
    )
    reference[rng.random(shape) < 0.1] = IGNORE
    return reference, prediction


def _matrix(reference: np.ndarray, prediction: np.ndarray, blocks: int = 1) -> ConfusionMatrix:
    counts = PairCounts()
    for rows in np.array_split(np.arange(reference.shape[0]), blocks):
        truth, predicted = reference[rows], prediction[rows]
        counts.add_block(truth, predicted, truth != IGNORE)
    return ConfusionMatrix.from_counts(counts, range(CLASSES))


def test_matrix_equals_a_per_pixel_count():
    reference, prediction = _random_pair(1, (9, 7))
    by_hand = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    for truth, predicted in zip(reference.ravel().tolist(), prediction.ravel().tolist()):
        if truth != IGNORE:
            by_hand[truth, predicted] += 1
    matrix = _matrix(reference, prediction)
    assert matrix.values == (0, 1, 2, 3)
    np.testing.assert_array_equal(matrix.matrix, by_hand)
    assert matrix.excluded == int((reference == IGNORE).sum())
    assert matrix.total + matrix.excluded == reference.size


@pytest.mark.parametrize("seed", [0, 7, 42])
def test_metrics_agree_with_torchmetrics(seed):
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("torchmetrics.functional.classification")
    reference, prediction = _random_pair(seed)
    matrix = _matrix(reference, prediction, blocks=5)  # block by block, as rasters are read
    target = torch.from_numpy(reference.astype(np.int64))
    preds = torch.from_numpy(prediction.astype(np.int64))
    common = {"num_classes": CLASSES, "ignore_index": IGNORE}

    expected = functional.multiclass_confusion_matrix(preds, target, **common).numpy()
    np.testing.assert_array_equal(matrix.matrix, expected)
    oracle = {
        "iou": functional.multiclass_jaccard_index(preds, target, average="none", **common),
        "f1": functional.multiclass_f1_score(preds, target, average="none", **common),
        "precision": functional.multiclass_precision(preds, target, average="none", **common),
        "recall": functional.multiclass_recall(preds, target, average="none", **common),
    }
    for row in matrix.class_metrics():
        for key, values in oracle.items():
            assert getattr(row, key) == pytest.approx(float(values[row.value]), abs=1e-6), (key, row.value)
    accuracy = functional.multiclass_accuracy(preds, target, average="micro", **common)
    assert matrix.overall_accuracy == pytest.approx(float(accuracy), abs=1e-6)
    kappa = functional.multiclass_cohen_kappa(preds, target, **common)
    assert matrix.kappa == pytest.approx(float(kappa), abs=1e-5)
    mean_iou = functional.multiclass_jaccard_index(preds, target, average="macro", **common)
    assert matrix.mean_iou == pytest.approx(float(mean_iou), abs=1e-6)


def test_blocks_and_wide_values_count_alike():
    reference, prediction = _random_pair(3)
    whole = _matrix(reference, prediction)
    assert np.array_equal(_matrix(reference, prediction, blocks=7).matrix, whole.matrix)
    # UInt32 class values take the sparse (np.unique) path: same matrix, relabelled values
    shift = np.uint32(70_000)
    counts = PairCounts()
    valid = reference != IGNORE
    counts.add_block(reference.astype(np.uint32) + shift, prediction.astype(np.uint32) + shift, valid)
    wide = ConfusionMatrix.from_counts(counts)
    assert wide.values == tuple(v + 70_000 for v in range(CLASSES))
    np.testing.assert_array_equal(wide.matrix, whole.matrix)


def test_undefined_values_are_none_not_zero():
    reference = np.array([[0, 0, 1, 1]], dtype=np.uint8)
    prediction = np.array([[0, 0, 0, 0]], dtype=np.uint8)
    counts = PairCounts()
    counts.add_block(reference, prediction)
    matrix = ConfusionMatrix.from_counts(counts, [2])  # class 2: named, absent from both
    rows = {row.value: row for row in matrix.class_metrics()}
    assert rows[1].precision is None and rows[1].recall == 0.0 and rows[1].iou == 0.0
    assert rows[2].iou is None and not rows[2].present
    assert rows[0].precision == 0.5 and rows[0].recall == 1.0
    assert matrix.mean_iou == pytest.approx((0.5 + 0.0) / 2)  # class 2 is not in the mean
    assert matrix.kappa == pytest.approx(0.0)

    single = PairCounts()
    single.add_block(np.ones((3, 3), np.uint8), np.ones((3, 3), np.uint8))
    only_one = ConfusionMatrix.from_counts(single)
    assert only_one.overall_accuracy == 1.0 and only_one.kappa is None  # chance agreement is total

    empty = ConfusionMatrix.from_counts(PairCounts())
    assert empty.overall_accuracy is None and empty.kappa is None and empty.mean_iou is None


def test_known_matrix_gives_textbook_metrics():
    # 2 x 2 with tp=40, fn=10, fp=5, tn=45: kappa = (0.85 - 0.5) / 0.5 = 0.7
    cells = {(1, 1): 40, (1, 0): 10, (0, 1): 5, (0, 0): 45}
    reference = np.concatenate([np.full(n, truth) for (truth, _), n in cells.items()]).astype(np.uint8)
    prediction = np.concatenate([np.full(n, pred) for (_, pred), n in cells.items()]).astype(np.uint8)
    counts = PairCounts()
    counts.add_block(reference, prediction)
    matrix = ConfusionMatrix.from_counts(counts)
    building = matrix.class_metrics()[1]
    assert (building.precision, building.recall) == (pytest.approx(40 / 45), pytest.approx(0.8))
    assert building.iou == pytest.approx(40 / 55) and building.f1 == pytest.approx(80 / 95)
    assert matrix.overall_accuracy == pytest.approx(0.85) and matrix.kappa == pytest.approx(0.7)


def test_relabelling_merges_reference_values():
    counts = PairCounts()
    counts.add_block(np.array([3, 3, 1], np.uint8), np.array([2, 1, 1], np.uint8))
    relabelled = counts.relabelled({3: 2})
    assert relabelled.counts == {(2, 2): 1, (2, 1): 1, (1, 1): 1}
