"""The tiled engine (QGIS-free): whole-image equality, nodata, streaming, heads, cancel.

The oracle for a fully convolutional model is one forward pass over the whole image, padded by
reflection exactly as the engine pads tiles at the raster's edges.
"""

from __future__ import annotations

import numpy as np
import pytest

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec, ModelType
from rsdl_qgis_plugin.core.errors import CancelledError, ModelError
from rsdl_qgis_plugin.core.tiling.blending import BlendMode
from rsdl_qgis_plugin.inference.engine import InferenceSettings, TiledInference


class ArrayReader:
    def __init__(self, image: np.ndarray, valid: np.ndarray | None = None) -> None:
        self.image = image
        self.valid = np.ones(image.shape[1:], dtype=bool) if valid is None else valid
        self.reads = 0

    def read(self, row, col, rows, cols):
        self.reads += 1
        window = (slice(row, row + rows), slice(col, col + cols))
        return self.image[(slice(None), *window)].astype(np.float32), self.valid[window]


def box3(x: np.ndarray) -> np.ndarray:
    """3x3 box filter with zero padding over (N, C, H, W): a receptive field of radius 1."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    height, width = x.shape[2:]
    return sum(padded[:, :, dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)) / 9.0


class NumpyBackend:
    """A fully convolutional stand-in: two 3x3 box filters (radius 2) and a channel mix."""

    provider = "numpy"
    fixed_batch = None
    input_size = (None, None)

    def __init__(self, channels: int = 3, heads: int = 1, shrink: int = 0) -> None:
        self.input_channels = channels
        self.heads = heads
        self.shrink = shrink  # a valid-convolution net: output smaller than the tile
        self.calls = 0

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.calls += 1
        features = box3(box3(batch))
        mixed = np.stack([features.sum(axis=1), features[:, 0] - features[:, -1]], axis=1)
        if self.shrink:
            mixed = mixed[:, :, self.shrink : -self.shrink, self.shrink : -self.shrink]
        return [mixed * (head + 1) for head in range(self.heads)]


REGRESSOR = ModelSpec(model_type=ModelType.REGRESSOR)
RADIUS = 2


def whole_image(backend: NumpyBackend, image: np.ndarray, spec: ModelSpec, head: int = 0) -> np.ndarray:
    padded = np.pad(image, ((0, 0), (RADIUS, RADIUS), (RADIUS, RADIUS)), mode="reflect")
    output = backend.run(spec.normalize(padded[None].astype(np.float32)))[head][0]
    return output[:, RADIUS:-RADIUS, RADIUS:-RADIUS]


class Collect:
    def __init__(self, channels: int, height: int, width: int) -> None:
        self.values = np.full((channels, height, width), -1.0, dtype=np.float32)
        self.next_row = 0
        self.max_rows = 0

    def write_rows(self, first_row, values):
        assert first_row == self.next_row, "rows must arrive in order, once"
        self.values[:, first_row : first_row + values.shape[1]] = values
        self.next_row += values.shape[1]
        self.max_rows = max(self.max_rows, values.shape[1])


def run(image, settings, backend=None, valid=None, spec=REGRESSOR, **kwargs):
    backend = backend or NumpyBackend(image.shape[0])
    engine = TiledInference(
        backend, spec, tuple(range(1, image.shape[0] + 1)), settings, image.shape[2], image.shape[1]
    )
    sinks = [Collect(layout.channels, image.shape[1], image.shape[2]) for layout in engine.heads]
    counts = engine.run(lambda: ArrayReader(image, valid), sinks, **kwargs)
    return sinks, counts, engine


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (3, 173, 251)).astype(np.float32)


def test_centre_crop_equals_whole_image_forward_pass(image):
    # Overlap 8 covers the receptive radius (2) on both sides of every seam.
    sinks, counts, _ = run(image, InferenceSettings(48, 8, 3, BlendMode.CENTRE_CROP))
    expected = whole_image(NumpyBackend(), image, REGRESSOR)
    assert sinks[0].next_row == image.shape[1]
    np.testing.assert_allclose(sinks[0].values, expected, rtol=1e-5, atol=1e-4)
    assert counts["run"] == counts["tiles"] and counts["skipped_nodata"] == 0


def test_centre_crop_without_enough_overlap_shows_seams(image):
    """The equality above is not vacuous: with overlap below the receptive field, seams differ."""
    sinks, _, _ = run(image, InferenceSettings(48, 2, 3, BlendMode.CENTRE_CROP))
    expected = whole_image(NumpyBackend(), image, REGRESSOR)
    assert np.abs(sinks[0].values - expected).max() > 0.05  # vs <= 1e-4 with enough overlap


@pytest.mark.parametrize("mode", [BlendMode.PYRAMID, BlendMode.GAUSSIAN, BlendMode.MEAN])
def test_blended_modes_match_a_pointwise_model_exactly(mode, image):
    """Tile predictions that do not depend on context must blend back to the whole-image values."""

    class Pointwise(NumpyBackend):
        def run(self, batch):
            return [np.stack([batch.sum(axis=1), batch[:, 0] * 2.0], axis=1)]

    sinks, _, _ = run(image, InferenceSettings(40, 12, 4, mode), backend=Pointwise())
    spec_image = REGRESSOR.normalize(image[None])[0]
    expected = np.stack([spec_image.sum(axis=0), spec_image[0] * 2.0])
    np.testing.assert_allclose(sinks[0].values, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", [BlendMode.PYRAMID, BlendMode.GAUSSIAN])
def test_blending_hides_seams(mode, image):
    """With context, blended tiles stay close to the whole image, much closer than plain tiling."""
    expected = whole_image(NumpyBackend(), image, REGRESSOR)
    blended, _, _ = run(image, InferenceSettings(48, 16, 4, mode))
    seams, _, _ = run(image, InferenceSettings(48, 0, 4, BlendMode.MEAN))
    blended_error = np.abs(blended[0].values - expected).mean()
    seam_error = np.abs(seams[0].values - expected).mean()
    assert blended_error < 0.5 * seam_error


def test_nodata_stays_nodata_and_empty_tiles_are_skipped(image):
    valid = np.ones(image.shape[1:], dtype=bool)
    valid[:, :100] = False  # a wide nodata border: whole tiles of it are skipped
    valid[150:160, 200:210] = False
    backend = NumpyBackend()
    sinks, counts, _ = run(
        image, InferenceSettings(48, 8, 2, BlendMode.PYRAMID), backend=backend, valid=valid
    )
    values = sinks[0].values
    assert np.isnan(values[:, ~valid]).all()
    assert np.isfinite(values[:, valid]).all()
    assert counts["skipped_nodata"] > 0
    assert counts["run"] + counts["skipped_nodata"] == counts["tiles"]
    assert backend.calls == counts["batches"] + 1  # one probe pass at start


def test_memory_is_bounded_by_tile_rows_not_height():
    tall = np.random.default_rng(0).random((3, 1200, 200)).astype(np.float32)
    tall_sinks, _, _ = run(tall, InferenceSettings(32, 8, 2, BlendMode.PYRAMID))
    assert tall_sinks[0].max_rows <= 2 * 32  # rows leave in small chunks as tiles complete
    assert tall_sinks[0].next_row == 1200


def test_heads_and_centred_crop_outputs(image):
    backend = NumpyBackend(heads=2, shrink=4)  # 48 px tiles give 40 px outputs
    sinks, _, engine = run(image, InferenceSettings(48, 16, 2, BlendMode.CENTRE_CROP), backend=backend)
    assert [head.margin for head in engine.heads] == [4, 4]
    expected = whole_image(NumpyBackend(), image, REGRESSOR)
    # Away from the raster edge (where the crop loses context) both heads match the whole image.
    inner = (slice(None), slice(8, -8), slice(8, -8))
    np.testing.assert_allclose(sinks[0].values[inner], expected[inner], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(sinks[1].values[inner], 2 * expected[inner], rtol=1e-5, atol=1e-4)


def test_segmentor_logits_become_probabilities(image):
    spec = ModelSpec(model_type=ModelType.SEGMENTOR)
    sinks, _, _ = run(image, InferenceSettings(48, 8, 2, BlendMode.MEAN), spec=spec)
    values = sinks[0].values
    assert np.allclose(values.sum(axis=0), 1.0, atol=1e-5)
    assert values.min() >= 0.0


def test_cancel_stops_within_a_batch(image):
    backend = NumpyBackend()
    polls = []

    def cancelled():
        polls.append(1)
        return len(polls) >= 2

    with pytest.raises(CancelledError):
        run(image, InferenceSettings(32, 8, 2, BlendMode.MEAN), backend=backend, is_cancelled=cancelled)
    assert backend.calls == 1 + 2  # the probe and two batches, then it stopped


def test_unsupported_output_shapes_are_refused(image):
    class Flat(NumpyBackend):
        def run(self, batch):
            return [batch.mean(axis=(2, 3))]

    with pytest.raises(ModelError, match="classifytiles"):
        run(image, InferenceSettings(32, 8, 2, BlendMode.MEAN), backend=Flat())

    class Larger(NumpyBackend):
        def run(self, batch):
            return [np.repeat(np.repeat(batch, 2, axis=2), 2, axis=3)]

    with pytest.raises(ModelError, match="centred crop"):
        run(image, InferenceSettings(32, 8, 2, BlendMode.MEAN), backend=Larger())


def test_reader_errors_surface(image):
    class Broken(ArrayReader):
        def read(self, row, col, rows, cols):
            raise OSError("disk gone")

    backend = NumpyBackend()
    engine = TiledInference(
        backend, REGRESSOR, (1, 2, 3), InferenceSettings(32, 8, 2), image.shape[2], image.shape[1]
    )
    with pytest.raises(OSError, match="disk gone"):
        engine.run(lambda: Broken(image), [Collect(2, image.shape[1], image.shape[2])])
