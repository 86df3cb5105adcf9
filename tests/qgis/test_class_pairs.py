"""qgis_io/class_pairs.py: (reference, predicted) pixel counts of two rasters streamed in row
blocks, against counts taken pixel by pixel in plain Python."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsFeedback

from rsdl_qgis_plugin.core.errors import CancelledError
from rsdl_qgis_plugin.qgis_io import class_pairs
from rsdl_qgis_plugin.qgis_io.class_pairs import count_class_pairs

HEIGHT, WIDTH = 13, 11


def _raster(values: np.ndarray, nodata: int | None = None, alpha: np.ndarray | None = None) -> gdal.Dataset:
    bands = 1 if alpha is None else 2
    dataset = gdal.GetDriverByName("MEM").Create("", WIDTH, HEIGHT, bands, gdal.GDT_Byte)
    dataset.GetRasterBand(1).WriteArray(values)
    if nodata is not None:
        dataset.GetRasterBand(1).SetNoDataValue(nodata)
    if alpha is not None:
        dataset.GetRasterBand(2).SetColorInterpretation(gdal.GCI_AlphaBand)
        dataset.GetRasterBand(2).WriteArray(alpha)
    return dataset


@pytest.fixture()
def arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(8)
    return (
        rng.integers(0, 4, (HEIGHT, WIDTH), dtype=np.uint8),
        rng.integers(0, 4, (HEIGHT, WIDTH), dtype=np.uint8),
    )


def _oracle(truth: np.ndarray, predicted: np.ndarray, keep: np.ndarray) -> Counter:
    counts: Counter = Counter()
    for t, p, k in zip(truth.ravel().tolist(), predicted.ravel().tolist(), keep.ravel().tolist()):
        if k:
            counts[(t, p)] += 1
    return counts


@pytest.mark.parametrize("block_pixels", [1 << 22, WIDTH, 3 * WIDTH + 1])
def test_counts_leave_out_ignore_and_nodata_of_either_raster(arrays, monkeypatch, block_pixels):
    monkeypatch.setattr(class_pairs, "BLOCK_PIXELS", block_pixels)  # one block, one row, 3 rows
    truth, predicted = arrays
    truth[0, :5] = 9  # the ignore value
    truth[5, 2:7] = 7  # reference nodata
    predicted[10:, :3] = 200  # prediction nodata
    keep = (truth != 9) & (truth != 7) & (predicted != 200)
    counts = count_class_pairs(_raster(predicted, 200), _raster(truth, 7), ignore_value=9)
    assert counts.counts == dict(_oracle(truth, predicted, keep))
    assert counts.excluded == int((~keep).sum()) == 5 + 5 + 9


def test_without_ignore_value_every_valid_pixel_counts_and_alpha_masks(arrays):
    truth, predicted = arrays
    alpha = np.full((HEIGHT, WIDTH), 255, dtype=np.uint8)
    alpha[:, -2:] = 0  # transparent: the prediction has no data there
    counts = count_class_pairs(_raster(predicted, alpha=alpha), _raster(truth), ignore_value=None)
    keep = alpha > 0
    assert counts.counts == dict(_oracle(truth, predicted, keep))
    assert counts.excluded == 2 * HEIGHT
    assert sum(counts.counts.values()) == HEIGHT * (WIDTH - 2)


def test_progress_and_cancel(arrays, monkeypatch, qgis_app):
    monkeypatch.setattr(class_pairs, "BLOCK_PIXELS", WIDTH)
    truth, predicted = arrays
    feedback = QgsFeedback()
    seen: list[float] = []
    feedback.progressChanged.connect(seen.append)
    count_class_pairs(_raster(predicted), _raster(truth), None, feedback)
    assert seen[-1] == 100.0 and len(seen) == HEIGHT and seen == sorted(seen)
    feedback.cancel()
    with pytest.raises(CancelledError):
        count_class_pairs(_raster(predicted), _raster(truth), None, feedback)
