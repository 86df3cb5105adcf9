"""Sample prediction grids (training/reports/samples.py): PNGs that PIL decodes, a row per
segmentation sample, tiles for classification."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsdl_qgis_plugin.core.contract.model_spec import ModelSpec
from training.reports.samples import Sample, write_sample_grid

SPEC = ModelSpec(class_names={0: "background", 1: "building"}, standardization_mean=(0.5,))


def _size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        image.load()  # decodes every pixel
        assert image.format == "PNG"
        return image.size


def test_segmentation_grids_grow_a_row_per_sample(tmp_path):
    rng = np.random.default_rng(0)
    reference = np.zeros((16, 16), dtype=np.int64)
    reference[4:8, 4:8] = 1
    reference[0, 0] = -100  # ignored: left clear
    samples = [
        Sample(rng.normal(size=(3, 16, 16)).astype(np.float32), reference, reference.clip(0))
        for _ in range(3)
    ]
    one = _size(write_sample_grid(samples[:1], SPEC, 2, tmp_path / "one.png"))
    three = _size(write_sample_grid(samples, SPEC, 2, tmp_path / "three.png"))
    assert three[0] == one[0] and three[1] > 2 * one[1]


def test_classification_grids_draw_tiles(tmp_path):
    image = np.zeros((1, 8, 8), dtype=np.float32)  # one band: shown as grey
    samples = [Sample(image, 0, 0), Sample(image, 1, 0), Sample(image, 1, 1)]
    width, height = _size(write_sample_grid(samples, SPEC, 2, tmp_path / "grid.png"))
    assert width > height  # three tiles side by side
    with pytest.raises(ValueError, match="No samples"):
        write_sample_grid([], SPEC, 2, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
