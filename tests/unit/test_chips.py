"""Chip plan, spatial block split and chip rules (core/datasets/chips.py), without QGIS."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsdl_qgis_plugin.core.datasets.chips import (
    BlockSplit,
    ChipDecision,
    ChipMode,
    ChipOutcome,
    ChipPlan,
    ChipRules,
    ChipTally,
    ChipWindow,
    Split,
    SplitSettings,
    chip_class,
    chip_offsets,
    decide_chip,
    keep_empty_chip,
)
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics

SPLIT_CODES = {Split.TRAIN: 1, Split.VAL: 2, Split.TEST: 3}


def statistics_of(mask: np.ndarray, ignore: int = 255) -> ClassStatistics:
    statistics = ClassStatistics(ignore)
    statistics.add_block(mask.astype(np.uint8))
    return statistics


# --- chip plan -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "size", "stride", "expected"),
    [
        (8, 4, 4, [0, 4]),  # fits exactly
        (10, 4, 4, [0, 4, 6]),  # the last chip is moved flush with the edge
        (10, 4, 3, [0, 3, 6]),  # overlap, ends exactly at the edge
        (11, 4, 3, [0, 3, 6, 7]),
        (4, 4, 1, [0]),
        (20, 4, 8, [0, 8, 16]),  # stride > size leaves gaps but still reaches the edge
    ],
)
def test_chip_offsets(length, size, stride, expected):
    assert chip_offsets(length, size, stride) == expected


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(8, 160),
    height=st.integers(8, 160),
    data=st.data(),
)
def test_plan_covers_the_grid_with_full_size_chips(width, height, data):
    size = data.draw(st.integers(8, min(width, height)), label="size")
    stride = data.draw(st.integers(1, size), label="stride")
    plan = ChipPlan(width, height, size, stride)
    coverage = np.zeros((height, width), dtype=np.int32)
    windows = list(plan)
    assert len(windows) == len(plan) == len({(w.row, w.col) for w in windows})
    for window in windows:
        assert window.size == size
        assert 0 <= window.row <= height - size and 0 <= window.col <= width - size
        coverage[window.row : window.row + size, window.col : window.col + size] += 1
    assert coverage.min() >= 1, "every pixel lies in a chip when stride <= size"
    # Chips start every `stride` pixels; only the edge chip may be closer to its neighbour.
    for offsets, length in ((plan.row_offsets, height), (plan.col_offsets, width)):
        steps = np.diff(offsets)
        assert (steps[:-1] == stride).all() if len(steps) > 1 else True
        assert offsets[-1] + size == length


def test_plan_rejects_bad_sizes():
    with pytest.raises(RsdlError, match="CHIP_SIZE must be at least 8"):
        ChipPlan(100, 100, 4, 4)
    with pytest.raises(RsdlError, match=r"larger than the image \(100 x 50 px\)"):
        ChipPlan(100, 50, 64, 64)
    for stride in (0, -3):
        with pytest.raises(RsdlError, match="STRIDE must be a positive"):
            ChipPlan(100, 100, 16, stride)


# --- spatial block split ---------------------------------------------------------------------


def block_map(split: BlockSplit, width: int, height: int) -> np.ndarray:
    """Each pixel's block code, painted block by block (an oracle independent of split_of)."""
    size = split.block_size
    pixels = np.zeros((height, width), dtype=np.int8)
    rows, cols = split.blocks.shape
    for r in range(rows):
        for c in range(cols):
            pixels[r * size : (r + 1) * size, c * size : (c + 1) * size] = split.blocks[r, c]
    return pixels


@settings(max_examples=120, deadline=None)
@given(
    width=st.integers(16, 200),
    height=st.integers(16, 200),
    val=st.sampled_from([0.0, 0.1, 0.25, 0.4]),
    test=st.sampled_from([0.0, 0.1, 0.3]),
    seed=st.integers(0, 2**31),
    data=st.data(),
)
def test_splits_never_share_a_pixel(width, height, val, test, seed, data):
    size = data.draw(st.integers(8, min(width, height) // 2), label="size")
    stride = data.draw(st.integers(1, 2 * size), label="stride")
    block = data.draw(st.integers(size, max(size, min(width, height) // 2)), label="block")
    try:
        split = BlockSplit(width, height, size, SplitSettings(val, test, block, seed))
    except RsdlError as error:
        assert "too few" in str(error)  # only refused when the image has too few blocks
        return
    pixels = block_map(split, width, height)
    painted = {s: np.zeros((height, width), dtype=bool) for s in Split}
    for window in ChipPlan(width, height, size, stride):
        chosen = split.split_of(window)
        touched = np.unique(pixels[window.row : window.row + size, window.col : window.col + size])
        if chosen is None:
            assert touched.size > 1, "a chip inside blocks of one split must not be dropped"
            continue
        assert touched.size == 1 and BlockSplit.SPLIT_ORDER[int(touched[0])] == chosen
        painted[chosen][window.row : window.row + size, window.col : window.col + size] = True
    assert not (painted[Split.TRAIN] & painted[Split.VAL]).any()
    assert not (painted[Split.TRAIN] & painted[Split.TEST]).any()
    assert not (painted[Split.VAL] & painted[Split.TEST]).any()


def test_fractions_over_many_blocks():
    settings_ = SplitSettings(val_fraction=0.2, test_fraction=0.1, block_size=10, seed=7)
    split = BlockSplit(1000, 800, 10, settings_)
    counts = split.block_counts()
    assert counts == {"train": 5600, "val": 1600, "test": 800}  # 8000 blocks
    # Blocks of each split are spread over the image, not bunched in one part of it.
    for code in (1, 2):
        for quadrant in (
            split.blocks[:40, :50],
            split.blocks[40:, :50],
            split.blocks[:40, 50:],
            split.blocks[40:, 50:],
        ):
            share = float((quadrant == code).mean())
            expected = (0.2, 0.1)[code - 1]
            assert abs(share - expected) < 0.05
    # Chips follow: with block-aligned chips none is dropped and chip shares equal block shares.
    chip_splits = [split.split_of(w) for w in ChipPlan(1000, 800, 10, 10)]
    assert chip_splits.count(None) == 0
    assert chip_splits.count(Split.VAL) == 1600


def test_small_positive_fraction_gets_a_block_and_training_keeps_one():
    split = BlockSplit(100, 100, 10, SplitSettings(0.01, 0.0, 50, seed=1))  # 4 blocks
    assert split.block_counts() == {"train": 3, "val": 1, "test": 0}
    with pytest.raises(RsdlError, match="only 2 split blocks"):
        BlockSplit(100, 50, 10, SplitSettings(0.3, 0.2, 50, seed=1))


def test_split_is_deterministic_for_a_seed():
    make = lambda seed: BlockSplit(640, 480, 16, SplitSettings(0.2, 0.2, 32, seed)).blocks  # noqa: E731
    assert np.array_equal(make(3), make(3))
    assert not np.array_equal(make(3), make(4))


@pytest.mark.parametrize(
    ("val", "test", "block", "seed", "message"),
    [
        (-0.1, 0.0, 64, 0, "VAL_FRACTION must be between 0 and 1"),
        (0.2, 1.5, 64, 0, "TEST_FRACTION must be between 0 and 1"),
        (0.6, 0.4, 64, 0, "must be below 1"),
        (0.2, 0.0, 0, 0, "SPLIT_BLOCK must be a positive"),
        (0.2, 0.0, 64, -1, "SEED must be 0 or a positive"),
    ],
)
def test_split_settings_errors(val, test, block, seed, message):
    with pytest.raises(RsdlError, match=message):
        SplitSettings(val, test, block, seed)


def test_block_smaller_than_chip_is_refused():
    with pytest.raises(RsdlError, match=r"SPLIT_BLOCK \(32 px\) is smaller than CHIP_SIZE \(64 px\)"):
        BlockSplit(512, 512, 64, SplitSettings(0.2, 0.0, 32, 0))


# --- chip rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "background", "min_cover", "expected"),
    [
        ({0: 100}, 0, 0.5, 0),  # no foreground: background
        ({0: 40, 1: 60}, 0, 0.5, 1),  # 60% >= 50%
        ({0: 60, 1: 40}, 0, 0.5, None),  # foreground present but below the cover: ambiguous
        ({0: 60, 1: 40}, 0, 0.4, 1),
        ({1: 30, 2: 30, 0: 40}, 0, 0.3, 1),  # tie: the lower value
        ({1: 20, 2: 50, 0: 30}, 0, 0.5, 2),
        ({1: 10, 2: 10}, None, 0.5, 1),  # sparse mask (no background): shares of labelled pixels
        ({}, 0, 0.5, None),  # nothing labelled
        ({1: 10}, None, 1.0, 1),
    ],
)
def test_chip_class_rule(counts, background, min_cover, expected):
    assert chip_class(counts, background, min_cover) == expected


def test_keep_empty_sampling_share_and_determinism():
    windows = [ChipWindow(r * 16, c * 16, 16) for r in range(60) for c in range(60)]
    kept = [keep_empty_chip(11, w, 0.3) for w in windows]
    share = sum(kept) / len(kept)
    assert abs(share - 0.3) < 4 * (0.3 * 0.7 / len(kept)) ** 0.5  # within 4 sigma of a binomial
    assert kept == [keep_empty_chip(11, w, 0.3) for w in reversed(windows)][::-1]  # order-free
    assert kept != [keep_empty_chip(12, w, 0.3) for w in windows]
    assert not any(keep_empty_chip(11, w, 0.0) for w in windows)
    assert all(keep_empty_chip(11, w, 1.0) for w in windows)
    # The kept chips of a smaller share are a subset of those of a larger one (one draw per chip).
    assert all(a <= b for a, b in zip([keep_empty_chip(11, w, 0.1) for w in windows], kept))


def test_decide_chip_order_of_rules():
    window = ChipWindow(0, 0, 8)
    segmentation = ChipRules(ChipMode.SEGMENTATION, background_value=0)
    empty = statistics_of(np.zeros((8, 8)))
    ignored = statistics_of(np.full((8, 8), 255))
    building = np.zeros((8, 8))
    building[:2] = 1  # 25% cover
    partial = statistics_of(building)
    assert decide_chip(window, True, empty, segmentation).outcome == ChipOutcome.NODATA
    assert decide_chip(window, False, ignored, segmentation).outcome == ChipOutcome.ALL_IGNORE
    assert decide_chip(window, False, empty, segmentation) == ChipDecision(ChipOutcome.WRITTEN)
    no_empty = ChipRules(ChipMode.SEGMENTATION, background_value=0, keep_empty=0.0)
    assert decide_chip(window, False, empty, no_empty).outcome == ChipOutcome.EMPTY
    assert decide_chip(window, False, partial, no_empty).outcome == ChipOutcome.WRITTEN
    classification = ChipRules(ChipMode.CLASSIFICATION, background_value=0, min_cover=0.5)
    assert decide_chip(window, False, partial, classification).outcome == ChipOutcome.AMBIGUOUS
    assert decide_chip(window, False, empty, classification) == ChipDecision(ChipOutcome.WRITTEN, 0)
    both = ChipRules(ChipMode.BOTH, background_value=0, min_cover=0.5)
    assert decide_chip(window, False, partial, both) == ChipDecision(ChipOutcome.WRITTEN, None)
    assert decide_chip(window, False, partial, ChipRules(ChipMode.BOTH, 0, min_cover=0.25)).class_value == 1


def test_object_chips_are_empty_without_objects_whatever_their_pixels():
    window = ChipWindow(0, 0, 8)
    objects = ChipRules(ChipMode.OBJECTS, background_value=0, keep_empty=0.0)
    building = np.zeros((8, 8))
    building[:2] = 1
    partial, empty = statistics_of(building), statistics_of(np.zeros((8, 8)))
    # Pixels of an object mostly outside the chip, but no object kept in it: empty.
    assert decide_chip(window, False, partial, objects, object_count=0).outcome == ChipOutcome.EMPTY
    assert decide_chip(window, False, empty, objects, object_count=1) == ChipDecision(ChipOutcome.WRITTEN)
    assert decide_chip(window, True, partial, objects, object_count=1).outcome == ChipOutcome.NODATA
    ignored = statistics_of(np.full((8, 8), 255))
    assert decide_chip(window, False, ignored, objects, object_count=1).outcome == ChipOutcome.ALL_IGNORE
    flags = [(m.writes_segmentation, m.writes_classification, m.writes_objects) for m in ChipMode]
    assert flags == [(True, False, False), (False, True, False), (True, True, False), (False, False, True)]


@pytest.mark.parametrize("name", ["MIN_COVER", "KEEP_EMPTY"])
def test_rules_refuse_fractions_outside_0_1(name):
    arguments = {"min_cover": 0.5, "keep_empty": 1.0, name.lower(): 1.5}
    with pytest.raises(RsdlError, match=f"{name} must be between 0 and 1"):
        ChipRules(ChipMode.BOTH, 0, **arguments)


def test_tally_counts_and_statistics():
    tally = ChipTally(255, classification=True)
    tally.add(ChipDecision(ChipOutcome.STRADDLING))
    tally.add(ChipDecision(ChipOutcome.NODATA))
    tally.add(ChipDecision(ChipOutcome.WRITTEN, 1), Split.TRAIN, statistics_of(np.ones((8, 8))))
    tally.add(ChipDecision(ChipOutcome.WRITTEN, None), Split.VAL, statistics_of(np.full((8, 8), 255)))
    counts = tally.counts()
    assert counts["train"] == counts["val"] == 1 and counts["test"] == 0 and counts["total"] == 2
    assert counts["dropped_straddling_splits"] == counts["skipped_nodata"] == counts["unclassified"] == 1
    assert tally.classified == {Split.TRAIN: {1: 1}}
    assert tally.statistics[Split.TRAIN].counts == {1: 64}
    assert tally.statistics[Split.VAL].ignored == 64
    with pytest.raises(ValueError, match="needs its split"):
        tally.add(ChipDecision(ChipOutcome.WRITTEN))
