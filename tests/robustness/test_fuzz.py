"""Section 4: property tests (Hypothesis) that complete tests/unit/test_plan.py and test_blending.py.

That file already covers, over random raster sizes, tile sizes and overlaps: every pixel covered,
centre regions exactly once, and the streaming blender returning its input (NaN at nodata) for
an identity model fed tile by tile. Added here: blending weights are positive and finite for any
tile size (the unit test checks five), and the same identity property through the whole engine
(``TiledInference``: reader thread, reflect padding, batching, fixed-batch chunking, tiles
skipped as all-nodata, rows streamed to the sink) with random nodata masks that include whole
nodata blocks.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.tiling.blending import BlendMode, tile_weights
from rsdl_qgis_plugin.core.tiling.plan import TilePlan
from rsdl_qgis_plugin.inference.backends import ModelBackend, ModelFormat, TensorInfo
from rsdl_qgis_plugin.inference.engine import InferenceSettings, TiledInference

WINDOWED = [BlendMode.PYRAMID, BlendMode.GAUSSIAN, BlendMode.MEAN]
# Values reach the model as they are: (x / 1 - 0) / 1.
PASS_THROUGH = ModelSpec(model_type=ModelType.REGRESSOR, max_pixel_value=1.0)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(WINDOWED), st.integers(1, 1024), st.data())
def test_weights_are_positive_and_finite_for_any_tile(mode, tile_size, data):
    overlap = data.draw(st.integers(0, tile_size - 1))
    weights = tile_weights(mode, tile_size, overlap)
    assert weights.shape == (tile_size, tile_size)
    assert np.isfinite(weights).all() and (weights > 0).all()


class IdentityBackend(ModelBackend):
    """A model that returns its input, through the real backend's batching: a fixed batch size
    (as some ONNX files have) is served in chunks, the last one padded."""

    format = ModelFormat.ONNX

    def __init__(self, channels: int, fixed_batch: int | None) -> None:
        shape = (fixed_batch, channels, None, None)
        tensors = [TensorInfo("input", shape, "float32")], [TensorInfo("output", shape, "float32")]
        super().__init__("identity.onnx", PASS_THROUGH, *tensors, "numpy")
        self.forwarded: list[int] = []

    def _forward(self, batch: np.ndarray) -> list[np.ndarray]:
        assert self.fixed_batch is None or len(batch) == self.fixed_batch
        self.forwarded.append(len(batch))
        return [batch.copy()]


class ArrayReader:
    def __init__(self, image: np.ndarray, valid: np.ndarray) -> None:
        self.image, self.valid = image, valid

    def read(self, row: int, col: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
        window = (slice(row, row + rows), slice(col, col + cols))
        return self.image[(slice(None), *window)].copy(), self.valid[window].copy()


class RowCollector:
    def __init__(self, channels: int, height: int, width: int) -> None:
        self.values = np.full((channels, height, width), -1.0, np.float32)
        self.next_row = 0

    def write_rows(self, first_row: int, values: np.ndarray) -> None:
        assert first_row == self.next_row, "rows must arrive in order, each once"
        self.values[:, first_row : first_row + values.shape[1]] = values
        self.next_row += values.shape[1]


@st.composite
def scenes(draw):
    tile_size = draw(st.integers(1, 48))
    overlap = draw(st.integers(0, tile_size - 1))
    step = tile_size - overlap
    longest = min(160, 6 * step + overlap)  # at most about 6 tiles per axis keeps examples fast
    height, width = draw(st.integers(1, longest)), draw(st.integers(1, longest))
    channels = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    valid = rng.random((height, width)) >= draw(st.floats(0.0, 1.0))
    if draw(st.booleans()):  # a nodata block, so that whole tiles are nodata
        top, left = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        valid[top : top + draw(st.integers(1, height)), left : left + draw(st.integers(1, width))] = False
    image = rng.random((channels, height, width), dtype=np.float32) + 0.5
    image[:, ~valid] = -9999.0  # what a nodata value looks like: it must never leak out
    return image, valid, tile_size, overlap


@settings(max_examples=200, deadline=None)
@given(
    scenes(),
    st.sampled_from(list(BlendMode)),
    st.integers(1, 6),
    st.sampled_from([None, 1, 3]),
)
def test_engine_returns_the_input_of_an_identity_model(scene, mode, batch_size, fixed_batch):
    image, valid, tile_size, overlap = scene
    channels, height, width = image.shape
    backend = IdentityBackend(channels, fixed_batch)
    settings_ = InferenceSettings(tile_size, overlap, batch_size, mode)
    engine = TiledInference(backend, PASS_THROUGH, tuple(range(1, channels + 1)), settings_, width, height)
    sink = RowCollector(channels, height, width)

    counts = engine.run(lambda: ArrayReader(image, valid), [sink])

    assert sink.next_row == height
    np.testing.assert_allclose(sink.values[:, valid], image[:, valid], rtol=1e-6)
    assert np.isnan(sink.values[:, ~valid]).all()
    plan = TilePlan(width, height, tile_size, overlap)
    empty = 0
    for tile in plan.tiles:
        row, col, rows, cols = tile.read_window(width, height)
        empty += not valid[row : row + rows, col : col + cols].any()
    assert counts["skipped_nodata"] == empty
    assert counts["run"] + empty == len(plan)
    assert sum(backend.forwarded[1:]) >= counts["run"]  # every tile with data went through the model
