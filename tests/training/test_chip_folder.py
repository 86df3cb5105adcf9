"""ChipsDataModule (training/data/chip_folder.py): batches, normalisation and class weights of a chip
folder written by rsdl:exportchips."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from rsdl_qgis_plugin.core.errors import RsdlError
from rsdl_qgis_plugin.core.metrics.class_statistics import ClassStatistics
from training.data import IGNORE_INDEX, ChipsDataModule


def test_chips_segmentation_batches(chips_folder, tmp_path):
    module = ChipsDataModule(str(chips_folder), batch_size=4, augment=False, cache_dir=str(tmp_path))
    assert (module.num_classes, module.in_channels) == (3, 3)
    module.prepare_data()
    module.setup("fit")
    assert {split: len(d) for split, d in module.datasets.items()} == {"train": 8, "val": 3, "test": 2}
    batch = next(iter(module.train_dataloader()))
    assert set(batch) == {"image", "mask"}
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (4, 3, 32, 32)
    assert batch["mask"].dtype == torch.int64 and batch["mask"].shape == (4, 32, 32)
    assert set(batch["mask"].unique().tolist()) <= {IGNORE_INDEX, 0, 1, 2}
    assert (batch["mask"][:, :2, :2] == IGNORE_INDEX).all()  # the mask's 255 is ignored


def test_samples_are_normalised_by_the_model_spec(chips_folder, tmp_path):
    """Training normalises with the very ModelSpec.normalize the plugin runs."""
    module = ChipsDataModule(
        str(chips_folder), augment=False, mean=[0.5], std=[0.25], cache_dir=str(tmp_path)
    )
    module.setup("fit")
    spec = module.model_spec()
    assert spec.standardization_mean == (0.5, 0.5, 0.5) and spec.max_pixel_value == 255
    image_path, _ = module.datasets["val"].items[0]
    with rasterio.open(image_path) as source:
        raw = source.read()
    expected = ModelSpec(standardization_mean=(0.5,), standardization_std=(0.25,)).normalize(raw)
    np.testing.assert_array_equal(module.datasets["val"][0]["image"].numpy(), expected)
    # the spec round-trips through the plugin's metadata reader
    assert ModelSpec.from_metadata(spec.to_metadata()) == spec


def test_measured_mean_and_std_are_cached(chips_folder, tmp_path):
    module = ChipsDataModule(str(chips_folder), cache_dir=str(tmp_path))
    module.setup("fit")
    images = np.stack([module.datasets["train"].reader(i)[0] for i in module.datasets["train"].items]) / 255.0
    np.testing.assert_allclose(
        module.model_spec().standardization_mean, images.mean(axis=(0, 2, 3)), rtol=1e-6
    )
    np.testing.assert_allclose(module.model_spec().standardization_std, images.std(axis=(0, 2, 3)), rtol=1e-5)
    assert len(list(tmp_path.rglob("bands.json"))) == 1


def test_chips_classification_batches_and_weights(chips_folder, tmp_path):
    module = ChipsDataModule(str(chips_folder), task="classification", batch_size=3, cache_dir=str(tmp_path))
    module.setup("fit")
    assert len(module.datasets["train"]) == 7  # the chip with two classes is ambiguous: no class folder
    batch = next(iter(module.val_dataloader()))
    assert set(batch) == {"image", "label"} and batch["label"].dtype == torch.int64
    counts = {0: 2, 1: 3, 2: 2}
    assert module.train_counts() == counts
    expected = ClassStatistics(255, counts=counts).suggested_weights([0, 1, 2])
    assert module.class_weights() == pytest.approx([expected[v] for v in (0, 1, 2)])


def test_class_weights_come_from_the_exported_statistics(chips_folder, tmp_path):
    module = ChipsDataModule(str(chips_folder), cache_dir=str(tmp_path))
    rows = module.document["statistics"]["train"]["classes"]
    expected = {row["value"]: row["weight"] for row in rows}
    assert module.class_weights() == pytest.approx([expected[v] for v in (0, 1, 2)], rel=1e-5)


def test_bands_select_and_order_the_chip_bands(chips_folder, tmp_path):
    module = ChipsDataModule(
        str(chips_folder), bands=[3, 1], augment=False, mean=[0.0], std=[1.0], cache_dir=str(tmp_path)
    )
    module.setup("fit")
    assert module.in_channels == 2 and module.model_spec().bands == (3, 1)
    image_path, _ = module.datasets["train"].items[0]
    with rasterio.open(image_path) as source:
        expected = source.read([3, 1]) / 255.0
    np.testing.assert_allclose(module.datasets["train"][0]["image"].numpy(), expected, rtol=1e-6)
    with pytest.raises(RsdlError, match=r"bands \[4\] do not exist"):
        ChipsDataModule(str(chips_folder), bands=[4], cache_dir=str(tmp_path))
