"""Object matching and AP (core/metrics/object_matching.py) against pycocotools' COCOeval and
torchmetrics' MeanAveragePrecision on generated cases, and hand-checkable counts on tiny ones."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from rsdl_qgis_plugin.core.metrics.object_matching import (
    AGNOSTIC_CLASS_NAME,
    COCO_IOU_THRESHOLDS,
    RECALL_THRESHOLDS,
    IouPairs,
    coco_precision,
    evaluate_objects,
    f1_score,
)

pycocotools = pytest.importorskip("pycocotools", reason="pycocotools is the oracle (requirements/dev.txt)")
from pycocotools import mask as coco_mask  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

CLASSES = 3
MAX_DETECTIONS = 10_000  # COCO's maxDets, above any case's object count: every prediction counts


def _xyxy_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Box IoU of (N, 4) and (M, 4) x1, y1, x2, y2 boxes, written here independently."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    width = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    height = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None
    )
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _case(seed: int, integer: bool = False):
    """References (x, y, w, h) in CLASSES classes; predictions are jittered references (some of
    another class) plus strays; scores rounded to 0.1 so that ties are common. ``integer``: whole
    coordinates, so that equal IoUs occur too."""
    rng = np.random.default_rng(seed)
    count = int(rng.integers(0, 40))
    references = np.c_[rng.uniform(0, 100, (count, 2)), rng.uniform(4, 30, (count, 2))]
    reference_classes = rng.integers(0, CLASSES, count)
    kept = rng.random(count) < 0.8
    jittered = references[kept] + rng.normal(0, 2.5, (int(kept.sum()), 4))
    jittered[:, 2:] = np.abs(jittered[:, 2:]) + 1
    jittered_classes = reference_classes[kept].copy()
    relabel = rng.random(len(jittered_classes)) < 0.1
    jittered_classes[relabel] = rng.integers(0, CLASSES, int(relabel.sum()))
    duplicates = jittered[rng.random(len(jittered)) < 0.2] + rng.normal(0, 1, 4)  # double detections
    duplicates[:, 2:] = np.abs(duplicates[:, 2:]) + 1
    stray_count = int(rng.integers(0, 12))
    strays = np.c_[rng.uniform(0, 100, (stray_count, 2)), rng.uniform(4, 30, (stray_count, 2))]
    predictions = np.r_[jittered, duplicates, strays]
    predicted_classes = np.r_[
        jittered_classes, rng.integers(0, CLASSES, len(duplicates)), rng.integers(0, CLASSES, len(strays))
    ]
    if integer:
        references, predictions = np.round(references), np.round(predictions)
        references[:, 2:] = np.maximum(references[:, 2:], 1)
        predictions[:, 2:] = np.maximum(predictions[:, 2:], 1)
    scores = np.round(rng.random(len(predictions)), 1)
    return references, reference_classes, predictions, predicted_classes, scores


def _coco_iou(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """pycocotools' own bbox IoUs (x, y, w, h), so that the matching is compared on equal IoUs."""
    if len(predictions) == 0 or len(references) == 0:
        return np.zeros((len(predictions), len(references)))
    ious = coco_mask.iou(predictions.tolist(), references.tolist(), [0] * len(references))
    return np.asarray(ious, dtype=float).reshape(len(predictions), len(references))


def _cocoeval_precision(references, reference_classes, predictions, predicted_classes, scores):
    """COCOeval's precision array [iou threshold, recall threshold, class] for one image, area
    range 'all' and maxDets above the number of objects."""
    ground_truth = {
        "info": {},
        "images": [{"id": 1}],
        "categories": [{"id": c + 1} for c in range(CLASSES)],
        "annotations": [
            {
                "id": i + 1,  # COCO counts id 0 as "unmatched"
                "image_id": 1,
                "category_id": int(c) + 1,
                "bbox": [float(v) for v in box],
                "area": float(box[2] * box[3]),
                "iscrowd": 0,
            }
            for i, (box, c) in enumerate(zip(references, reference_classes))
        ],
    }
    results = [
        {"image_id": 1, "category_id": int(c) + 1, "bbox": [float(v) for v in box], "score": float(s)}
        for box, c, s in zip(predictions, predicted_classes, scores)
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = ground_truth
        truth.createIndex()
        detections = truth.loadRes(results)
        evaluation = COCOeval(truth, detections, "bbox")
        evaluation.params.maxDets = [MAX_DETECTIONS]
        evaluation.params.areaRng = [[0.0, 1e10]]
        evaluation.params.areaRngLbl = ["all"]
        evaluation.evaluate()
        evaluation.accumulate()
    assert np.array_equal(evaluation.params.iouThrs, COCO_IOU_THRESHOLDS)
    assert np.array_equal(evaluation.params.recThrs, RECALL_THRESHOLDS)
    return evaluation.eval["precision"][:, :, :, 0, 0]


def _check_against_cocoeval(seed: int, integer: bool) -> int:
    references, reference_classes, predictions, predicted_classes, scores = _case(seed, integer)
    if len(predictions) == 0:  # COCO's loadRes refuses an empty result list
        return 0
    ious = _coco_iou(predictions, references)
    result = evaluate_objects(scores, predicted_classes, reference_classes, ious)
    precision = _cocoeval_precision(references, reference_classes, predictions, predicted_classes, scores)
    checked = 0
    for row in result.classes:
        oracle = precision[:, :, row.class_id]
        if row.references == 0:
            assert (oracle == -1).all() and row.ap is None and row.ap50 is None
            continue
        assert row.ap50 == pytest.approx(oracle[0].mean(), abs=1e-6), (seed, row.class_id)
        assert row.ap75 == pytest.approx(oracle[5].mean(), abs=1e-6), (seed, row.class_id)
        assert row.ap == pytest.approx(oracle.mean(), abs=1e-6), (seed, row.class_id)
        np.testing.assert_allclose(row.interpolated_precision, oracle[0], atol=1e-6)
        checked += 1
    present = precision[precision > -1]
    if present.size:
        assert result.ap == pytest.approx(present.mean(), abs=1e-6)  # COCO's summarize: the mean AP
        assert result.ap50 == pytest.approx(precision[0][precision[0] > -1].mean(), abs=1e-6)
    else:
        assert result.ap is None
    return checked


def test_ap_agrees_with_cocoeval_on_generated_cases():
    checked = sum(_check_against_cocoeval(seed, integer=False) for seed in range(120))
    assert checked > 250  # classes with references compared (the cases are not degenerate)


def test_ap_agrees_with_cocoeval_when_ious_and_scores_tie():
    """Whole-number boxes give equal IoUs, rounded scores equal scores: COCO's tie rules decide."""
    checked = sum(_check_against_cocoeval(seed, integer=True) for seed in range(1000, 1080))
    assert checked > 150


def test_class_agnostic_agrees_with_cocoeval_with_one_category():
    """Every object in one category (COCO's useCats=0 would order equal scores by category)."""
    for seed in range(40):
        references, reference_classes, predictions, predicted_classes, scores = _case(seed)
        if len(predictions) == 0 or len(references) == 0:
            continue
        ious = _coco_iou(predictions, references)
        result = evaluate_objects(scores, predicted_classes, reference_classes, ious, class_agnostic=True)
        one = np.zeros(len(references), int), np.zeros(len(predictions), int)
        oracle = _cocoeval_precision(references, one[0], predictions, one[1], scores)[:, :, 0]
        assert [row.name for row in result.classes] == [AGNOSTIC_CLASS_NAME]
        assert result.ap == pytest.approx(oracle.mean(), abs=1e-6)
        assert result.ap50 == pytest.approx(oracle[0].mean(), abs=1e-6)
        assert result.tp + result.fn == len(references) and result.tp + result.fp == len(predictions)


def test_ap_agrees_with_torchmetrics_mean_average_precision():
    torch = pytest.importorskip("torch")
    detection = pytest.importorskip("torchmetrics.detection")
    for seed in range(200, 215):
        references, reference_classes, predictions, predicted_classes, scores = _case(seed)
        if len(predictions) == 0 or len(references) == 0:
            continue
        metric = detection.MeanAveragePrecision(
            box_format="xywh",
            iou_type="bbox",
            class_metrics=True,
            max_detection_thresholds=[1, 10, 100],  # 100 > any case's detections per class
            # COCO's thresholds in float64: torchmetrics' defaults are float32 (torch.linspace), so
            # a recall of exactly 0.2 would fall short of its "0.2" threshold.
            iou_thresholds=COCO_IOU_THRESHOLDS.tolist(),
            rec_thresholds=RECALL_THRESHOLDS.tolist(),
            backend="pycocotools",
        )
        metric.update(
            [
                {
                    "boxes": torch.tensor(predictions, dtype=torch.float64),
                    "scores": torch.tensor(scores, dtype=torch.float64),
                    "labels": torch.tensor(predicted_classes),
                }
            ],
            [
                {
                    "boxes": torch.tensor(references, dtype=torch.float64),
                    "labels": torch.tensor(reference_classes),
                }
            ],
        )
        oracle = metric.compute()
        result = evaluate_objects(
            scores, predicted_classes, reference_classes, _coco_iou(predictions, references)
        )
        assert result.ap == pytest.approx(float(oracle["map"]), abs=1e-6)
        assert result.ap50 == pytest.approx(float(oracle["map_50"]), abs=1e-6)
        assert result.ap75 == pytest.approx(float(oracle["map_75"]), abs=1e-6)
        per_class = dict(zip(oracle["classes"].tolist(), oracle["map_per_class"].tolist()))
        for row in result.classes:
            if row.references:
                assert row.ap == pytest.approx(per_class[row.class_id], abs=1e-6)


# -- hand-checkable cases -----------------------------------------------------------------------

REFERENCES = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float)
PREDICTIONS = np.array(
    [
        [0, 0, 10, 10],  # score 0.9: reference 0 exactly
        [21, 0, 31, 10],  # 0.8: reference 1, IoU 9/11
        [1, 0, 11, 10],  # 0.7: reference 0 again (IoU 9/11), already taken: FP
        [60, 0, 70, 10],  # 0.6: nothing: FP
    ],
    float,
)
SCORES = np.array([0.9, 0.8, 0.7, 0.6])


def test_hand_checkable_counts():
    result = evaluate_objects(SCORES, np.zeros(4, int), np.zeros(3, int), _xyxy_iou(PREDICTIONS, REFERENCES))
    assert (result.tp, result.fp, result.fn) == (2, 2, 1)
    assert result.precision == pytest.approx(0.5)
    assert result.recall == pytest.approx(2 / 3)
    assert result.f1 == pytest.approx(4 / 7)  # 2PR / (P + R) = 0.571
    matches = result.matches
    assert matches.prediction_match.tolist() == [0, 1, -1, -1]
    assert matches.reference_match.tolist() == [0, 1, -1]
    assert matches.prediction_iou[:2] == pytest.approx([1.0, 9 / 11])
    assert np.isnan(matches.prediction_iou[2:]).all()
    assert matches.prediction_best_iou.tolist() == pytest.approx([1.0, 9 / 11, 9 / 11, 0.0])
    assert matches.reference_best_iou.tolist() == pytest.approx([1.0, 9 / 11, 0.0])
    # The two matches come first: precision 1 up to recall 2/3, nothing beyond. AP@0.5 is the share
    # of the 101 recall thresholds 0..0.66 (67 of them) at precision 1.
    row = result.classes[0]
    assert row.ap50 == pytest.approx(67 / 101)
    assert row.curve_recall.tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert row.curve_precision.tolist() == pytest.approx([1, 1, 2 / 3, 0.5])
    # IoU 9/11 = 0.818: a match at 0.5..0.8, not at 0.85..0.95, where only the exact box matches.
    expected = [67 / 101] * 7 + [34 / 101] * 3
    assert list(row.ap_by_threshold) == pytest.approx(expected)
    assert result.ap == pytest.approx(np.mean(expected))


def test_a_higher_threshold_turns_loose_matches_into_misses():
    result = evaluate_objects(
        SCORES, np.zeros(4, int), np.zeros(3, int), _xyxy_iou(PREDICTIONS, REFERENCES), iou_threshold=0.9
    )
    assert (result.tp, result.fp, result.fn) == (1, 3, 2)
    assert result.ap_at_threshold == pytest.approx(34 / 101)


def test_the_threshold_is_inclusive_and_one_still_matches_equal_boxes():
    ious = np.array([[0.5, 0.0], [0.0, 1.0]])
    assert evaluate_objects([0.9, 0.8], [0, 0], [0, 0], ious, iou_threshold=0.5).tp == 2
    result = evaluate_objects([0.9, 0.8], [0, 0], [0, 0], ious, iou_threshold=1.0)
    assert result.tp == 1 and result.matches.prediction_match.tolist() == [-1, 1]


def test_the_best_free_reference_wins_and_ties_go_as_in_coco():
    # Prediction 0 (highest score) overlaps references 0 and 1: it takes the higher IoU (1), then
    # prediction 1 takes what is left.
    ious = np.array([[0.6, 0.7], [0.65, 0.9]])
    result = evaluate_objects([0.9, 0.8], [0, 0], [0, 0], ious)
    assert result.matches.prediction_match.tolist() == [1, 0]
    # Equal IoUs: COCO keeps the later reference.
    result = evaluate_objects([0.9], [0], [0, 0], np.array([[0.7, 0.7]]))
    assert result.matches.prediction_match.tolist() == [1]
    # Equal scores: the earlier prediction goes first and takes the only reference.
    result = evaluate_objects([0.5, 0.5], [0, 0], [0], np.array([[0.6], [0.9]]))
    assert result.matches.prediction_match.tolist() == [0, -1]


def test_classes_match_only_their_own_class():
    # A perfect box of the wrong class: one FP (class 1) and one FN (class 0).
    result = evaluate_objects([0.9], [1], [0], np.array([[1.0]]), class_names={0: "tree", 1: "car"})
    tree, car = result.classes
    assert (tree.name, tree.tp, tree.fp, tree.fn, tree.precision, tree.recall) == ("tree", 0, 0, 1, None, 0.0)
    assert tree.ap == 0.0 and tree.f1 is None  # never predicted: AP 0, precision undefined
    assert (car.name, car.tp, car.fp, car.fn, car.precision, car.recall) == ("car", 0, 1, 0, 0.0, None)
    assert car.ap is None  # absent from the reference: no AP, and left out of the mean
    assert result.ap == 0.0 and result.matches.prediction_best_iou.tolist() == [0.0]
    agnostic = evaluate_objects([0.9], [1], [0], np.array([[1.0]]), class_agnostic=True)
    assert agnostic.tp == 1 and agnostic.ap == pytest.approx(1.0)


def test_sparse_pairs_give_the_dense_result():
    references, reference_classes, predictions, predicted_classes, scores = _case(7)
    ious = _coco_iou(predictions, references)
    dense = evaluate_objects(scores, predicted_classes, reference_classes, ious)
    pairs = IouPairs.from_matrix(ious)
    shuffled = np.random.default_rng(0).permutation(len(pairs.iou))
    sparse = evaluate_objects(
        scores,
        predicted_classes,
        reference_classes,
        IouPairs(pairs.prediction[shuffled], pairs.reference[shuffled], pairs.iou[shuffled]),
    )
    assert sparse.as_dict() == dense.as_dict()
    assert np.array_equal(sparse.matches.prediction_match, dense.matches.prediction_match)
    assert len(pairs.iou) < ious.size  # the case is sparse


def test_empty_sides():
    nothing_predicted = evaluate_objects([], [], [0, 0], IouPairs.empty())
    assert (nothing_predicted.tp, nothing_predicted.fp, nothing_predicted.fn) == (0, 0, 2)
    assert (
        nothing_predicted.precision is None
        and nothing_predicted.recall == 0.0
        and nothing_predicted.ap == 0.0
    )
    nothing_referenced = evaluate_objects([0.3], [0], [], np.zeros((1, 0)))
    assert nothing_referenced.ap is None and nothing_referenced.recall is None and nothing_referenced.fp == 1


def test_coco_precision_reads_the_envelope_at_the_recall_thresholds():
    recall, precision, interpolated = coco_precision(np.array([True, False, True, False]), 4)
    assert recall.tolist() == [0.25, 0.25, 0.5, 0.5]
    assert precision == pytest.approx([1.0, 0.5, 2 / 3, 0.5])
    # Envelope: 1 up to recall 0.25, 2/3 up to 0.5, 0 beyond (never reached).
    assert interpolated[:26] == pytest.approx([1.0] * 26)
    assert interpolated[26:51] == pytest.approx([2 / 3] * 25)
    assert not interpolated[51:].any()


def test_f1_and_refusals():
    assert f1_score(0.0, 0.0) == 0.0 and f1_score(None, 1.0) is None
    with pytest.raises(ValueError, match="threshold"):
        evaluate_objects([1.0], [0], [0], np.ones((1, 1)), iou_threshold=0.0)
    with pytest.raises(ValueError, match="do not exist"):
        evaluate_objects([1.0], [0], [0], IouPairs([0], [3], [0.5]))
