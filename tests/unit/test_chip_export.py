"""core/datasets/chip_export.py: the settings, classes, refusal and report of one chip export run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsdl_qgis_plugin.core.datasets.chip_export import (
    ChipExportSettings,
    all_classes,
    chip_report_lines,
    empty_split_warnings,
    refuse_no_chips,
    split_statistics,
)
from rsdl_qgis_plugin.core.datasets.chips import (
    ChipDecision,
    ChipMode,
    ChipOutcome,
    ChipPlan,
    ChipRules,
    ChipTally,
    Split,
    SplitSettings,
)
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.labels.label_rules import LabelClass, MaskValues
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics
from rsdl_qgis_plugin.core.reports.class_table import LogLine, class_table

IGNORE = 255


def settings(width: int = 300, height: int = 200, val: float = 0.2, test: float = 0.0) -> ChipExportSettings:
    return ChipExportSettings(
        ChipPlan(width, height, 64, 64),
        SplitSettings(val_fraction=val, test_fraction=test, block_size=128, seed=3),
        ChipRules(mode=ChipMode.SEGMENTATION, background_value=None, keep_empty=0.5, seed=3),
    )


def written(tally: ChipTally, split: Split, mask: list[list[int]], class_value: int | None = None) -> None:
    statistics = ClassStatistics(IGNORE)
    statistics.add_block(np.array(mask, dtype=np.uint8))
    tally.add(ChipDecision(ChipOutcome.WRITTEN, class_value), split, statistics)


def test_settings_split_the_image_into_blocks_as_they_are_read():
    chosen = settings()
    # 200 x 300 px in blocks of 128 px: 2 x 3 blocks, round(6 * 0.2) = 1 for validation
    assert chosen.block_split.block_counts() == {"train": 5, "val": 1, "test": 0}
    with pytest.raises(RsdlError, match="only 1 split blocks of 128 px"):
        settings(width=100, height=100)


def test_settings_for_a_mask_take_its_background_unless_unlabelled_is_ignored():
    chosen = settings()
    with_background = chosen.for_mask(MaskValues(background_value=7, ignore_value=IGNORE))
    assert with_background.rules.background_value == 7
    assert with_background.rules.keep_empty == 0.5 and with_background.plan == chosen.plan
    assert chosen.rules.background_value is None  # the original is left alone
    ignored = chosen.for_mask(MaskValues(background_value=0, ignore_value=IGNORE, unlabelled_is_ignore=True))
    assert ignored.rules.background_value is None


def test_plan_message_names_chips_stride_size_and_blocks():
    # rows start at 0, 64, 128 and flush 136; columns at 0, 64, 128, 192 and flush 236
    assert settings().plan_message() == (
        "20 chips of 64 px every 64 px on a 300 x 200 image; split blocks of 128 px: "
        "{'train': 5, 'val': 1, 'test': 0}."
    )


def test_all_classes_adds_found_values_that_nothing_described():
    tally = ChipTally(IGNORE)
    written(tally, Split.TRAIN, [[0, 1, 3, IGNORE]])
    written(tally, Split.VAL, [[9, 0]])
    described = [LabelClass(1, "building", "#ff0000")]
    with_background = all_classes(described, tally, background=0)
    assert [(c.value, c.name) for c in with_background] == [(1, "building"), (3, "class_3"), (9, "class_9")]
    without_background = all_classes(described, tally, background=None)
    assert [c.value for c in without_background] == [0, 1, 3, 9]
    assert IGNORE not in [c.value for c in without_background]


def test_a_run_without_chips_is_refused_with_its_counts():
    tally = ChipTally(IGNORE)
    tally.add(ChipDecision(ChipOutcome.EMPTY))
    tally.add(ChipDecision(ChipOutcome.NODATA))
    with pytest.raises(RsdlError, match="No chip was written from image 'scene'") as refused:
        refuse_no_chips(tally, "scene")
    counts = json.loads(str(refused.value).split(": ", 1)[1].split(". Check")[0])
    assert counts["dropped_empty"] == 1 and counts["skipped_nodata"] == 1 and counts["total"] == 0
    written(tally, Split.TEST, [[1]])
    refuse_no_chips(tally, "scene")  # one chip is enough


def test_empty_split_warnings_only_for_requested_splits_without_chips():
    tally = ChipTally(IGNORE)
    written(tally, Split.TRAIN, [[1]])
    assert empty_split_warnings(tally, settings(val=0.2, test=0.0).split) == [
        "No chip went to 'val' although its fraction is 0.2: its blocks hold only skipped chips. "
        "Try another SEED or a smaller SPLIT_BLOCK."
    ]
    both = empty_split_warnings(tally, SplitSettings(0.25, 0.1, 128, 0))
    assert [message.split("'")[1] for message in both] == ["val", "test"]
    written(tally, Split.VAL, [[1]])
    assert empty_split_warnings(tally, settings(val=0.2).split) == []


def test_split_statistics_hold_the_class_table_of_each_split_with_chips():
    tally = ChipTally(IGNORE)
    written(tally, Split.TEST, [[0, 1, IGNORE]])
    written(tally, Split.TRAIN, [[1, 1], [0, IGNORE]])
    written(tally, Split.TRAIN, [[0, 0]])
    classes = [LabelClass(1, "building", "#ff0000")]
    values = MaskValues(0, IGNORE)
    statistics = split_statistics(classes, tally, values)
    assert list(statistics) == ["train", "test"]  # split order; no chips, no entry
    train = statistics["train"]
    assert train["chips"] == 2 and train["ignored_pixels"] == 1
    assert train["classes"] == class_table(classes, tally.statistics[Split.TRAIN], values)
    assert {row["value"]: row["pixels"] for row in train["classes"]} == {0: 3, 1: 2}
    assert statistics["test"]["chips"] == 1 and statistics["test"]["ignored_pixels"] == 1


def test_report_lines_count_chips_warn_for_straddling_and_list_each_split():
    tally = ChipTally(IGNORE)
    written(tally, Split.TRAIN, [[0, 1]])
    written(tally, Split.TRAIN, [[1, 1]])
    written(tally, Split.VAL, [[0, 0]])
    for outcome in (ChipOutcome.STRADDLING, ChipOutcome.STRADDLING, ChipOutcome.EMPTY):
        tally.add(ChipDecision(outcome))
    statistics = split_statistics([LabelClass(1, "building", "#ff0000")], tally, MaskValues(0, IGNORE))
    lines = chip_report_lines(tally, statistics)
    assert lines[:3] == [
        LogLine("Chips written: train 2, val 1, test 0"),
        LogLine(
            "2 chips touch split blocks of different splits and were dropped, so that no validation "
            "or test chip overlaps a training chip.",
            warning=True,
        ),
        LogLine("dropped empty: 1 chips"),
    ]
    texts = [line.text for line in lines]
    train, val = texts.index("Split 'train' (2 chips):"), texts.index("Split 'val' (1 chips):")
    assert train < val and "Split 'test'" not in " ".join(texts)
    # each split's class table follows its heading; 'building' has no pixels in 'val'
    assert texts[train + 1].startswith("Class pixel counts")
    warnings = [line.text for line in lines if line.warning]
    assert warnings[1:] == ["Class 'building' (1) has no pixels on this grid."]
    assert texts.index(warnings[1]) > val


def test_report_lines_without_drops_have_no_warning():
    tally = ChipTally(IGNORE)
    written(tally, Split.TRAIN, [[0, 1]])
    statistics = split_statistics([LabelClass(1, "building", "#ff0000")], tally, MaskValues(0, IGNORE))
    lines = chip_report_lines(tally, statistics)
    assert not any(line.warning for line in lines)
    assert lines[1] == LogLine("Split 'train' (1 chips):")
