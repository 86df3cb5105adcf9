"""Per-class pixel counts, accumulated block by block, and class weights suggested from them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ClassStatistics",
]


@dataclass
class ClassStatistics:
    """Pixel counts per mask value, excluding the ignore value."""

    ignore_value: int
    counts: dict[int, int] = field(default_factory=dict)
    ignored: int = 0

    def add_block(self, block: np.ndarray) -> None:
        """Count the values of one block of a label mask."""
        if block.dtype.itemsize <= 2:  # bincount is an order of magnitude faster than unique
            all_counts = np.bincount(block.ravel())
            values = np.flatnonzero(all_counts)
            counts = all_counts[values]
        else:
            values, counts = np.unique(block, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist()):
            if value == self.ignore_value:
                self.ignored += count
            else:
                self.counts[value] = self.counts.get(value, 0) + count

    def merge(self, other: ClassStatistics) -> None:
        """Add another statistics' counts to these."""
        for value, count in other.counts.items():
            self.counts[value] = self.counts.get(value, 0) + count
        self.ignored += other.ignored

    @property
    def labelled_pixels(self) -> int:
        return sum(self.counts.values())

    def suggested_weights(self, values: list[int]) -> dict[int, float]:
        """Inverse-frequency ("balanced") weights: total / (n_classes * count).

        A class with no pixels gets weight 0: it cannot be learnt from this data.
        """
        present = [value for value in values if self.counts.get(value, 0) > 0]
        total = sum(self.counts.get(value, 0) for value in present)
        return {
            value: (total / (len(present) * self.counts[value]) if value in present else 0.0)
            for value in values
        }

    def as_table(self, names: dict[int, str]) -> list[dict[str, object]]:
        """Rows of value, name, pixel count, share of labelled pixels and suggested weight."""
        values = sorted(set(names) | set(self.counts))
        weights = self.suggested_weights(values)
        total = self.labelled_pixels
        return [
            {
                "value": value,
                "name": names.get(value, str(value)),
                "pixels": self.counts.get(value, 0),
                "share": (self.counts.get(value, 0) / total) if total else 0.0,
                "weight": round(weights[value], 6),
            }
            for value in values
        ]
