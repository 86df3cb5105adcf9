"""Augmentation of object samples: the image, its instance masks and its boxes move together.

The geometric draw is ``transforms.Augment``'s (flips, 90° rotations of square images); images
and masks are moved by the same tensor operations, and boxes by the exact maps of those
operations in pixel-edge coordinates (x = column, y = row, the image spans [0, W] x [0, H]):
a left-right flip sends x to W - x, an up-down flip y to H - y, and one torch.rot90 turn
(k = 1 on the row and column axes) sends (x, y) to (y, W - x). Photometric jitter changes the
image only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .transforms import Augment, Move


def move_boxes(boxes: torch.Tensor, move: Move, width: int, height: int) -> torch.Tensor:
    """(N, 4) x1, y1, x2, y2 boxes of a ``width`` x ``height`` image after ``move``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    if move.flip_h:
        x1, x2 = width - x2, width - x1
    if move.flip_v:
        y1, y2 = height - y2, height - y1
    for _ in range(move.turns % 4):
        x1, y1, x2, y2 = y1, width - x2, y2, width - x1
        width, height = height, width
    return torch.stack([x1, y1, x2, y2], dim=-1).contiguous()


@dataclass(frozen=True)
class ObjectAugment(Augment):
    """``Augment`` for object samples: "image" (C, H, W), "boxes" (N, 4), "masks" (N, H, W) if any."""

    def __call__(self, sample: dict, generator: torch.Generator | None = None) -> dict:
        out = dict(sample)
        image = out["image"]
        height, width = image.shape[-2:]
        move = self.draw(image, generator)
        out["image"] = move.apply(image)
        if "masks" in out:
            out["masks"] = move.apply(out["masks"])
        out["boxes"] = move_boxes(out["boxes"], move, width, height)
        out["image"] = self._jitter(out["image"], generator)
        return out
