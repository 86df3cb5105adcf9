"""Which output channel stands for which class, and class weights from pixel or sample counts.

Label masks hold class *values* (rsdl's label rules: any unsigned integer, background optional,
an ignore value); nets predict channel *indices* 0..N-1. The table maps one to the other, in
ascending order of value, so the exported spec names channels as the plugin reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsdl_qgis_plugin.core.labels.label_rules import default_class_color
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics

# Target value of pixels the loss and metrics skip (torch's CrossEntropyLoss default).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class ClassTable:
    """Per output channel: the label value it predicts, its name and colour."""

    values: tuple[int, ...]
    names: tuple[str, ...]
    colors: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("The data has no classes.")
        if list(self.values) != sorted(set(self.values)):
            raise ValueError(f"Class values must be distinct and ascending, got {list(self.values)}.")

    @classmethod
    def from_entries(cls, entries: Sequence[Mapping[str, Any]]) -> ClassTable:
        """From dataset.json's ``classes`` rows (value, name, color)."""
        rows = sorted(entries, key=lambda row: int(row["value"]))
        return cls(
            tuple(int(row["value"]) for row in rows),
            tuple(str(row["name"]) for row in rows),
            tuple(
                str(row.get("color") or default_class_color(str(row["name"]), int(row["value"])))
                for row in rows
            ),
        )

    @classmethod
    def from_names(cls, names: Sequence[str]) -> ClassTable:
        """Classes numbered 0..N-1 in the given order (image folders)."""
        return cls(
            tuple(range(len(names))),
            tuple(names),
            tuple(default_class_color(name, index + 1) for index, name in enumerate(names)),
        )

    def __len__(self) -> int:
        return len(self.values)

    @property
    def names_by_index(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def colors_by_index(self) -> dict[int, str]:
        return dict(enumerate(self.colors))

    def index_of_value(self, value: int) -> int:
        return self.values.index(value)

    def targets(self, mask: np.ndarray) -> np.ndarray:
        """Mask values -> int64 channel indices; the ignore value and unknown values -> IGNORE_INDEX."""
        values = np.asarray(self.values, dtype=np.int64)
        flat = mask.astype(np.int64)
        index = np.clip(np.searchsorted(values, flat), 0, len(values) - 1)
        return np.where(values[index] == flat, index, IGNORE_INDEX)

    def weights(self, counts: Mapping[int, int], ignore_value: int = -1) -> list[float]:
        """Balanced weights per channel (core's ``suggested_weights``) from counts per class value."""
        statistics = ClassStatistics(ignore_value, counts={int(k): int(v) for k, v in counts.items()})
        by_value = statistics.suggested_weights(list(self.values))
        return [float(by_value[value]) for value in self.values]
