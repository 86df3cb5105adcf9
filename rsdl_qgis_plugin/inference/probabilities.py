"""Model outputs as probabilities: the unit-range test and softmax that segmentation (the tiled
engine) and classification share, so both read a model's outputs the same way."""

from __future__ import annotations

import numpy as np

__all__ = [
    "in_unit_range",
    "softmax",
]


def in_unit_range(values: np.ndarray) -> bool:
    """Whether every value lies in [0, 1] (probabilities, or logits that happen to)."""
    return bool(values.min() >= 0.0 and values.max() <= 1.0)


def softmax(values: np.ndarray) -> np.ndarray:
    """Softmax over axis 1, shifted by the maximum so large logits do not overflow."""
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
