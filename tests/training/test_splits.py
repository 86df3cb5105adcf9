"""Spatial splits (training/data/splits.py): one block grid over several rasters, k folds that
partition the blocks, and chips of different splits that never share a pixel."""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.core.datasets.chips import BlockSplit, ChipPlan, ChipWindow, Split, SplitSettings
from rsdl_qgis_plugin.core.errors import RsdlError
from training.data.splits import FoldBlockSplit, GridFrame, make_block_split


def test_the_frame_covers_every_raster_at_the_finest_pixel():
    frame = GridFrame.covering([(100.0, 0.0, 164.0, 64.0), (132.0, -64.0, 260.0, 32.0)], [1.0, 2.0])
    assert frame == GridFrame(x0=100.0, y0=64.0, pixel=1.0, width=160, height=128)
    # float noise in map coordinates does not move a window by a pixel
    assert frame.window_of(132.0 + 1e-9, 32.0 - 1e-9, 164.0 - 1e-9, 0.0 + 1e-9) == ChipWindow(32, 32, 32)
    # a coarse chip (2 m pixels) covers twice the fine pixels
    assert frame.window_of(132.0, 32.0, 196.0, -32.0) == ChipWindow(32, 32, 64)


def test_without_folds_the_split_is_core_s_block_split():
    settings = SplitSettings(0.25, 0.25, 64, 7)
    frame = GridFrame(0.0, 0.0, 1.0, 256, 192)
    split = make_block_split(frame, 32, settings)
    assert type(split) is BlockSplit
    np.testing.assert_array_equal(split.blocks, BlockSplit(256, 192, 32, settings).blocks)


def test_folds_partition_the_blocks_evenly():
    validation = [FoldBlockSplit(320, 256, 32, 64, 1, 4, fold).blocks == 1 for fold in range(4)]
    stacked = np.stack(validation).astype(int)
    assert (stacked.sum(axis=0) == 1).all()  # every block validates in exactly one fold
    assert sorted(int(v.sum()) for v in validation) == [5, 5, 5, 5]  # 20 blocks in 4 folds
    again = FoldBlockSplit(320, 256, 32, 64, 1, 4, 0).blocks
    np.testing.assert_array_equal(again == 1, validation[0])  # the seed fixes the folds


@pytest.mark.parametrize("fold", [0, 1, 2])
def test_chips_of_different_splits_never_share_a_pixel(fold):
    split = make_block_split(GridFrame(0.0, 0.0, 1.0, 200, 160), 32, SplitSettings(0.2, 0.0, 64, 3), 3, fold)
    owner = np.full((160, 200), -1)
    plan = ChipPlan(200, 160, 32, 16)
    kept = {Split.TRAIN: 0, Split.VAL: 0}
    for row in plan.row_offsets:
        for window in plan.row(row):
            chip_split = split.split_of(window)
            if chip_split is None:
                continue
            kept[chip_split] += 1
            area = owner[window.row : window.row + 32, window.col : window.col + 32]
            code = list(Split).index(chip_split)
            assert ((area == -1) | (area == code)).all(), window
            area[...] = code
    assert kept[Split.TRAIN] and kept[Split.VAL]


@pytest.mark.parametrize(
    ("folds", "fold", "block", "message"),
    [
        (1, 0, 64, "folds >= 2"),
        (3, 3, 64, "0 <= fold < folds"),
        (3, 0, 16, "smaller than a chip"),
        (30, 0, 64, "Only 12 blocks"),
    ],
)
def test_impossible_folds_are_refused(folds, fold, block, message):
    with pytest.raises(RsdlError, match=message):
        FoldBlockSplit(256, 192, 32, block, 0, folds, fold)
