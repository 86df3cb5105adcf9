"""Training chips: where they are cut, which split each goes to, and which are kept.

Pure numpy; the GDAL side (reading strips, writing chips) is ``qgis_io/chip_writer.py`` and the
folder layout is ``core/datasets/chip_folder.py``.

Chip plan
    Square chips of ``size`` pixels start every ``stride`` pixels along rows and columns, from
    pixel (0, 0). When the last chip of a row or column stops short of the raster edge, one more
    chip is placed flush with the edge (it overlaps its neighbour), so every pixel is covered
    when ``stride <= size`` and every chip has the full size: the ``flush_end_starts`` rule of
    ``core/tiling/layouts.py``.

Spatial block split
    The raster is cut into square blocks of ``block_size`` pixels from pixel (0, 0). The blocks
    are ranked by a hash of (seed, block row, block column); the first ``round(n * val)`` go to
    validation, the next ``round(n * test)`` to test (at least one block for a positive fraction)
    and the rest to training. Fractions are therefore fractions of blocks, not of chips. A chip
    goes to the split of the block(s) it touches; a chip touching blocks of different splits is
    dropped. Blocks never overlap, so chips of different splits never share a pixel.

Which chips are kept, in this order
    1. chips whose image is nodata in every pixel (nodata in any band, core/raster/nodata.py) are skipped;
    2. chips whose mask is the ignore value in every pixel are skipped;
    3. "empty" chips (no pixel of a foreground class, i.e. of a class other than background;
       for object chips: no object kept in the chip) are kept with probability ``keep_empty``,
       drawn from a hash of (seed, chip row, chip column);
    4. classification: the chip takes the foreground class with the largest share of the
       chip's labelled (non-ignore) pixels when that share is at least ``min_cover`` (ties: the
       lower value); a chip without any foreground pixel takes the background class when the
       mask has one; any other chip is ambiguous. Ambiguous chips are dropped in
       classification mode and written only as segmentation pairs in "both" mode.
Every draw depends only on the seed and the chip's or block's position, so a run is
reproducible and does not depend on the order in which chips are processed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import RsdlError
from ..metrics.class_statistics import ClassStatistics
from ..tiling.layouts import TileLayout, flush_end_starts

__all__ = [
    "CHIP_MODE_DESCRIPTIONS",
    "DEFAULT_BLOCK_CHIPS",
    "MIN_CHIP_SIZE",
    "BlockSplit",
    "ChipDecision",
    "ChipMode",
    "ChipOutcome",
    "ChipPlan",
    "ChipRules",
    "ChipTally",
    "ChipWindow",
    "Split",
    "SplitSettings",
    "chip_class",
    "chip_offsets",
    "decide_chip",
    "foreground_pixels",
    "keep_empty_chip",
    "unit_hash",
]

MIN_CHIP_SIZE = 8
DEFAULT_BLOCK_CHIPS = 8  # default block side, in chips
_BLOCK_STREAM = 1  # hash streams: block ranking and empty-chip sampling draw independently
_EMPTY_STREAM = 2


class Split(enum.Enum):
    """A data split; the value is its folder name."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


class ChipMode(enum.IntEnum):
    """What is written for each chip."""

    SEGMENTATION = 0
    CLASSIFICATION = 1
    BOTH = 2
    OBJECTS = 3  # image chips with object annotations (core/datasets/object_chips.py)

    @property
    def writes_segmentation(self) -> bool:
        return self in (ChipMode.SEGMENTATION, ChipMode.BOTH)

    @property
    def writes_classification(self) -> bool:
        return self in (ChipMode.CLASSIFICATION, ChipMode.BOTH)

    @property
    def writes_objects(self) -> bool:
        return self == ChipMode.OBJECTS


CHIP_MODE_DESCRIPTIONS = {
    ChipMode.SEGMENTATION: "Segmentation: image/mask pairs",
    ChipMode.CLASSIFICATION: "Classification: image chips in class folders",
    ChipMode.BOTH: "Both",
    ChipMode.OBJECTS: "Objects: image chips with COCO, YOLO or Pascal VOC annotations",
}


class ChipOutcome(enum.Enum):
    """What happened to a planned chip; the value is its key in the chip counts."""

    WRITTEN = "written"
    STRADDLING = "dropped_straddling_splits"
    NODATA = "skipped_nodata"
    ALL_IGNORE = "skipped_all_ignore"
    EMPTY = "dropped_empty"
    AMBIGUOUS = "dropped_ambiguous_class"


def unit_hash(seed: int, *keys: int) -> float:
    """A number in [0, 1) that depends only on the seed and the keys (stable across numpy versions)."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0]
    return float(state) / 2.0**64


@dataclass(frozen=True)
class ChipWindow:
    """A square chip whose top-left pixel is (row, col)."""

    row: int
    col: int
    size: int

    @property
    def chip_id(self) -> str:
        return f"r{self.row:06d}_c{self.col:06d}"


# Chip starts along one axis: 0, stride, ... and one chip flush with the end if needed.
chip_offsets = flush_end_starts


@dataclass(frozen=True)
class ChipPlan:
    """Every chip window of a raster of ``width`` x ``height`` pixels."""

    width: int
    height: int
    size: int
    stride: int

    def __post_init__(self) -> None:
        if self.size < MIN_CHIP_SIZE:
            raise RsdlError(f"CHIP_SIZE must be at least {MIN_CHIP_SIZE} pixels, got {self.size}.")
        if self.size > min(self.width, self.height):
            raise RsdlError(
                f"CHIP_SIZE ({self.size} px) is larger than the image ({self.width} x "
                f"{self.height} px); choose a chip size of at most {min(self.width, self.height)}."
            )
        if self.stride <= 0:
            raise RsdlError(
                f"STRIDE must be a positive number of pixels (0: the chip size), got {self.stride}."
            )

    @cached_property
    def layout(self) -> TileLayout:
        return TileLayout(self.width, self.height, self.size, self.stride, flush_end_starts)

    @property
    def row_offsets(self) -> list[int]:
        return list(self.layout.tile_row_starts)

    @property
    def col_offsets(self) -> list[int]:
        return list(self.layout.tile_col_starts)

    def row(self, row_offset: int) -> list[ChipWindow]:
        """The chips whose top edge is at ``row_offset``, left to right."""
        return [ChipWindow(row_offset, col, self.size) for col in self.col_offsets]

    def __iter__(self) -> Iterator[ChipWindow]:
        for row in self.row_offsets:
            yield from self.row(row)

    def __len__(self) -> int:
        return len(self.layout)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise RsdlError(f"{name} must be between 0 and 1, got {value}.")


@dataclass(frozen=True)
class SplitSettings:
    """Fractions of blocks for validation and test, the block side in pixels and the seed."""

    val_fraction: float
    test_fraction: float
    block_size: int
    seed: int

    def __post_init__(self) -> None:
        _check_fraction("VAL_FRACTION", self.val_fraction)
        _check_fraction("TEST_FRACTION", self.test_fraction)
        if self.val_fraction + self.test_fraction >= 1.0:
            raise RsdlError(
                f"VAL_FRACTION + TEST_FRACTION is {self.val_fraction + self.test_fraction:g}; it "
                "must be below 1 so that some blocks are left for training."
            )
        if self.block_size <= 0:
            raise RsdlError(f"SPLIT_BLOCK must be a positive number of pixels, got {self.block_size}.")
        if self.seed < 0:
            raise RsdlError(f"SEED must be 0 or a positive whole number, got {self.seed}.")


def _blocks_for(n_blocks: int, fraction: float) -> int:
    return max(1, round(n_blocks * fraction)) if fraction > 0 else 0


class BlockSplit:
    """Each block of the raster assigned to a split; chips take the split of their blocks."""

    def __init__(self, width: int, height: int, chip_size: int, settings: SplitSettings) -> None:
        if settings.block_size < chip_size:
            raise RsdlError(
                f"SPLIT_BLOCK ({settings.block_size} px) is smaller than CHIP_SIZE ({chip_size} px): "
                "every chip would touch blocks of several splits. Use a block of several chips."
            )
        self.block_size = settings.block_size
        rows = -(-height // settings.block_size)
        cols = -(-width // settings.block_size)
        n_blocks = rows * cols
        n_val = _blocks_for(n_blocks, settings.val_fraction)
        n_test = _blocks_for(n_blocks, settings.test_fraction)
        if n_val + n_test >= n_blocks:
            raise RsdlError(
                f"The image holds only {n_blocks} split blocks of {settings.block_size} px, too few "
                f"for {n_val} validation and {n_test} test blocks and at least one training block. "
                "Make SPLIT_BLOCK smaller (or the fractions smaller)."
            )
        keys = [unit_hash(settings.seed, _BLOCK_STREAM, r, c) for r in range(rows) for c in range(cols)]
        order = np.argsort(np.asarray(keys), kind="stable")
        codes = np.zeros(n_blocks, dtype=np.int8)  # index into SPLIT_ORDER
        codes[order[:n_val]] = 1
        codes[order[n_val : n_val + n_test]] = 2
        self.blocks = codes.reshape(rows, cols)

    SPLIT_ORDER = (Split.TRAIN, Split.VAL, Split.TEST)

    def split_of(self, window: ChipWindow) -> Split | None:
        """The split of the blocks the chip touches, or None when they belong to different splits."""
        first_row, last_row = window.row // self.block_size, (window.row + window.size - 1) // self.block_size
        first_col, last_col = window.col // self.block_size, (window.col + window.size - 1) // self.block_size
        touched = np.unique(self.blocks[first_row : last_row + 1, first_col : last_col + 1])
        return self.SPLIT_ORDER[int(touched[0])] if touched.size == 1 else None

    def block_counts(self) -> dict[str, int]:
        """Number of blocks per split."""
        return {split.value: int((self.blocks == code).sum()) for code, split in enumerate(self.SPLIT_ORDER)}


@dataclass(frozen=True)
class ChipRules:
    """Which chips are kept and how classification chips get their class."""

    mode: ChipMode
    background_value: int | None
    min_cover: float = 0.5
    keep_empty: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_fraction("MIN_COVER", self.min_cover)
        _check_fraction("KEEP_EMPTY", self.keep_empty)


def foreground_pixels(counts: dict[int, int], background_value: int | None) -> int:
    """Pixels of classes other than background (the ignore value is never in ``counts``)."""
    return sum(count for value, count in counts.items() if value != background_value)


def chip_class(counts: dict[int, int], background_value: int | None, min_cover: float) -> int | None:
    """The class value of a classification chip, or None when the chip is ambiguous.

    ``counts`` are the chip's pixels per class value, the ignore value left out.
    """
    labelled = sum(counts.values())
    if labelled == 0:
        return None
    foreground = {value: count for value, count in counts.items() if value != background_value and count > 0}
    if not foreground:
        return background_value
    best = min(foreground, key=lambda value: (-foreground[value], value))
    return best if foreground[best] >= min_cover * labelled else None


def keep_empty_chip(seed: int, window: ChipWindow, keep_fraction: float) -> bool:
    """Whether an empty chip is among the sampled share that is kept."""
    if keep_fraction >= 1.0:
        return True
    return unit_hash(seed, _EMPTY_STREAM, window.row, window.col) < keep_fraction


@dataclass(frozen=True)
class ChipDecision:
    outcome: ChipOutcome
    class_value: int | None = None


def decide_chip(
    window: ChipWindow,
    image_all_nodata: bool,
    statistics: ClassStatistics,
    rules: ChipRules,
    object_count: int | None = None,
) -> ChipDecision:
    """Whether a chip (already placed in a split) is written, and its classification class.

    With ``object_count`` (object chips) a chip is empty when it holds no object, else when it
    holds no foreground pixel."""
    if image_all_nodata:
        return ChipDecision(ChipOutcome.NODATA)
    if statistics.labelled_pixels == 0:
        return ChipDecision(ChipOutcome.ALL_IGNORE)
    if object_count is None:
        empty = foreground_pixels(statistics.counts, rules.background_value) == 0
    else:
        empty = object_count == 0
    if empty and not keep_empty_chip(rules.seed, window, rules.keep_empty):
        return ChipDecision(ChipOutcome.EMPTY)
    if not rules.mode.writes_classification:
        return ChipDecision(ChipOutcome.WRITTEN)
    value = chip_class(statistics.counts, rules.background_value, rules.min_cover)
    if value is None and rules.mode == ChipMode.CLASSIFICATION:
        return ChipDecision(ChipOutcome.AMBIGUOUS)
    return ChipDecision(ChipOutcome.WRITTEN, value)


@dataclass
class ChipTally:
    """Chips written per split, chips dropped per reason, and class pixel counts per split."""

    ignore_value: int
    classification: bool = False
    written: dict[Split, int] = field(default_factory=dict)
    dropped: dict[ChipOutcome, int] = field(default_factory=dict)
    unclassified: int = 0  # written in "both" mode without a classification class
    classified: dict[Split, dict[int, int]] = field(default_factory=dict)
    statistics: dict[Split, ClassStatistics] = field(default_factory=dict)

    def add(
        self,
        decision: ChipDecision,
        split: Split | None = None,
        chip_statistics: ClassStatistics | None = None,
    ) -> None:
        """Count one chip's decision; a written chip comes with its split and pixel counts."""
        if decision.outcome != ChipOutcome.WRITTEN:
            self.dropped[decision.outcome] = self.dropped.get(decision.outcome, 0) + 1
            return
        if split is None or chip_statistics is None:
            raise ValueError("A written chip needs its split and its class statistics.")
        self.written[split] = self.written.get(split, 0) + 1
        self.statistics.setdefault(split, ClassStatistics(self.ignore_value)).merge(chip_statistics)
        if not self.classification:
            return
        if decision.class_value is None:
            self.unclassified += 1
        else:
            per_class = self.classified.setdefault(split, {})
            per_class[decision.class_value] = per_class.get(decision.class_value, 0) + 1

    @property
    def total_written(self) -> int:
        return sum(self.written.values())

    def counts(self) -> dict[str, int]:
        """Chips per split (every split listed) and per drop reason, for reports and dataset.json."""
        result = {split.value: self.written.get(split, 0) for split in Split}
        result["total"] = self.total_written
        for outcome in ChipOutcome:
            if outcome != ChipOutcome.WRITTEN:
                result[outcome.value] = self.dropped.get(outcome, 0)
        result["unclassified"] = self.unclassified
        return result
