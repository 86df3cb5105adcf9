"""Object augmentation (training/data/objects_augment.py): boxes and masks stay on their objects.

Oracles: numpy's flips and rotations of the masks, and each moved mask's own bounding box."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import ObjectAugment
from training.data.objects_augment import move_boxes
from training.data.transforms import Move


def _mask_box(mask: np.ndarray) -> list[float]:
    """Pixel-edge bounding box (x1, y1, x2, y2) of a binary mask."""
    rows, cols = np.nonzero(mask)
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def _sample(height: int = 40, width: int = 40) -> dict[str, torch.Tensor]:
    """Three objects (a rectangle, an L, a one-pixel object) whose boxes are their masks' boxes;
    band 0 numbers the pixels so the image's move can be checked too."""
    masks = np.zeros((3, height, width), dtype=np.uint8)
    masks[0, 3:9, 5:20] = 1
    masks[1, 20:35, 2:6] = 1
    masks[1, 31:35, 2:15] = 1
    masks[2, height - 1, width - 1] = 1
    numbers = np.arange(height * width, dtype=np.float32).reshape(height, width)
    image = np.stack([numbers, np.ones_like(numbers), numbers % 7])
    return {
        "image": torch.from_numpy(image),
        "boxes": torch.tensor([_mask_box(m) for m in masks], dtype=torch.float32),
        "class_ids": torch.tensor([0, 1, 0]),
        "masks": torch.from_numpy(masks),
    }


def _numpy_move(array: np.ndarray, move: Move) -> np.ndarray:
    """The same move with numpy (np.rot90 turns from the first axis towards the second, as torch)."""
    if move.flip_h:
        array = np.flip(array, axis=-1)
    if move.flip_v:
        array = np.flip(array, axis=-2)
    return np.rot90(array, move.turns, axes=(-2, -1))


MOVES = [Move(h, v, t) for h in (False, True) for v in (False, True) for t in range(4)]


@pytest.mark.parametrize("move", MOVES, ids=str)
def test_every_move_matches_numpy_and_keeps_boxes_on_masks(move):
    sample = _sample(40, 40)
    masks = move.apply(sample["masks"]).numpy()
    np.testing.assert_array_equal(masks, _numpy_move(sample["masks"].numpy(), move))
    boxes = move_boxes(sample["boxes"], move, 40, 40)
    assert boxes.tolist() == [_mask_box(m) for m in masks]


@pytest.mark.parametrize("move", [m for m in MOVES if m.turns == 0], ids=str)
def test_flips_of_non_square_images_keep_boxes_on_masks(move):
    sample = _sample(24, 40)
    masks = move.apply(sample["masks"]).numpy()
    np.testing.assert_array_equal(masks, _numpy_move(sample["masks"].numpy(), move))
    assert move_boxes(sample["boxes"], move, 40, 24).tolist() == [_mask_box(m) for m in masks]


def test_fractional_boxes_map_exactly():
    box = torch.tensor([[1.25, 2.5, 10.75, 4.0]])
    # one turn: (x, y) -> (y, W - x)
    assert move_boxes(box, Move(False, False, 1), 16, 16).tolist() == [[2.5, 5.25, 4.0, 14.75]]
    assert move_boxes(box, Move(True, True, 0), 16, 16).tolist() == [[5.25, 12.0, 14.75, 13.5]]
    assert move_boxes(box, Move(False, False, 4), 16, 16).tolist() == box.tolist()


@pytest.mark.parametrize("seed", range(16))
def test_augment_moves_image_masks_and_boxes_together(seed):
    sample = _sample()
    out = ObjectAugment(brightness=0.0, contrast=0.0)(sample, torch.Generator().manual_seed(seed))
    masks = out["masks"].numpy()
    assert out["boxes"].tolist() == [_mask_box(m) for m in masks]
    assert torch.equal(out["class_ids"], sample["class_ids"])
    # the pixel each mask covers carries the same numbers as before the move
    numbers = sample["image"][0].numpy()
    for before, after in zip(sample["masks"].numpy(), masks):
        moved = out["image"][0].numpy()[after.astype(bool)]
        assert sorted(moved.tolist()) == sorted(numbers[before.astype(bool)].tolist())


def test_all_eight_orientations_occur():
    seen = set()
    for seed in range(64):
        out = ObjectAugment(brightness=0.0, contrast=0.0)(_sample(), torch.Generator().manual_seed(seed))
        seen.add(tuple(out["boxes"][0].tolist()))
    assert len(seen) == 8


def test_jitter_changes_the_image_only():
    sample = _sample()
    out = ObjectAugment(flips=False, rotate90=False, brightness=0.5, contrast=0.5)(
        sample, torch.Generator().manual_seed(3)
    )
    assert not torch.equal(out["image"], sample["image"])
    assert torch.equal(out["masks"], sample["masks"]) and torch.equal(out["boxes"], sample["boxes"])


def test_boxes_only_samples_and_empty_samples():
    sample = _sample()
    del sample["masks"]
    sample["boxes"] = sample["boxes"][:0]
    out = ObjectAugment()(sample, torch.Generator().manual_seed(0))
    assert out["boxes"].shape == (0, 4) and "masks" not in out
