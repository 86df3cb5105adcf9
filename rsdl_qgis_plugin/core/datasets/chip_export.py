"""The decisions of one chip export run around the chip rules: its settings, the classes it found,
its refusal when nothing was written, and its report (class tables per split, log lines, warnings).

Pure; rsdl:exportchips reads its parameters into ``ChipExportSettings`` and qgis_io/chip_export.py
cuts the chips and writes the dataset with these.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import RsdlError
from ..labels.label_rules import LabelClass, MaskValues, make_label_classes, unnamed_class_name
from ..reports.class_table import LogLine, class_table, class_table_lines
from .chips import BlockSplit, ChipOutcome, ChipPlan, ChipRules, ChipTally, Split, SplitSettings

__all__ = [
    "ChipExportSettings",
    "all_classes",
    "chip_report_lines",
    "empty_split_warnings",
    "refuse_no_chips",
    "split_statistics",
]


@dataclass(frozen=True)
class ChipExportSettings:
    """Where chips go (plan), how blocks split (split) and which chips are kept (rules)."""

    plan: ChipPlan
    split: SplitSettings
    rules: ChipRules
    block_split: BlockSplit = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built here so that settings the image cannot satisfy are refused as they are read.
        block_split = BlockSplit(self.plan.width, self.plan.height, self.plan.size, self.split)
        object.__setattr__(self, "block_split", block_split)

    def for_mask(self, values: MaskValues) -> ChipExportSettings:
        """The settings once the mask is known: its background is the rules' background value,
        unless unlabelled pixels are ignored (then no value is background)."""
        background = None if values.unlabelled_is_ignore else values.background_value
        return dataclasses.replace(self, rules=dataclasses.replace(self.rules, background_value=background))

    def plan_message(self) -> str:
        """The log line that announces the plan and the split blocks."""
        plan = self.plan
        return (
            f"{len(plan)} chips of {plan.size} px every {plan.stride} px on a {plan.width} x {plan.height} "
            f"image; split blocks of {self.split.block_size} px: {self.block_split.block_counts()}."
        )


def all_classes(described: list[LabelClass], tally: ChipTally, background: int | None) -> list[LabelClass]:
    """The described classes plus values found in the chips that nothing described."""
    seen = {value for statistics in tally.statistics.values() for value in statistics.counts}
    known = {c.value for c in described} | ({background} if background is not None else set())
    extra = make_label_classes({value: unnamed_class_name(value) for value in seen - known})
    return sorted(described + extra, key=lambda c: c.value)


def refuse_no_chips(tally: ChipTally, image_name: str) -> None:
    """Refuse a run that wrote no chip, naming why chips were dropped and what to change."""
    if tally.total_written == 0:
        raise RsdlError(
            f"No chip was written from image '{image_name}': "
            f"{json.dumps(tally.counts())}. Check that the image holds data (not only "
            "nodata), that the labels cover it and that CHIP_SIZE, KEEP_EMPTY and MIN_COVER "
            "leave chips to keep."
        )


def empty_split_warnings(tally: ChipTally, settings: SplitSettings) -> list[str]:
    """A warning for each split that was asked for (fraction > 0) but got no chip."""
    return [
        f"No chip went to '{split.value}' although its fraction is {fraction:g}: its "
        "blocks hold only skipped chips. Try another SEED or a smaller SPLIT_BLOCK."
        for split, fraction in ((Split.VAL, settings.val_fraction), (Split.TEST, settings.test_fraction))
        if fraction > 0 and not tally.written.get(split)
    ]


def split_statistics(classes: list[LabelClass], tally: ChipTally, values: MaskValues) -> dict[str, Any]:
    """Chips, class table and ignored pixels of each split that has chips, by split name."""
    statistics: dict[str, Any] = {}
    for split in Split:
        per_split = tally.statistics.get(split)
        if per_split is None:
            continue
        statistics[split.value] = {
            "chips": tally.written[split],
            "classes": class_table(classes, per_split, values),
            "ignored_pixels": per_split.ignored,
        }
    return statistics


def chip_report_lines(tally: ChipTally, statistics: dict[str, Any]) -> list[LogLine]:
    """Chip counts, drop reasons and the class table of each split (``split_statistics``) as log lines."""
    counts = tally.counts()
    written = ", ".join(f"{split.value} {counts[split.value]}" for split in Split)
    lines = [LogLine(f"Chips written: {written}")]
    dropped = counts[ChipOutcome.STRADDLING.value]
    if dropped:
        lines.append(
            LogLine(
                f"{dropped} chips touch split blocks of different splits and were dropped, so that "
                "no validation or test chip overlaps a training chip.",
                warning=True,
            )
        )
    for outcome in (ChipOutcome.NODATA, ChipOutcome.ALL_IGNORE, ChipOutcome.EMPTY, ChipOutcome.AMBIGUOUS):
        if counts[outcome.value]:
            lines.append(LogLine(f"{outcome.value.replace('_', ' ')}: {counts[outcome.value]} chips"))
    for name, entry in statistics.items():
        lines.append(LogLine(f"Split '{name}' ({entry['chips']} chips):"))
        lines.extend(class_table_lines(entry["classes"], entry["ignored_pixels"]))
    return lines
