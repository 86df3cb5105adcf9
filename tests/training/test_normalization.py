"""Band statistics for normalisation (training/data/normalization.py), against numpy over the valid
pixels."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.normalization import MIN_STD, BandStatistics, default_max_pixel_value, per_band


def test_mean_and_std_equal_numpy_over_the_valid_pixels():
    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 4096, (3, 20, 30)).astype(np.uint16) for _ in range(3)]
    valids = [rng.random((20, 30)) > 0.2 for _ in range(3)]
    valids[2] = None  # a block without a validity mask counts every pixel
    statistics = BandStatistics(3, 4095.0)
    for pixels, valid in zip(blocks, valids):
        statistics.add(pixels, valid)
    kept = np.concatenate(
        [p[:, v if v is not None else np.ones(p.shape[1:], bool)] for p, v in zip(blocks, valids)], axis=1
    )
    mean, std = statistics.mean_std()
    assert statistics.count == kept.shape[1]
    np.testing.assert_allclose(mean, (kept / 4095.0).mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(std, (kept / 4095.0).std(axis=1), rtol=1e-9)


def test_pixels_not_finite_in_any_band_are_left_out():
    pixels = np.array([[[1.0, 2.0, np.nan]], [[3.0, np.inf, 5.0]]])  # (2, 1, 3)
    statistics = BandStatistics(2, 1.0)
    statistics.add(pixels)
    mean, std = statistics.mean_std()
    assert statistics.count == 1 and mean == [1.0, 3.0]
    assert std == [MIN_STD, MIN_STD]  # one pixel: a constant band never divides by zero
    with pytest.raises(ValueError, match="No valid training pixels"):
        BandStatistics(2, 1.0).mean_std()


@pytest.mark.parametrize(
    ("dtype", "expected"), [("uint8", 255.0), ("uint16", 65535.0), ("int16", 32767.0), ("float32", 1.0)]
)
def test_default_max_pixel_value(dtype, expected):
    assert default_max_pixel_value(dtype) == expected


def test_per_band_values():
    assert per_band("mean", None, 3) is None
    assert per_band("mean", [0.5], 3) == [0.5, 0.5, 0.5]
    assert per_band("std", [1, 2], 2) == [1.0, 2.0]
    with pytest.raises(ValueError, match="std has 2 values for 3 bands"):
        per_band("std", [1, 2], 3)
