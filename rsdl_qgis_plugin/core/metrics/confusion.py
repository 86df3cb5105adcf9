"""Confusion matrix of a class raster against reference labels, and the accuracy metrics from it.

Pixel pairs (reference value, predicted value) are counted block by block, so a raster of any
size is evaluated in bounded memory; pixels the caller marks invalid (reference ignore or nodata,
prediction nodata) are counted apart and never enter the matrix.

Conventions (the same as ``training/evaluate.py``):
- rows are reference classes, columns predicted classes (as sklearn and torchmetrics);
- a ratio whose denominator is zero (precision of a class never predicted, recall of a class
  absent from the reference, kappa when chance agreement is total) is ``None``, not 0;
- mean IoU and mean F1 are over the classes present in the reference or the prediction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "MAX_DENSE_CODES",
    "ClassMetrics",
    "ConfusionMatrix",
    "PairCounts",
]

# Pairs are counted with bincount on dense codes while (top value + 1)^2 stays this small (8 MB
# of counts), else with np.unique on 64-bit codes.
MAX_DENSE_CODES = 1 << 20


@dataclass
class PairCounts:
    """Pixel counts per (reference value, predicted value), and the pixels left out."""

    counts: dict[tuple[int, int], int] = field(default_factory=dict)
    excluded: int = 0

    def add_block(
        self, reference: np.ndarray, prediction: np.ndarray, valid: np.ndarray | None = None
    ) -> None:
        """Count one block; ``valid`` (bool, same shape) is False where a pixel is left out.

        Values must be unsigned whole numbers (class rasters are Byte, UInt16 or UInt32)."""
        if reference.shape != prediction.shape:
            raise ValueError(f"Block shapes differ: {reference.shape} and {prediction.shape}.")
        if valid is not None:
            self.excluded += int(valid.size - np.count_nonzero(valid))
            reference, prediction = reference[valid], prediction[valid]
        reference = np.asarray(reference).ravel()
        prediction = np.asarray(prediction).ravel()
        if reference.size == 0:
            return
        if min(reference.min(), prediction.min()) < 0:
            raise ValueError("Class values must be unsigned whole numbers.")
        size = int(max(reference.max(), prediction.max())) + 1
        if size * size <= MAX_DENSE_CODES:
            codes = reference.astype(np.int64) * size + prediction.astype(np.int64)
            bins = np.bincount(codes, minlength=size * size)
            present = np.flatnonzero(bins)
            pairs = zip((present // size).tolist(), (present % size).tolist(), bins[present].tolist())
        else:
            codes = (reference.astype(np.uint64) << np.uint64(32)) | prediction.astype(np.uint64)
            unique, counts = np.unique(codes, return_counts=True)
            pairs = zip(
                (unique >> np.uint64(32)).tolist(), (unique & np.uint64(0xFFFFFFFF)).tolist(), counts.tolist()
            )
        for truth, predicted, count in pairs:
            key = (int(truth), int(predicted))
            self.counts[key] = self.counts.get(key, 0) + int(count)

    def relabelled(self, reference_values: dict[int, int]) -> PairCounts:
        """The same counts with reference values renamed (``{old: new}``; others unchanged)."""
        result = PairCounts(excluded=self.excluded)
        for (truth, predicted), count in self.counts.items():
            key = (reference_values.get(truth, truth), predicted)
            result.counts[key] = result.counts.get(key, 0) + count
        return result

    def values(self) -> set[int]:
        """Every value seen in the reference or the prediction."""
        return {value for pair in self.counts for value in pair}


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator else None


def _mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


@dataclass(frozen=True)
class ClassMetrics:
    """Per-class results: pixel counts and the ratios (None where undefined)."""

    value: int
    support: int  # reference pixels of the class
    predicted: int  # pixels predicted as the class
    true_positive: int
    iou: float | None
    f1: float | None
    precision: float | None
    recall: float | None

    @property
    def present(self) -> bool:
        """Whether the class occurs in the reference or the prediction."""
        return self.support + self.predicted > 0


@dataclass(frozen=True)
class ConfusionMatrix:
    """``matrix[i, j]``: pixels of reference class ``values[i]`` predicted as ``values[j]``."""

    values: tuple[int, ...]
    matrix: np.ndarray
    excluded: int = 0

    @classmethod
    def from_counts(cls, counts: PairCounts, extra_values: Iterable[int] = ()) -> ConfusionMatrix:
        """The matrix over every value counted plus ``extra_values`` (classes known by name that
        may not occur), in ascending order."""
        values = tuple(sorted(counts.values() | {int(v) for v in extra_values}))
        index = {value: position for position, value in enumerate(values)}
        matrix = np.zeros((len(values), len(values)), dtype=np.int64)
        for (truth, predicted), count in counts.counts.items():
            matrix[index[truth], index[predicted]] += count
        return cls(values, matrix, counts.excluded)

    @property
    def total(self) -> int:
        """Pixels evaluated (in the matrix)."""
        return int(self.matrix.sum())

    def class_metrics(self) -> list[ClassMetrics]:
        diagonal = np.diag(self.matrix)
        support = self.matrix.sum(axis=1)
        predicted = self.matrix.sum(axis=0)
        rows = []
        for position, value in enumerate(self.values):
            tp = int(diagonal[position])
            fn = int(support[position]) - tp
            fp = int(predicted[position]) - tp
            rows.append(
                ClassMetrics(
                    value=value,
                    support=int(support[position]),
                    predicted=int(predicted[position]),
                    true_positive=tp,
                    iou=_ratio(tp, tp + fp + fn),
                    f1=_ratio(2 * tp, 2 * tp + fp + fn),
                    precision=_ratio(tp, tp + fp),
                    recall=_ratio(tp, tp + fn),
                )
            )
        return rows

    @property
    def overall_accuracy(self) -> float | None:
        return _ratio(np.trace(self.matrix), self.total)

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa: agreement beyond chance, (p_o - p_e) / (1 - p_e)."""
        total = float(self.total)
        if not total:
            return None
        observed = float(np.trace(self.matrix)) / total
        # float64 products: pixel counts squared overflow int64 past 3e9 pixels
        chance = float(
            np.dot(self.matrix.sum(axis=1).astype(np.float64), self.matrix.sum(axis=0).astype(np.float64))
        ) / (total * total)
        return _ratio(observed - chance, 1.0 - chance) if chance < 1.0 else None

    @property
    def mean_iou(self) -> float | None:
        return _mean(row.iou for row in self.class_metrics() if row.present)

    @property
    def mean_f1(self) -> float | None:
        return _mean(row.f1 for row in self.class_metrics() if row.present)

    def as_dict(self, names: dict[int, str]) -> dict[str, Any]:
        """Every result as JSON-ready data (None for undefined values)."""
        classes = [
            {
                "value": row.value,
                "name": names.get(row.value, str(row.value)),
                "iou": row.iou,
                "f1": row.f1,
                "precision": row.precision,
                "recall": row.recall,
                "support": row.support,
                "predicted": row.predicted,
            }
            for row in self.class_metrics()
        ]
        return {
            "classes": classes,
            "overall_accuracy": self.overall_accuracy,
            "kappa": self.kappa,
            "mean_iou": self.mean_iou,
            "mean_f1": self.mean_f1,
            "labelled": self.total,
            "excluded": self.excluded,
            "confusion_matrix": {
                "rows": "reference",
                "columns": "prediction",
                "classes": [names.get(v, str(v)) for v in self.values],
                "class_values": [int(v) for v in self.values],
                "values": self.matrix.tolist(),
            },
        }
