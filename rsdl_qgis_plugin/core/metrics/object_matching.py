"""Object-level accuracy: predicted objects matched to reference objects at an IoU threshold.

Pure numpy; the overlaps come from outside (the QGIS side computes polygon IoUs with QGIS's
geometry engine), as a dense matrix or as sparse ``IouPairs``. Everything follows COCO's
``COCOeval`` (pycocotools) for one image, area range "all" and no limit on the number of
detections (COCO's ``maxDets`` taken large enough for every object), so that its numbers are
reproduced exactly:

* per class, predictions are taken by descending score (a stable sort: equal scores keep the
  input order); each one matches the still unmatched reference with the highest IoU >= the
  threshold (a threshold of 1 counts as 1 - 1e-10); between equal IoUs the later reference wins,
  as COCO's loop keeps the last one;
* precision at each rank is ``tp / (tp + fp + eps)``, made non-increasing from the right, and read
  at the 101 recall thresholds 0, 0.01, ..., 1 (the first rank reaching each; 0 where the recall is
  never reached); AP is their mean;
* AP@[.5:.95] is the mean of the APs at IoU 0.50, 0.55, ..., 0.95; the means over classes take the
  classes present in the reference (a class only predicted has no AP; one never predicted has 0).

TP, FP, FN, precision, recall and F1 are counted at the chosen threshold over all predictions
(no score cut-off). Undefined ratios are None, never 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "AGNOSTIC_CLASS_NAME",
    "COCO_IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "SCORE_NAMES",
    "ClassEvaluation",
    "IouPairs",
    "ObjectEvaluation",
    "ObjectMatches",
    "coco_precision",
    "evaluate_objects",
    "f1_score",
    "greedy_match",
]

# pycocotools' Params.setDetParams, to the last bit.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AGNOSTIC_CLASS_NAME = "all objects"
# The figures of a class and of the whole evaluation, in the order of their dictionaries (JSON, CSV).
SCORE_NAMES = ("tp", "fp", "fn", "precision", "recall", "f1", "ap_at_threshold", "ap50", "ap75", "ap")
_HIGHEST_THRESHOLD = 1 - 1e-10  # COCO: min(t, 1 - 1e-10), so that IoU 1 - float noise still matches


@dataclass(frozen=True)
class IouPairs:
    """Sparse IoUs between predictions and references (indices into each): pairs not listed have
    IoU 0 and never match (thresholds are > 0)."""

    prediction: np.ndarray  # (K,) int
    reference: np.ndarray  # (K,) int
    iou: np.ndarray  # (K,) float

    def __post_init__(self) -> None:
        for name in ("prediction", "reference"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.int64).reshape(-1))
        object.__setattr__(self, "iou", np.asarray(self.iou, dtype=np.float64).reshape(-1))
        if not len(self.prediction) == len(self.reference) == len(self.iou):
            raise ValueError("IouPairs: prediction, reference and iou must have the same length")

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> IouPairs:
        """The pairs of a dense ``(predictions, references)`` matrix with IoU > 0."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim != 2:
            raise ValueError(f"an IoU matrix must be 2-D (predictions, references), not {matrix.shape}")
        rows, cols = np.nonzero(matrix > 0)
        return cls(rows, cols, matrix[rows, cols])

    @classmethod
    def empty(cls) -> IouPairs:
        return cls(np.empty(0), np.empty(0), np.empty(0))


@dataclass(frozen=True)
class ObjectMatches:
    """Who matched whom at the chosen threshold (indices; -1 for none), with the IoUs.

    ``*_best_iou`` is the highest IoU with any object of the same class on the other side, matched
    or not (0 when none overlaps): it tells a near miss from an object found nowhere.
    """

    prediction_match: np.ndarray  # (N,) reference index or -1
    prediction_iou: np.ndarray  # (N,) IoU of the match, NaN when unmatched
    prediction_best_iou: np.ndarray  # (N,)
    reference_match: np.ndarray  # (M,) prediction index or -1
    reference_best_iou: np.ndarray  # (M,)


@dataclass(frozen=True)
class ClassEvaluation:
    """One class's counts at the chosen threshold, its APs and its precision-recall curve.

    ``ap_by_threshold`` holds the AP at each of ``COCO_IOU_THRESHOLDS``; ``ap50``, ``ap75`` and
    ``ap`` (the mean over them) are None for a class absent from the reference. The curve is the
    raw one at the chosen threshold (one point per prediction, by descending score; empty for a
    class absent from the reference);
    ``interpolated_precision`` is what the AP at that threshold averages (at ``RECALL_THRESHOLDS``).
    """

    class_id: int
    name: str
    references: int
    predictions: int
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    ap_at_threshold: float | None
    ap_by_threshold: tuple[float, ...] | None
    curve_recall: np.ndarray = field(repr=False)
    curve_precision: np.ndarray = field(repr=False)
    interpolated_precision: np.ndarray | None = field(repr=False)

    @property
    def ap50(self) -> float | None:
        return None if self.ap_by_threshold is None else self.ap_by_threshold[0]

    @property
    def ap75(self) -> float | None:
        return None if self.ap_by_threshold is None else self.ap_by_threshold[5]

    @property
    def ap(self) -> float | None:
        return None if self.ap_by_threshold is None else float(np.mean(self.ap_by_threshold))

    def as_dict(self) -> dict[str, Any]:
        return {
            "class_id": self.class_id,
            "name": self.name,
            "references": self.references,
            "predictions": self.predictions,
            **{name: getattr(self, name) for name in SCORE_NAMES},
        }


@dataclass(frozen=True)
class ObjectEvaluation:
    """The whole evaluation: totals over classes (TP, FP, FN and the ratios from them), the means
    of the APs over the classes present in the reference, each class, and the matches."""

    iou_threshold: float
    class_agnostic: bool
    classes: tuple[ClassEvaluation, ...]
    matches: ObjectMatches = field(repr=False)

    @property
    def tp(self) -> int:
        return sum(row.tp for row in self.classes)

    @property
    def fp(self) -> int:
        return sum(row.fp for row in self.classes)

    @property
    def fn(self) -> int:
        return sum(row.fn for row in self.classes)

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return f1_score(self.precision, self.recall)

    def _mean(self, name: str) -> float | None:
        values = [getattr(row, name) for row in self.classes if row.references > 0]
        return float(np.mean(values)) if values else None

    @property
    def ap50(self) -> float | None:
        return self._mean("ap50")

    @property
    def ap75(self) -> float | None:
        return self._mean("ap75")

    @property
    def ap(self) -> float | None:
        return self._mean("ap")

    @property
    def ap_at_threshold(self) -> float | None:
        return self._mean("ap_at_threshold")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary and per-class rows (no per-object arrays, no curves)."""
        return {
            "iou_threshold": self.iou_threshold,
            "class_agnostic": self.class_agnostic,
            "predictions": len(self.matches.prediction_match),
            "references": len(self.matches.reference_match),
            **{name: getattr(self, name) for name in SCORE_NAMES},
            "classes": [row.as_dict() for row in self.classes],
        }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


def f1_score(precision: float | None, recall: float | None) -> float | None:
    """Harmonic mean; None when either is undefined, 0 when both are 0."""
    if precision is None or recall is None:
        return None
    total = precision + recall
    return 2 * precision * recall / total if total > 0 else 0.0


def greedy_match(
    order: np.ndarray,
    candidates: list[tuple[np.ndarray, np.ndarray]],
    reference_count: int,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCO's greedy matching of one class at one threshold.

    ``order`` lists local prediction indices by descending score; ``candidates[i]`` holds the
    local references overlapping prediction ``i`` (ascending) and their IoUs. Returns, per
    prediction (local index), the matched local reference or -1 and the IoU of the match (NaN
    when none), and per reference the matched prediction or -1.
    """
    prediction_match = np.full(len(candidates), -1, dtype=np.int64)
    match_iou = np.full(len(candidates), np.nan)
    reference_match = np.full(reference_count, -1, dtype=np.int64)
    lowest = min(threshold, _HIGHEST_THRESHOLD)
    for index in order.tolist():
        references, ious = candidates[index]
        best, chosen = lowest, -1
        for reference, iou in zip(references.tolist(), ious.tolist()):
            # As COCO: a taken reference is skipped; an IoU equal to the best so far replaces it.
            if reference_match[reference] >= 0 or iou < best:
                continue
            best, chosen = iou, reference
        if chosen >= 0:
            prediction_match[index] = chosen
            match_iou[index] = best
            reference_match[chosen] = index
    return prediction_match, match_iou, reference_match


def coco_precision(
    matched_in_order: np.ndarray, reference_count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw recall and precision at each rank of predictions sorted by descending score
    (``matched_in_order``: whether each is a true positive), and COCO's interpolated precision at
    ``RECALL_THRESHOLDS`` (its mean is the AP). ``reference_count`` must be > 0."""
    matched = np.asarray(matched_in_order, dtype=bool)
    tp = np.cumsum(matched).astype(np.float64)
    fp = np.cumsum(~matched).astype(np.float64)
    recall = tp / reference_count
    precision = tp / (fp + tp + np.spacing(1))
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    ranks = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
    reached = ranks < len(envelope)
    interpolated = np.zeros(len(RECALL_THRESHOLDS))
    interpolated[reached] = envelope[ranks[reached]]
    return recall, precision, interpolated


def _class_ids(values: Any, count: int, side: str) -> np.ndarray:
    ids = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(ids) != count:
        raise ValueError(f"{side}: {len(ids)} class ids for {count} objects")
    return ids


def _local_candidates(
    pairs: IouPairs,
    predictions: np.ndarray,
    references: np.ndarray,
    prediction_count: int,
    reference_count: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per prediction of the class (local index), its references of the class (local, ascending)
    and their IoUs."""
    local_prediction = np.full(prediction_count, -1, dtype=np.int64)
    local_prediction[predictions] = np.arange(len(predictions))
    local_reference = np.full(reference_count, -1, dtype=np.int64)
    local_reference[references] = np.arange(len(references))
    rows, cols = local_prediction[pairs.prediction], local_reference[pairs.reference]
    keep = (rows >= 0) & (cols >= 0) & (pairs.iou > 0)
    rows, cols, ious = rows[keep], cols[keep], pairs.iou[keep]
    order = np.lexsort((cols, rows))
    rows, cols, ious = rows[order], cols[order], ious[order]
    starts = np.searchsorted(rows, np.arange(len(predictions) + 1))
    return [(cols[a:b], ious[a:b]) for a, b in zip(starts[:-1], starts[1:])]


def evaluate_objects(
    scores: Any,
    predicted_classes: Any,
    reference_classes: Any,
    ious: IouPairs | np.ndarray,
    iou_threshold: float = 0.5,
    class_names: Mapping[int, str] | None = None,
    class_agnostic: bool = False,
) -> ObjectEvaluation:
    """Match predictions to references class by class and score them (see the module's notes).

    ``scores`` and ``predicted_classes`` have one value per prediction, ``reference_classes`` one
    per reference (integer class ids); ``ious`` is the ``(predictions, references)`` IoU matrix or
    its non-zero pairs. Pairs of different classes are ignored. With ``class_agnostic`` every
    object is one class, named ``AGNOSTIC_CLASS_NAME``, whatever its class id.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"the IoU threshold must be in (0, 1], not {iou_threshold}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    prediction_count = len(scores)
    predicted = _class_ids(predicted_classes, prediction_count, "predictions")
    reference_count = len(np.asarray(reference_classes).reshape(-1))
    reference = _class_ids(reference_classes, reference_count, "references")
    if class_agnostic:
        predicted, reference = np.zeros_like(predicted), np.zeros_like(reference)
        names: Mapping[int, str] = {0: AGNOSTIC_CLASS_NAME}
    else:
        names = class_names or {}
    pairs = ious if isinstance(ious, IouPairs) else IouPairs.from_matrix(ious)
    if len(pairs.iou) and (
        pairs.prediction.min() < 0
        or pairs.prediction.max() >= prediction_count
        or pairs.reference.min() < 0
        or pairs.reference.max() >= reference_count
    ):
        raise ValueError("IoU pairs name objects that do not exist")
    same_class = predicted[pairs.prediction] == reference[pairs.reference]
    pairs = IouPairs(pairs.prediction[same_class], pairs.reference[same_class], pairs.iou[same_class])

    matches = ObjectMatches(
        prediction_match=np.full(prediction_count, -1, dtype=np.int64),
        prediction_iou=np.full(prediction_count, np.nan),
        prediction_best_iou=np.zeros(prediction_count),
        reference_match=np.full(reference_count, -1, dtype=np.int64),
        reference_best_iou=np.zeros(reference_count),
    )
    np.maximum.at(matches.prediction_best_iou, pairs.prediction, pairs.iou)
    np.maximum.at(matches.reference_best_iou, pairs.reference, pairs.iou)

    rows = []
    for class_id in sorted(set(predicted.tolist()) | set(reference.tolist())):
        members = np.flatnonzero(predicted == class_id)
        targets = np.flatnonzero(reference == class_id)
        candidates = _local_candidates(pairs, members, targets, prediction_count, reference_count)
        order = np.argsort(-scores[members], kind="mergesort")  # COCO's sort: ties keep input order
        local_match, match_iou, local_reference = greedy_match(order, candidates, len(targets), iou_threshold)
        found, taken = local_match >= 0, local_reference >= 0
        matches.prediction_match[members[found]] = targets[local_match[found]]
        matches.prediction_iou[members] = match_iou
        matches.reference_match[targets[taken]] = members[local_reference[taken]]
        rows.append(_class_row(class_id, names, order, candidates, local_match, len(targets), iou_threshold))
    return ObjectEvaluation(float(iou_threshold), class_agnostic, tuple(rows), matches)


def _class_row(
    class_id: int,
    names: Mapping[int, str],
    order: np.ndarray,
    candidates: list[tuple[np.ndarray, np.ndarray]],
    local_match: np.ndarray,
    reference_count: int,
    iou_threshold: float,
) -> ClassEvaluation:
    prediction_count = len(candidates)
    tp = int(np.count_nonzero(local_match >= 0))
    precision, recall = _ratio(tp, prediction_count), _ratio(tp, reference_count)
    ap_at_threshold = ap_by_threshold = interpolated = None
    curve_recall = curve_precision = np.empty(0)
    if reference_count > 0:
        curve_recall, curve_precision, interpolated = coco_precision(local_match[order] >= 0, reference_count)
        ap_at_threshold = float(np.mean(interpolated))
        ap_values = []
        for threshold in COCO_IOU_THRESHOLDS:
            matched = greedy_match(order, candidates, reference_count, float(threshold))[0]
            ap_values.append(float(np.mean(coco_precision(matched[order] >= 0, reference_count)[2])))
        ap_by_threshold = tuple(ap_values)
    return ClassEvaluation(
        class_id=int(class_id),
        name=names.get(class_id, str(class_id)),
        references=reference_count,
        predictions=prediction_count,
        tp=tp,
        fp=prediction_count - tp,
        fn=reference_count - tp,
        precision=precision,
        recall=recall,
        f1=f1_score(precision, recall),
        ap_at_threshold=ap_at_threshold,
        ap_by_threshold=ap_by_threshold,
        curve_recall=curve_recall,
        curve_precision=curve_precision,
        interpolated_precision=interpolated,
    )
