"""Class probabilities of many features, kept between rsdl:classifyfeatures' two passes. QGIS-free.

The first pass classifies the features that have a crop (in batches, in any order); the second
copies every feature and looks its probabilities up by id. The store is compact (8 + 4 x classes
bytes per feature), so millions of features fit, and a feature that was never classified reads
as NaN probabilities.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable

import numpy as np

from ..core.errors import CancelledError
from .classifier import Classifier, classify_in_batches

__all__ = ["FeatureResults", "collect_probabilities"]


class FeatureResults:
    """Probabilities by feature id, compact (8 + 4 x classes bytes per feature), for the second pass."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self._ids = array("q")
        self._values = array("f")
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, ids: np.ndarray, probabilities: np.ndarray) -> None:
        self._ids.extend(int(i) for i in ids)
        self._values.extend(probabilities.astype(np.float32).ravel().tolist())
        self._sorted = None

    def get(self, feature_id: int) -> np.ndarray:
        """The feature's probabilities; NaN when it was not classified."""
        if self._sorted is None:
            ids = np.frombuffer(self._ids, dtype=np.int64) if self._ids else np.zeros(0, np.int64)
            order = np.argsort(ids, kind="stable")
            values = np.frombuffer(self._values, dtype=np.float32).reshape(-1, self.classes)
            self._sorted = ids[order], values[order]
        ids, values = self._sorted
        position = int(np.searchsorted(ids, feature_id))
        if position < len(ids) and ids[position] == feature_id:
            return values[position]
        return np.full(self.classes, np.nan, dtype=np.float32)


def collect_probabilities(
    classifier: Classifier,
    crops: Iterable[tuple[int, np.ndarray]],
    batch_size: int,
    is_cancelled: Callable[[], bool] = lambda: False,
) -> FeatureResults:
    """Classify (feature id, crop) pairs ``batch_size`` at a time and keep their probabilities.

    ``is_cancelled`` is asked after each batch; True stops with ``CancelledError``."""
    results = FeatureResults(len(classifier.class_names))
    for keys, classification in classify_in_batches(classifier, crops, batch_size):
        results.add(keys, classification.probabilities)
        if is_cancelled():
            raise CancelledError()
    return results
