"""Row blocks: one horizontal block of a raster, run alone, gives bitwise the whole run's rows.

A block run takes the whole raster's tiles that add to its rows and blends them in the same
order, so its rows equal the whole run's exactly; the blocks of ``row_blocks`` stitch back to it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.tiling.blending import BlendMode, StreamingBlender
from rsdl_qgis_plugin.core.tiling.layouts import TileWindow
from rsdl_qgis_plugin.core.tiling.plan import TilePlan
from rsdl_qgis_plugin.core.tiling.row_blocks import row_blocks
from rsdl_qgis_plugin.inference.engine import InferenceSettings, TiledInference
from tests.tiling_helpers import plans

MODES = [BlendMode.PYRAMID, BlendMode.GAUSSIAN, BlendMode.MEAN, BlendMode.CENTRE_CROP]
REGRESSOR = ModelSpec(model_type=ModelType.REGRESSOR)
TILE = 24
HEIGHT, WIDTH = 97, 53  # odd sizes: the plan's margins differ above and below


class RecordingReader:
    """An in-memory raster that records the windows read."""

    def __init__(self, image: np.ndarray, valid: np.ndarray, windows: list) -> None:
        self.image, self.valid, self.windows = image, valid, windows

    def read(self, row, col, rows, cols):
        self.windows.append((row, col, rows, cols))
        window = (slice(row, row + rows), slice(col, col + cols))
        return self.image[(slice(None), *window)], self.valid[window]


def box3(x: np.ndarray) -> np.ndarray:
    """3x3 box sum with zero padding over (N, C, H, W): tile outputs depend on the tile's borders."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    height, width = x.shape[2:]
    return sum(padded[:, :, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)) / 9.0


class ContextBackend:
    """A fully convolutional stand-in whose tiles disagree at seams, so the blend order matters.

    ``shrink`` trims the output (a valid-convolution net: a head with a margin); ``heads`` outputs.
    Every item is computed on its own, so the batch a tile lands in does not change its output.
    """

    provider = "numpy"
    fixed_batch = None
    input_size = (None, None)

    def __init__(self, heads: int = 1, shrink: int = 0) -> None:
        self.heads, self.shrink = heads, shrink

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        features = box3(batch)
        mixed = np.stack([features.sum(axis=1), features[:, 0] * features[:, -1] * 0.37], axis=1)
        if self.shrink:
            mixed = mixed[:, :, self.shrink : -self.shrink, self.shrink : -self.shrink]
        return [(mixed * (head + 1.3)).astype(np.float32) for head in range(self.heads)]


class RowLog:
    """A sink that stores rows by whole-raster row and logs every write."""

    def __init__(self, channels: int) -> None:
        self.channels = channels
        self.writes: list[tuple[int, np.ndarray]] = []

    def write_rows(self, first_row, values):
        assert values.dtype == np.float32 and values.shape[0] == self.channels
        self.writes.append((first_row, values.copy()))

    def rows(self) -> list[int]:
        return [first + offset for first, values in self.writes for offset in range(values.shape[1])]

    def values(self) -> np.ndarray:
        return np.concatenate([values for _, values in self.writes], axis=1)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(11).random((3, HEIGHT, WIDTH)).astype(np.float32) * 100


def nodata_mask(kind: str) -> np.ndarray:
    valid = np.ones((HEIGHT, WIDTH), dtype=bool)
    if kind == "nodata":
        valid[:30, :] = False  # whole tiles of nodata: skipped
        valid[55:58, 10:40] = False  # a strip across a block boundary region
        valid[np.random.default_rng(5).random((HEIGHT, WIDTH)) < 0.02] = False  # scattered pixels
    return valid


def make_engine(mode, overlap, backend, batch_size=3) -> TiledInference:
    settings_ = InferenceSettings(TILE, overlap, batch_size, mode)
    return TiledInference(backend, REGRESSOR, (1, 2, 3), settings_, WIDTH, HEIGHT)


def run_rows(engine, image, valid, rows=None, progress=None):
    sinks = [RowLog(head.channels) for head in engine.heads]
    windows: list = []
    kwargs = {} if progress is None else {"progress": progress}
    counts = engine.run(lambda: RecordingReader(image, valid, windows), sinks, rows=rows, **kwargs)
    return sinks, counts, windows


def contributed(plan: TilePlan, tile: TileWindow, mode: BlendMode) -> tuple[int, int]:
    """[start, stop) rows a tile adds to, from the per-tile windows (independent of the row search)."""
    if mode is BlendMode.CENTRE_CROP:
        row, _, rows, _ = plan.centre_region(tile)
    else:
        row, _, rows, _ = tile.read_window(plan.width, plan.height)
    return row, row + rows


def block_layouts(plan: TilePlan) -> dict[str, list[tuple[int, int]]]:
    starts = [start for start in plan.tile_row_starts if 0 < start < plan.height]
    inside = [start + 5 for start in starts if start + 5 < plan.height]
    return {
        "row_blocks_10": row_blocks(plan.height, 10),
        "on_tile_row_starts": list(zip([0, *starts], [*starts, plan.height])),
        "inside_tiles": list(zip([0, *inside], [*inside, plan.height])),
    }


@pytest.mark.parametrize("valid_kind", ["all_valid", "nodata"])
@pytest.mark.parametrize("overlap", [8, 0])
@pytest.mark.parametrize("mode", MODES)
def test_blocks_stitch_back_to_the_whole_run_bitwise(mode, overlap, valid_kind, image):
    valid = nodata_mask(valid_kind)
    engine = make_engine(mode, overlap, ContextBackend())
    whole, whole_counts, _ = run_rows(engine, image, valid)
    assert whole[0].rows() == list(range(HEIGHT))
    expected = whole[0].values()
    if valid_kind == "nodata":
        assert np.isnan(expected).any() and whole_counts["skipped_nodata"] > 0

    for name, blocks in block_layouts(engine.plan).items():
        assert len(blocks) > 1, name
        parts = []
        for first, stop in blocks:
            sinks, counts, windows = run_rows(engine, image, valid, rows=(first, stop))
            assert sinks[0].rows() == list(range(first, stop)), (name, first, stop)
            parts.append(sinks[0].values())
            assert counts["run"] + counts["skipped_nodata"] == counts["tiles"]
            assert len(windows) == counts["tiles"] <= whole_counts["tiles"]
        np.testing.assert_array_equal(np.concatenate(parts, axis=1), expected, err_msg=name)


@pytest.mark.parametrize("mode", MODES)
def test_a_head_with_a_margin_and_two_heads(mode, image):
    """A valid-convolution head (output 4 px short on each side) and a second head, with nodata."""
    valid = nodata_mask("nodata")
    engine = make_engine(mode, 10, ContextBackend(heads=2, shrink=4))
    assert [head.margin for head in engine.heads] == [4, 4]
    whole, _, _ = run_rows(engine, image, valid)
    for first, stop in row_blocks(HEIGHT, 13):
        sinks, _, _ = run_rows(engine, image, valid, rows=(first, stop))
        for head in range(2):
            assert sinks[head].rows() == list(range(first, stop))
            np.testing.assert_array_equal(sinks[head].values(), whole[head].values()[:, first:stop])


@pytest.mark.parametrize("mode", MODES)
def test_single_row_blocks(mode, image):
    """The thinnest blocks: every row alone, including the first and the last."""
    engine = make_engine(mode, 8, ContextBackend(), batch_size=2)
    valid = nodata_mask("nodata")
    whole, _, _ = run_rows(engine, image, valid)
    expected = whole[0].values()
    for row in range(HEIGHT):
        sinks, _, _ = run_rows(engine, image, valid, rows=(row, row + 1))
        assert [first for first, _ in sinks[0].writes] == [row]
        np.testing.assert_array_equal(sinks[0].values(), expected[:, row : row + 1])


@pytest.mark.parametrize("mode", MODES)
def test_a_thin_block_runs_only_the_tiles_it_needs(mode, image):
    engine = make_engine(mode, 8, ContextBackend())
    plan = engine.plan
    valid = nodata_mask("all_valid")
    first, stop = 46, 49  # centre regions: one tile row; read windows: two
    _, counts, windows = run_rows(engine, image, valid, rows=(first, stop))
    needed = [
        tile
        for tile in plan.tiles
        if contributed(plan, tile, mode)[0] < stop and contributed(plan, tile, mode)[1] > first
    ]
    assert windows == [tile.read_window(plan.width, plan.height) for tile in needed]
    assert counts["tiles"] == counts["run"] == len(needed) < len(plan)
    assert plan.tiles_touching_rows(first, stop, mode is BlendMode.CENTRE_CROP) == needed


def test_progress_covers_the_block(image):
    engine = make_engine(BlendMode.PYRAMID, 8, ContextBackend(), batch_size=1)
    seen: list[float] = []
    _, counts, _ = run_rows(engine, image, nodata_mask("all_valid"), rows=(50, 70), progress=seen.append)
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert seen[0] == 0.0  # the block's first tile, not the plan's
    assert len(seen) == counts["tiles"] + 2  # one per tile, the short last batch, the end


@pytest.mark.parametrize(
    "rows", [(-1, 5), (5, 5), (7, 3), (0, HEIGHT + 1), (HEIGHT, HEIGHT + 1), (1.5, 3), (1, 2, 3)]
)
def test_bad_rows_are_refused(rows, image):
    engine = make_engine(BlendMode.MEAN, 8, ContextBackend())
    called = []
    with pytest.raises(RsdlError, match="row range") as error:
        engine.run(lambda: called.append(1), [RowLog(2)], rows=rows)
    assert str(rows[0]) in str(error.value) and str(rows[1]) in str(error.value)
    assert not called  # refused before any reading


def test_row_blocks():
    assert row_blocks(10, 3) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert row_blocks(9, 3) == [(0, 3), (3, 6), (6, 9)]
    assert row_blocks(5, 100) == [(0, 5)]
    assert row_blocks(1, 1) == [(0, 1)]
    with pytest.raises(RsdlError, match="at least 1 row"):
        row_blocks(10, 0)
    with pytest.raises(RsdlError, match="height"):
        row_blocks(0, 4)


def test_the_whole_range_is_the_whole_run(image):
    engine = make_engine(BlendMode.GAUSSIAN, 8, ContextBackend())
    whole, counts, _ = run_rows(engine, image, nodata_mask("nodata"))
    same, same_counts, _ = run_rows(engine, image, nodata_mask("nodata"), rows=(0, HEIGHT))
    assert same_counts == counts
    assert [first for first, _ in same[0].writes] == [first for first, _ in whole[0].writes]
    np.testing.assert_array_equal(same[0].values(), whole[0].values())


def blend_rows(plan, mode, predictions, masks, rows=None) -> tuple[list[int], np.ndarray]:
    """Drive a blender over its tiles, popping after each; the rows it handed out and their values."""
    blender = StreamingBlender(plan, 2, mode, rows)
    blocks = []
    for tile in blender.tiles:
        if predictions[tile.index] is None:
            blender.skip(tile)
        else:
            blender.add(tile, predictions[tile.index], masks[tile.index])
        blocks.extend(blender.pop_ready())
        assert blender.band_rows <= plan.tile_size + plan.step  # bounded by a band, not the block
    blocks.extend(blender.finish())
    handed = [first + offset for first, block in blocks for offset in range(block.shape[1])]
    return handed, np.concatenate([block for _, block in blocks], axis=1)


@settings(max_examples=60, deadline=None)
@given(plan=plans(), mode=st.sampled_from(MODES), data=st.data())
def test_blender_row_ranges_match_the_whole_blend(plan, mode, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    size = plan.tile_size
    predictions = [
        None if rng.random() < 0.1 else rng.normal(size=(2, size, size)).astype(np.float32)
        for _ in plan.tiles
    ]
    masks = [None if rng.random() < 0.5 else rng.random((size, size)) > 0.2 for _ in plan.tiles]
    whole_rows, whole = blend_rows(plan, mode, predictions, masks)
    assert whole_rows == list(range(plan.height))
    first = data.draw(st.integers(0, plan.height - 1))
    stop = data.draw(st.integers(first + 1, plan.height))
    rows, values = blend_rows(plan, mode, predictions, masks, (first, stop))
    assert rows == list(range(first, stop))
    np.testing.assert_array_equal(values, whole[:, first:stop])
