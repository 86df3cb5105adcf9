"""The streaming blender and its weight windows (core/tiling/blending.py), against pytorch-toolbelt."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsdl_qgis_plugin.core.tiling.blending import BlendMode, StreamingBlender, tile_weights
from rsdl_qgis_plugin.core.tiling.layouts import TileWindow
from rsdl_qgis_plugin.core.tiling.plan import TilePlan, pad_tile
from tests.tiling_helpers import plans

ALL_MODES = list(BlendMode)


def read_tile(image: np.ndarray, plan: TilePlan, tile: TileWindow) -> np.ndarray:
    """What the engine does for a (C, H, W) raster in memory: read the window, pad it to the tile."""
    row, col, rows, cols = tile.read_window(plan.width, plan.height)
    return pad_tile(image[:, row : row + rows, col : col + cols], tile.padding(plan.width, plan.height))


def assemble(blocks: list[tuple[int, np.ndarray]], plan: TilePlan) -> np.ndarray:
    """Stack the popped row blocks, checking they are in order and cover every row exactly once."""
    assert [first for first, _ in blocks] == sorted(first for first, _ in blocks)
    rows = [first + offset for first, block in blocks for offset in range(block.shape[1])]
    assert rows == list(range(plan.height))
    for _, block in blocks:
        assert block.dtype == np.float32
        assert block.shape[2] == plan.width
    return np.concatenate([block for _, block in blocks], axis=1)


def blend(plan: TilePlan, mode: BlendMode, predictions, channels: int, valid_masks=None) -> np.ndarray:
    """Run the streaming blender over per-tile predictions (None: skip), popping after every tile."""
    blender = StreamingBlender(plan, channels, mode)
    blocks: list[tuple[int, np.ndarray]] = []
    for tile, values in zip(plan.tiles, predictions):
        if values is None:
            blender.skip(tile)
        else:
            blender.add(tile, values, None if valid_masks is None else valid_masks[tile.index])
        blocks.extend(blender.pop_ready())
        assert blender.band_rows <= plan.tile_size + plan.step
    blocks.extend(blender.finish())
    return assemble(blocks, plan)


def box_filter(tile: np.ndarray) -> np.ndarray:
    """3 x 3 mean per channel (edge-padded): predictions near a tile's border depend on its padding."""
    padded = np.pad(tile, ((0, 0), (1, 1), (1, 1)), mode="edge")
    rows, cols = tile.shape[1:]
    return sum(padded[:, dr : dr + rows, dc : dc + cols] for dr in range(3) for dc in range(3)) / 9.0


def disagreeing_model(tile: np.ndarray, index: int) -> np.ndarray:
    """A per-tile model whose tiles disagree, so the blending weights decide the result."""
    return (box_filter(tile) * (1.0 + 0.37 * index) + 0.1 * index).astype(np.float32)


# --- toolbelt as the oracle ------------------------------------------------------------------

TOOLBELT_CASES = [
    # (channels, height, width, tile_size, overlap)
    (3, 300, 437, 128, 32),
    (3, 300, 437, 64, 16),
    (3, 300, 437, 64, 48),
    (2, 57, 1000, 64, 16),
    (1, 200, 129, 128, 0),  # the far margin is exactly half a tile
    (3, 20, 30, 64, 16),  # raster smaller than one tile: the margin is wider than the raster
]


@pytest.fixture(scope="module")
def toolbelt():
    cv2 = pytest.importorskip("cv2", reason="OpenCV (headless) is the oracle's padding")
    torch = pytest.importorskip("torch", reason="pytorch-toolbelt needs torch")
    tiles = pytest.importorskip("pytorch_toolbelt.inference.tiles", reason="pytorch-toolbelt is the oracle")
    return cv2, torch, tiles


@pytest.mark.parametrize(("channels", "height", "width", "tile_size", "overlap"), TOOLBELT_CASES)
@pytest.mark.parametrize("weight", ["pyramid", "mean"])
@pytest.mark.parametrize("model", ["identity", "disagreeing"])
def test_blend_equals_toolbelt_slicer_and_merger(
    toolbelt, channels, height, width, tile_size, overlap, weight, model
):
    cv2, torch, tiles = toolbelt
    rng = np.random.default_rng(height * width + tile_size)
    image_hwc = rng.random((height, width, channels), dtype=np.float32)
    step = tile_size - overlap

    slicer = tiles.ImageSlicer(image_hwc.shape[:2], tile_size=tile_size, tile_step=step, weight=weight)
    toolbelt_tiles = [
        np.asarray(t).reshape(tile_size, tile_size, channels).transpose(2, 0, 1)
        for t in slicer.split(image_hwc, border_type=cv2.BORDER_REFLECT101)
    ]
    model_of = {"identity": lambda tile, _: tile.astype(np.float32), "disagreeing": disagreeing_model}[model]
    merger = tiles.TileMerger(slicer.target_shape, channels, slicer.weight)
    merger.integrate_batch(
        torch.from_numpy(np.stack([model_of(t, i) for i, t in enumerate(toolbelt_tiles)])), slicer.crops
    )
    crop = (
        slice(None),
        slice(slicer.margin_top, slicer.margin_top + height),
        slice(slicer.margin_left, slicer.margin_left + width),
    )
    expected = merger.merge()[crop].numpy()
    norm_mask = np.broadcast_to(merger.norm_mask[crop].numpy(), expected.shape)

    plan = TilePlan(width, height, tile_size, overlap)
    assert [(t.col, t.row) for t in plan.tiles] == [
        (x - slicer.margin_left, y - slicer.margin_top) for x, y, _, _ in slicer.crops
    ]
    image = np.ascontiguousarray(image_hwc.transpose(2, 0, 1))
    our_tiles = [read_tile(image, plan, tile) for tile in plan.tiles]
    margins = (slicer.margin_top, slicer.margin_bottom, slicer.margin_left, slicer.margin_right)
    for ours, theirs in zip(our_tiles, toolbelt_tiles):
        if 2 * max(margins) < tile_size:
            np.testing.assert_array_equal(ours, theirs)
        else:  # the documented exception: only the outermost padding row/column differs
            np.testing.assert_array_equal(ours[:, 1:-1, 1:-1], theirs[:, 1:-1, 1:-1])

    blended = blend(plan, BlendMode(weight), [model_of(t, i) for i, t in enumerate(our_tiles)], channels)

    positive = norm_mask > 0
    assert positive.all()  # toolbelt's pyramid is positive up to the tile edges
    np.testing.assert_allclose(blended[positive], expected[positive], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tile_size", [1, 2, 7, 64, 255, 512])
def test_pyramid_weights_equal_toolbelt(toolbelt, tile_size):
    _, _, tiles = toolbelt
    expected = tiles.compute_pyramid_patch_weight_loss(tile_size, tile_size)[0]
    weights = tile_weights(BlendMode.PYRAMID, tile_size, 0)
    assert weights.dtype == np.float32 and weights.shape == (tile_size, tile_size)
    np.testing.assert_allclose(weights, expected, rtol=1e-6)


@pytest.mark.parametrize("mode", [BlendMode.PYRAMID, BlendMode.GAUSSIAN, BlendMode.MEAN])
@pytest.mark.parametrize("tile_size", [1, 2, 5, 64, 256])
def test_weight_windows_are_positive_symmetric_and_peak_in_the_centre(mode, tile_size):
    weights = tile_weights(mode, tile_size, 0)
    assert (weights > 0).all()
    np.testing.assert_allclose(weights, weights.T, rtol=1e-6)
    np.testing.assert_allclose(weights, weights[::-1, ::-1], rtol=1e-6)
    centre = (tile_size - 1) // 2
    assert weights[centre, centre] == pytest.approx(weights.max())


def test_gaussian_sigma_is_an_eighth_of_the_tile():
    weights = tile_weights(BlendMode.GAUSSIAN, 64, 16).astype(np.float64)
    profile = weights[31] / weights[31].max()  # pixel 31 is 0.5 px from the centre (31.5)
    distances = np.arange(64) - 31.5
    np.testing.assert_allclose(profile, np.exp(-(distances**2 - 0.25) / (2 * 8.0**2)), rtol=1e-5)


def test_centre_crop_has_no_position_independent_window():
    with pytest.raises(ValueError, match="centre_region"):
        tile_weights(BlendMode.CENTRE_CROP, 64, 16)


# --- streaming -------------------------------------------------------------------------------


def test_streaming_band_does_not_grow_with_the_raster_height():
    peaks = {}
    for height in (300, 3000):
        plan = TilePlan(width=40, height=height, tile_size=64, overlap=16)
        blender = StreamingBlender(plan, channels=2, mode=BlendMode.PYRAMID)
        blocks: list[tuple[int, np.ndarray]] = []
        for tile in plan.tiles:
            blender.add(tile, np.full((2, 64, 64), tile.index, np.float32))
            blocks.extend(blender.pop_ready())
        blocks.extend(blender.finish())
        assemble(blocks, plan)
        assert len(blocks) == plan.n_tile_rows  # one block per tile-row, as soon as it is complete
        peaks[height] = blender.max_band_rows
    assert peaks[300] == peaks[3000] <= 64 + 48


def test_rows_come_out_as_soon_as_no_later_tile_touches_them():
    plan = TilePlan(width=50, height=100, tile_size=32, overlap=8)
    blender = StreamingBlender(plan, channels=1, mode=BlendMode.MEAN)
    first_tile_row = plan.tiles[: plan.n_tile_cols]
    for tile in first_tile_row[:-1]:
        blender.add(tile, np.zeros((1, 32, 32), np.float32))
        assert blender.pop_ready() == []
    blender.skip(first_tile_row[-1])
    [(first, block)] = blender.pop_ready()
    assert first == 0 and block.shape == (1, plan.tile_row_starts[1], 50)
    assert blender.pop_ready() == []


def test_centre_crop_takes_each_pixel_from_the_tile_whose_centre_holds_it():
    plan = TilePlan(width=437, height=300, tile_size=128, overlap=32)
    # Tile 1 spans columns 59..186; its neighbours start at -37 and 155: each overlap of 32 px is
    # split in the middle, so tile 1 owns columns 75..170 (rows: 0..101, the first tile-row reaches
    # the top border). The last tile owns rows 198..299 and columns 363..436.
    assert plan.centre_region(plan.tiles[1]) == (0, 75, 102, 96)
    assert plan.centre_region(plan.tiles[-1]) == (198, 363, 102, 74)
    predictions = [np.full((1, 128, 128), tile.index, np.float32) for tile in plan.tiles]
    blended = blend(plan, BlendMode.CENTRE_CROP, predictions, 1)[0]
    assert (blended[:102, 75:171] == 1).all()
    assert (blended[198:, 363:] == len(plan) - 1).all()
    assert set(np.unique(blended)) == {float(tile.index) for tile in plan.tiles}


# --- properties over random rasters ----------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(plans(), st.sampled_from(ALL_MODES), st.floats(0.0, 1.0), st.integers(0, 2**31))
def test_identity_model_returns_the_input_and_nan_at_nodata(plan, mode, nodata_share, seed):
    rng = np.random.default_rng(seed)
    image = rng.random((2, plan.height, plan.width), dtype=np.float32) + 0.5
    valid_image = rng.random((plan.height, plan.width)) >= nodata_share
    masked_image = np.where(valid_image, image, np.float32(-9999))  # nodata value, must not leak
    predictions, masks = [], []
    for tile in plan.tiles:
        valid = read_tile(valid_image[np.newaxis], plan, tile)[0]
        masks.append(valid)
        predictions.append(read_tile(masked_image, plan, tile) if valid.any() else None)

    blended = blend(plan, mode, predictions, 2, masks)

    assert np.isnan(blended[:, ~valid_image]).all()
    np.testing.assert_allclose(blended[:, valid_image], image[:, valid_image], rtol=1e-5)


# --- errors ----------------------------------------------------------------------------------


def test_tiles_out_of_plan_order_are_refused():
    plan = TilePlan(width=100, height=100, tile_size=32, overlap=8)
    blender = StreamingBlender(plan, channels=1, mode=BlendMode.PYRAMID)
    values = np.zeros((1, 32, 32), np.float32)
    with pytest.raises(ValueError, match="plan order: expected tile 0"):
        blender.add(plan.tiles[1], values)
    blender.add(plan.tiles[0], values)
    with pytest.raises(ValueError, match="plan order: expected tile 1"):
        blender.skip(plan.tiles[0])
    other_plan_tile = TilePlan(width=200, height=100, tile_size=32, overlap=8).tiles[1]
    with pytest.raises(ValueError, match="plan order"):
        blender.add(other_plan_tile, values)


def test_wrong_prediction_shape_and_early_finish_are_refused():
    plan = TilePlan(width=100, height=100, tile_size=32, overlap=8)
    blender = StreamingBlender(plan, channels=2, mode=BlendMode.MEAN)
    with pytest.raises(ValueError, match=r"shape \(2, 32, 32\)"):
        blender.add(plan.tiles[0], np.zeros((1, 32, 32), np.float32))
    with pytest.raises(RuntimeError, match=f"0 of {len(plan)} tiles"):
        blender.finish()
    for tile in plan.tiles:
        blender.skip(tile)
    with pytest.raises(ValueError, match="already been added"):
        blender.skip(plan.tiles[-1])
    assert all(np.isnan(block).all() for _, block in blender.finish())
