"""The tile plan and its padding (core/tiling/plan.py), against OpenCV's reflection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.tiling.plan import TilePlan, pad_tile
from tests.tiling_helpers import plans


@pytest.fixture(scope="module")
def cv2():
    return pytest.importorskip("cv2", reason="OpenCV (headless) is the oracle of the padding")


# --- padding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 5), (5, 1), (2, 3), (7, 9)])
@pytest.mark.parametrize("pad", [1, 3, 20])
def test_pad_tile_matches_opencv_reflect_101(cv2, rows, cols, pad):
    data = np.arange(2 * rows * cols, dtype=np.float32).reshape(2, rows, cols)
    padding = ((pad, pad + 1), (pad + 2, pad))
    expected = cv2.copyMakeBorder(
        np.ascontiguousarray(data.transpose(1, 2, 0)), pad, pad + 1, pad + 2, pad, cv2.BORDER_REFLECT101
    ).transpose(2, 0, 1)
    np.testing.assert_array_equal(pad_tile(data, padding), expected)


def test_pad_tile_without_padding_returns_the_data():
    data = np.ones((1, 4, 4), np.float32)
    assert pad_tile(data, ((0, 0), (0, 0))) is data


# --- plan ------------------------------------------------------------------------------------


def test_plan_is_row_major_with_windows_and_padding_that_rebuild_the_tile():
    # Columns: ceil((437 - 32) / 96) = 5 tiles span 5 * 96 + 32 = 512 px, 75 more than the raster:
    # 37 on the left, 38 on the right. Rows: 3 tiles span 320 px, 20 more: 10 above, 10 below.
    plan = TilePlan(width=437, height=300, tile_size=128, overlap=32)
    assert len(plan) == plan.n_tile_rows * plan.n_tile_cols == 3 * 5
    assert [t.index for t in plan.tiles] == list(range(len(plan)))
    assert [(t.row, t.col) for t in plan.tiles[:6]] == [
        (-10, -37),
        (-10, 59),
        (-10, 155),
        (-10, 251),
        (-10, 347),
        (86, -37),
    ]
    corner = plan.tiles[0]
    assert corner.read_window(437, 300) == (0, 0, 118, 91)
    assert corner.padding(437, 300) == ((10, 0), (37, 0))
    last = plan.tiles[-1]
    assert (last.row, last.col) == (182, 347)
    assert last.read_window(437, 300) == (182, 347, 118, 90)
    assert last.padding(437, 300) == ((0, 10), (0, 38))


# --- properties over random rasters ----------------------------------------------------------


def coverage(plan: TilePlan, window_of) -> np.ndarray:
    counts = np.zeros((plan.height, plan.width), np.int32)
    for tile in plan.tiles:
        row, col, rows, cols = window_of(tile)
        assert rows >= 1 and cols >= 1
        counts[row : row + rows, col : col + cols] += 1
    return counts


@settings(max_examples=150, deadline=None)
@given(plans())
def test_every_pixel_is_covered_and_centre_regions_cover_it_exactly_once(plan):
    assert (coverage(plan, lambda t: t.read_window(plan.width, plan.height)) >= 1).all()
    assert (coverage(plan, plan.centre_region) == 1).all()
    for tile in plan.tiles:
        row, col, rows, cols = plan.centre_region(tile)
        assert tile.row <= row and row + rows <= tile.row + tile.size
        assert tile.col <= col and col + cols <= tile.col + tile.size
        (top, bottom), (left, right) = tile.padding(plan.width, plan.height)
        _, _, read_rows, read_cols = tile.read_window(plan.width, plan.height)
        assert (top + read_rows + bottom, left + read_cols + right) == (tile.size, tile.size)
        assert min(top, bottom, left, right) >= 0


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "tile_size", "overlap", "message"),
    [
        (100, 100, 256, 300, r"overlap \(300 px\) must be smaller than the tile size \(256 px\)"),
        (100, 100, 256, 256, r"overlap \(256 px\) must be smaller than the tile size \(256 px\)"),
        (100, 100, 0, 0, "tile size must be at least 1 pixel, got 0"),
        (100, 100, 64, -1, "overlap must be 0 or a positive number of pixels, got -1"),
        (0, 100, 64, 0, r"raster is empty \(0 x 100 pixels\)"),
    ],
)
def test_bad_plan_parameters_are_refused_naming_them(width, height, tile_size, overlap, message):
    with pytest.raises(RsdlError, match=message):
        TilePlan(width, height, tile_size, overlap)
