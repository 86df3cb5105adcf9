"""Tile layouts (core/tiling/layouts.py): each placement rule against an independent statement of it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsdl_qgis_plugin.core.datasets.chips import ChipPlan
from rsdl_qgis_plugin.core.tiling.layouts import (
    TileLayout,
    TileWindow,
    centred_starts,
    flush_end_starts,
    overhang_end_starts,
)
from rsdl_qgis_plugin.core.tiling.plan import TilePlan
from rsdl_qgis_plugin.inference.classifier import TileGrid


def coverage(layout: TileLayout) -> np.ndarray:
    """How many windows cover each raster pixel (the parts outside the raster dropped)."""
    counts = np.zeros((layout.height, layout.width), np.int32)
    for window in layout:
        row, col, rows, cols = window.read_window(layout.width, layout.height)
        counts[row : row + rows, col : col + cols] += 1
    return counts


@st.composite
def axes(draw, max_step: int | None = None) -> tuple[int, int, int]:
    """(length, tile_size, step) with at most about 10 windows along the axis."""
    tile_size = draw(st.integers(1, 64))
    step = draw(st.integers(1, max_step or tile_size))
    length = draw(st.integers(1, 10 * step + tile_size))
    return length, tile_size, step


# --- centred_starts: toolbelt's ImageSlicer is the oracle --------------------------------------


@pytest.fixture(scope="module")
def image_slicer():
    pytest.importorskip("torch", reason="pytorch-toolbelt needs torch")
    tiles = pytest.importorskip("pytorch_toolbelt.inference.tiles", reason="pytorch-toolbelt is the oracle")
    return tiles.ImageSlicer


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_centred_layout_places_windows_as_toolbelt_image_slicer(image_slicer, data):
    _, tile_size, step = data.draw(axes(), label="axis")
    width = data.draw(st.integers(1, 10 * step + tile_size), label="width")
    height = data.draw(st.integers(1, 10 * step + tile_size), label="height")
    slicer = image_slicer((height, width), tile_size=tile_size, tile_step=step)
    expected = [(int(y), int(x)) for x, y, _, _ in slicer.bbox_crops]  # raster pixels, row-major

    layout = TileLayout(width, height, tile_size, step, centred_starts)

    assert [(w.row, w.col) for w in layout] == expected
    assert {w.size for w in layout} == {tile_size}
    # The margins are toolbelt's: at most half a tile on each side, the smaller one first.
    for starts, length in ((layout.tile_row_starts, height), (layout.tile_col_starts, width)):
        before, after = -starts[0], starts[-1] + tile_size - length
        assert 0 <= before <= after <= before + 1
        assert 2 * max(before, after) <= tile_size
    # The engine's plan is this layout, with its overlap stated instead of its step.
    plan = TilePlan(width, height, tile_size, tile_size - step)
    assert plan.tiles == list(layout)
    assert (coverage(layout) >= 1).all()


# --- flush_end_starts: chips every stride, the last one flush with the edge ------------------


def flush_end_oracle(length: int, tile_size: int, step: int) -> list[int]:
    """Every start k * step whose window fits, plus the start flush with the end, without repeats."""
    fitting = {k * step for k in range(length) if k * step + tile_size <= length}
    return sorted(fitting | {length - tile_size})


@settings(max_examples=300, deadline=None)
@given(axes(max_step=128))
def test_flush_end_starts_match_their_statement(axis):
    length, tile_size, step = axis
    if tile_size > length:
        return  # chips never exceed the raster (ChipPlan refuses it)
    starts = flush_end_starts(length, tile_size, step)
    assert starts == flush_end_oracle(length, tile_size, step)
    assert starts[0] == 0 and starts[-1] + tile_size == length  # flush with both edges
    assert all(0 <= start <= length - tile_size for start in starts)  # never outside
    gaps = np.diff(starts)
    assert (gaps[:-1] == step).all() and (gaps[-1:] <= step).all()


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_chip_plan_covers_the_raster_with_flush_layout_windows(data):
    width = data.draw(st.integers(8, 200), label="width")
    height = data.draw(st.integers(8, 200), label="height")
    size = data.draw(st.integers(8, min(width, height)), label="size")
    stride = data.draw(st.integers(1, size), label="stride")
    plan = ChipPlan(width, height, size, stride)
    layout = TileLayout(width, height, size, stride, flush_end_starts)

    assert [(c.row, c.col, c.size) for c in plan] == [(w.row, w.col, w.size) for w in layout]
    assert len(plan) == len(layout)
    counts = coverage(layout)
    assert (counts >= 1).all()  # full coverage with stride <= size
    assert all(w.padding(width, height) == ((0, 0), (0, 0)) for w in layout)  # no padding: inside


# --- overhang_end_starts: tiles every stride from 0, the last may overhang ------------------


def overhang_oracle(length: int, tile_size: int, step: int) -> list[int]:
    """Walk along the axis: add a window while the last stops short of the end and the next starts inside."""
    starts = [0]
    while starts[-1] + tile_size < length and starts[-1] + step < length:
        starts.append(starts[-1] + step)
    return starts


@settings(max_examples=300, deadline=None)
@given(axes(max_step=128))
def test_overhang_end_starts_match_their_statement(axis):
    length, tile_size, step = axis
    starts = overhang_end_starts(length, tile_size, step)
    assert starts == overhang_oracle(length, tile_size, step)
    assert starts == list(range(0, step * len(starts), step))  # a regular grid from 0
    assert starts[-1] < length  # no window starts outside
    overhang = starts[-1] + tile_size - length
    if step <= tile_size:
        assert 0 <= overhang < step or len(starts) == 1  # reaches the end, by less than one step
    else:
        assert overhang >= 0 or starts[-1] + step >= length  # gaps: the next start would lie outside


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_tile_grid_is_the_overhang_layout_and_covers_the_grid(data):
    _, tile, stride = data.draw(axes(max_step=96), label="axis")
    width = data.draw(st.integers(1, 8 * stride + tile), label="width")
    height = data.draw(st.integers(1, 8 * stride + tile), label="height")
    grid = TileGrid(width, height, tile, stride)
    layout = TileLayout(width, height, tile, stride, overhang_end_starts)

    assert list(grid) == list(layout)
    assert (grid.columns, grid.rows) == (layout.n_tile_cols, layout.n_tile_rows)
    if stride <= tile:
        assert (coverage(grid) >= 1).all()


# --- the layout itself -------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [centred_starts, flush_end_starts, overhang_end_starts])
def test_layout_numbers_windows_row_major_on_demand(rule):
    layout = TileLayout(100, 70, 32, 24, rule)
    rows, cols = rule(70, 32, 24), rule(100, 32, 24)
    expected = [TileWindow(i, r, c, 32) for i, (r, c) in enumerate((r, c) for r in rows for c in cols)]
    assert list(layout) == expected
    assert len(layout) == len(rows) * len(cols) == layout.n_tile_rows * layout.n_tile_cols
    assert layout.window(len(cols) + 1) == expected[len(cols) + 1]
