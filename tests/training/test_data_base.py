"""What the data modules share (training/data/base.py): resolution from the CRS, the any-band nodata
rule on windows, the spec's life cycle and loaders that refuse empty splits."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from rsdl_qgis_plugin.core.errors import RsdlError
from training.data import ChipsDataModule, ImageFolderDataModule
from training.data.base import (
    STATISTICS_SAMPLES,
    RsdlDataModule,
    nodata_validity,
    resolution_cm,
    training_subset,
    window_nodata,
)


def test_resolution_is_given_for_metric_crss_only():
    assert resolution_cm(CRS.from_epsg(32636).to_wkt(), 0.3) == 30.0
    assert resolution_cm(CRS.from_epsg(4326).to_wkt(), 0.0001) is None
    assert resolution_cm(CRS.from_epsg(2229).to_wkt(), 1.0) is None  # US survey feet
    assert resolution_cm("not a CRS", 1.0) is None


def test_window_nodata_marks_pixels_where_any_band_is_nodata(raster_writer, tmp_path):
    pixels = np.full((2, 6, 8), 7.0, dtype=np.float32)
    pixels[0, 1, 2] = -9999.0  # the nodata value, band 1 only
    pixels[1, 4, 5] = np.nan  # not finite, band 2 only
    path = raster_writer(tmp_path / "float.tif", pixels, nodata=-9999.0)
    expected = np.zeros((6, 8), dtype=bool)
    expected[1, 2] = expected[4, 5] = True
    with rasterio.open(path) as source:
        np.testing.assert_array_equal(window_nodata(source, Window(0, 0, 8, 6)), expected)
        np.testing.assert_array_equal(window_nodata(source, Window(2, 1, 4, 4)), expected[1:5, 2:6])
        assert not window_nodata(source, Window(0, 0, 8, 6), bands=[1])[4, 5]  # band 2 not read
    valid = nodata_validity([10, None, 30])
    block = np.array([[[10, 1]], [[0, 0]], [[3, 30]]], dtype=np.uint8)  # (3, 1, 2)
    np.testing.assert_array_equal(valid(block), [[False, False]])
    np.testing.assert_array_equal(valid(block[:2]), [[False, True]])  # only the bands read count


def test_the_spec_exists_only_after_setup_and_tasks_are_checked(chips_folder, tmp_path):
    module = ChipsDataModule(str(chips_folder), cache_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="call setup"):
        module.model_spec()
    with pytest.raises(ValueError, match="task must be one of"):
        ChipsDataModule(str(chips_folder), task="detection", cache_dir=str(tmp_path))
    assert module.hparams["_class_path"] == "training.data.chip_folder.ChipsDataModule"


def test_an_empty_split_is_refused_with_advice(photo_folder, tmp_path):
    module = ImageFolderDataModule(str(photo_folder), image_size=16, cache_dir=str(tmp_path))
    module.setup("fit")
    assert len(module.val_dataloader().dataset) > 0
    with pytest.raises(RsdlError, match="The test split holds no samples"):
        module.test_dataloader()


def test_statistics_samples_are_spread_over_the_items():
    items = list(range(1000))
    picked = RsdlDataModule._sample(items)
    assert len(picked) == STATISTICS_SAMPLES and picked[0] == 0 and picked[-1] == 999
    assert picked == sorted(set(picked))
    assert RsdlDataModule._sample(items[:10]) == items[:10]


def test_a_training_subset_is_the_same_in_every_run_and_keeps_the_order():
    items = [f"chip{i}" for i in range(105)]
    subset = training_subset(items, 0.1)
    assert len(subset) == 10 and subset == training_subset(items, 0.1)
    assert set(subset) <= set(items) and subset == sorted(subset, key=items.index)
    assert training_subset(items, 1.0) == items
    assert len(training_subset(items[:3], 0.01)) == 1  # never empty


def test_train_fraction_thins_the_training_split_only(chips_folder, tmp_path):
    whole = ChipsDataModule(str(chips_folder), cache_dir=str(tmp_path / "cache"))
    half = ChipsDataModule(str(chips_folder), cache_dir=str(tmp_path / "cache"), train_fraction=0.5)
    for module in (whole, half):
        module.setup("fit")
    assert len(whole.datasets["train"]) == 8 and len(half.datasets["train"]) == 4
    assert [len(half.datasets[s]) for s in ("val", "test")] == [
        len(whole.datasets[s]) for s in ("val", "test")
    ]
    assert half.hparams["train_fraction"] == 0.5
    with pytest.raises(ValueError, match="train_fraction"):
        ChipsDataModule(str(chips_folder), cache_dir=str(tmp_path / "cache"), train_fraction=0.0)
