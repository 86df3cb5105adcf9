"""Torch datasets (training/data/datasets.py): windows read lazily from rasters, samples normalised by
the spec, handles that never cross a pickle."""

from __future__ import annotations

import pickle

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from training.data import IGNORE_INDEX, ClassTable
from training.data.datasets import (
    ClassificationDataset,
    RasterFiles,
    SegmentationDataset,
    WindowReader,
    read_raster_file,
)


def _scene(raster_writer, tmp_path):
    rng = np.random.default_rng(4)
    image = raster_writer(tmp_path / "image.tif", rng.integers(0, 255, (3, 40, 48), dtype=np.uint8))
    mask = raster_writer(tmp_path / "mask.tif", rng.integers(0, 3, (1, 40, 48), dtype=np.uint8), nodata=255)
    return image, mask


def test_window_reader_reads_the_chip_window_of_the_chosen_bands(raster_writer, tmp_path):
    image, mask = _scene(raster_writer, tmp_path)
    reader = WindowReader([str(image)], [str(mask)], chip_size=16, bands=[3, 1])
    pixels, labels = reader((0, 8, 24))  # raster 0, row 8, col 24
    window = Window(24, 8, 16, 16)
    with rasterio.open(image) as source, rasterio.open(mask) as target:
        np.testing.assert_array_equal(pixels, source.read([3, 1], window=window))
        np.testing.assert_array_equal(labels, target.read(1, window=window))


def test_raster_files_pickle_without_handles_and_reopen(raster_writer, tmp_path):
    image, _ = _scene(raster_writer, tmp_path)
    files = RasterFiles()
    first = files.read(str(image))
    assert files.get(str(image)) is files.get(str(image))  # kept open
    copy = pickle.loads(pickle.dumps(files))
    assert copy._handles == {}
    np.testing.assert_array_equal(copy.read(str(image)), first)


def test_float_nan_is_read_as_zero(raster_writer, tmp_path):
    pixels = np.array([[[1.5, np.nan], [np.inf, -2.0]]], dtype=np.float32)
    path = raster_writer(tmp_path / "float.tif", pixels)
    read = read_raster_file(path)
    assert np.isfinite(read).all() and read[0, 0, 1] == 0.0 and read[0, 0, 0] == 1.5


def test_samples_are_normalised_and_masks_become_channel_indices():
    spec = ModelSpec(standardization_mean=(0.5,), standardization_std=(0.25,))
    table = ClassTable((0, 2), ("background", "road"), ("#000000", "#ff0000"))
    image = np.full((2, 2, 2), 255, dtype=np.uint8)
    mask = np.array([[0, 2], [1, 255]], dtype=np.uint8)
    dataset = SegmentationDataset([("a", "b")], lambda item: (image, mask), spec, table)
    sample = dataset[0]
    assert sample["image"].dtype == torch.float32 and torch.all(sample["image"] == 2.0)  # (1 - 0.5) / 0.25
    assert sample["mask"].tolist() == [[0, 1], [IGNORE_INDEX, IGNORE_INDEX]]
    labels = ClassificationDataset([("x", 1)], lambda source: image, spec)
    assert labels[0]["label"].dtype == torch.int64 and int(labels[0]["label"]) == 1 and len(labels) == 1
