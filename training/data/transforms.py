"""Augmentation of training samples: flips, 90° rotations and photometric jitter.

Geometric operations are drawn once per sample and applied to the image and to the mask alike,
so labels stay on their pixels; jitter changes the image only. The image is the normalised float
tensor (C, H, W), so jitter works in units of standard deviations whatever the sensor's range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SPATIAL_KEYS = ("image", "mask")


@dataclass(frozen=True)
class Move:
    """Flip left-right, then flip up-down, then rotate by ``turns`` x 90° (torch.rot90's sense)."""

    flip_h: bool
    flip_v: bool
    turns: int

    def apply(self, tensor: torch.Tensor) -> torch.Tensor:
        """The move on the last two (row, column) dimensions of a tensor."""
        if self.flip_h:
            tensor = torch.flip(tensor, dims=(-1,))
        if self.flip_v:
            tensor = torch.flip(tensor, dims=(-2,))
        if self.turns:
            tensor = torch.rot90(tensor, self.turns, dims=(-2, -1))
        return tensor.contiguous()


@dataclass(frozen=True)
class Augment:
    """Random horizontal/vertical flips, k·90° rotations, brightness and contrast jitter.

    ``brightness`` is the largest shift added to every band, ``contrast`` the largest relative
    change of the spread around each band's mean (0 turns either off).
    """

    flips: bool = True
    rotate90: bool = True
    brightness: float = 0.1
    contrast: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.contrast < 1.0:
            raise ValueError(f"contrast jitter must lie in [0, 1), got {self.contrast}.")
        if self.brightness < 0.0:
            raise ValueError(f"brightness jitter must not be negative, got {self.brightness}.")

    def __call__(self, sample: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict:
        out = dict(sample)
        move = self.draw(out["image"], generator)
        for key in SPATIAL_KEYS:
            if key in out:
                out[key] = move.apply(out[key])
        out["image"] = self._jitter(out["image"], generator)
        return out

    def draw(self, image: torch.Tensor, generator: torch.Generator | None = None) -> Move:
        """The geometric operations of one sample (rotations only for square images)."""
        square = image.shape[-1] == image.shape[-2]
        flip_h, flip_v = (torch.rand(2, generator=generator) < 0.5).tolist() if self.flips else (False, False)
        turns = int(torch.randint(0, 4, (1,), generator=generator)) if self.rotate90 and square else 0
        return Move(bool(flip_h), bool(flip_v), turns)

    def _jitter(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not self.brightness and not self.contrast:
            return image
        low_high = torch.rand(2, generator=generator) * 2.0 - 1.0
        shift = float(low_high[0]) * self.brightness
        factor = 1.0 + float(low_high[1]) * self.contrast  # stays positive: pixel order is kept
        mean = image.mean(dim=(-2, -1), keepdim=True)
        return (image - mean) * factor + mean + shift
