"""Augmentation moves image and mask together; jitter touches the image only."""

from __future__ import annotations

import pytest
import torch

from training.data import Augment


def _sample() -> dict[str, torch.Tensor]:
    """Band 0 numbers the pixels; the mask holds the same numbers (so pixel i stays label i)."""
    numbers = torch.arange(16 * 16).reshape(16, 16)
    image = torch.stack([numbers.float(), torch.rand(16, 16), torch.rand(16, 16)])
    return {"image": image, "mask": numbers.clone()}


@pytest.mark.parametrize("seed", range(12))
def test_image_and_mask_get_the_same_geometry(seed):
    sample = _sample()
    out = Augment(brightness=0.0, contrast=0.0)(sample, torch.Generator().manual_seed(seed))
    assert torch.equal(out["image"][0].long(), out["mask"])
    assert sorted(out["mask"].flatten().tolist()) == list(range(256))  # a permutation: nothing lost


def test_all_eight_orientations_occur():
    seen = set()
    for seed in range(64):
        out = Augment(brightness=0.0, contrast=0.0)(_sample(), torch.Generator().manual_seed(seed))
        seen.add(tuple(out["mask"][[0, 0, 15], [0, 15, 0]].tolist()))
    assert len(seen) == 8


@pytest.mark.parametrize("seed", range(8))
def test_jitter_changes_the_image_only_and_keeps_pixel_order(seed):
    sample = _sample()
    out = Augment(brightness=0.5, contrast=0.5)(sample, torch.Generator().manual_seed(seed))
    assert not torch.equal(out["image"], sample["image"])
    # brightness and contrast are increasing maps: the ranking of band 0 still equals the mask's
    assert torch.equal(out["image"][0].flatten().argsort(), out["mask"].flatten().argsort())
    assert out["mask"].dtype == torch.int64


def test_non_square_images_are_not_rotated():
    sample = {
        "image": torch.arange(2 * 8 * 4).float().reshape(2, 8, 4),
        "mask": torch.zeros(8, 4, dtype=torch.long),
    }
    for seed in range(10):
        out = Augment()(sample, torch.Generator().manual_seed(seed))
        assert out["image"].shape == (2, 8, 4) and out["mask"].shape == (8, 4)
