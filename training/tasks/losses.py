"""Losses by name, each honouring the ignore index (sparse labels train only where labelled).

``loss`` is a name or a sum of names: ``ce``, ``focal``, ``dice``, ``ce+dice``, ``focal+dice``.
Segmentation modes: "multiclass" (logits (N, C, H, W), targets (N, H, W) of indices) and
"binary" (one logit channel, targets 0/1). Classification uses ``ce`` or ``focal`` on (N, C).
Cross-entropy takes class weights (``set_class_weights``); focal and dice come from
segmentation-models-pytorch, which drops ignored pixels before reducing.
"""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss
from torch import nn
from torch.nn import functional

LOSS_NAMES = ("ce", "focal", "dice")
MODES = ("multiclass", "binary")


class CrossEntropy(nn.Module):
    """Weighted cross-entropy (softmax, or sigmoid for one channel) over non-ignored targets.

    A batch without any labelled target gives a zero loss (connected to the graph), not NaN.
    """

    def __init__(self, num_classes: int, ignore_index: int, binary: bool = False) -> None:
        super().__init__()
        self.ignore_index, self.binary = ignore_index, binary
        # Not in the state dict: weights come from the data at each fit, not from a checkpoint.
        self.register_buffer("class_weight", torch.ones(num_classes), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labelled = target != self.ignore_index
        if not labelled.any():
            return logits.sum() * 0.0
        if not self.binary:
            return functional.cross_entropy(
                logits, target, weight=self.class_weight, ignore_index=self.ignore_index
            )
        logit = logits[:, 0][labelled]
        positive = target[labelled].to(logit.dtype)
        weight = self.class_weight[target[labelled]]
        return (
            functional.binary_cross_entropy_with_logits(logit, positive, reduction="none") * weight
        ).sum() / weight.sum()


class _SmpLoss(nn.Module):
    """An smp loss with binary targets shaped (N, 1, H, W), and zero for all-ignored batches."""

    def __init__(self, loss: nn.Module, ignore_index: int, binary: bool) -> None:
        super().__init__()
        self.loss, self.ignore_index, self.binary = loss, ignore_index, binary

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target != self.ignore_index).any():
            return logits.sum() * 0.0  # smp's focal would average over nothing: NaN
        if self.binary and target.ndim == logits.ndim - 1:
            target = target.unsqueeze(1)
        return self.loss(logits, target)


class SumOfLosses(nn.Module):
    def __init__(self, losses: list[nn.Module]) -> None:
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(loss(logits, target) for loss in self.losses)


def build_loss(
    name: str,
    num_classes: int,
    ignore_index: int,
    mode: str = "multiclass",
    focal_gamma: float = 2.0,
    segmentation: bool = True,
) -> nn.Module:
    """The loss ``name`` (e.g. "ce+dice") for ``num_classes`` classes."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    parts = [part.strip() for part in name.lower().split("+")]
    unknown = [part for part in parts if part not in LOSS_NAMES]
    if unknown or not parts:
        raise ValueError(f"Unknown loss {name!r}: combine {LOSS_NAMES} with '+', e.g. 'ce+dice'.")
    if "dice" in parts and not segmentation:
        raise ValueError("The dice loss is for segmentation; classification takes 'ce' or 'focal'.")
    binary = mode == "binary"
    built: list[nn.Module] = []
    for part in parts:
        if part == "ce":
            built.append(CrossEntropy(num_classes, ignore_index, binary))
        elif part == "focal":
            built.append(
                _SmpLoss(FocalLoss(mode, gamma=focal_gamma, ignore_index=ignore_index), ignore_index, binary)
            )
        else:
            built.append(
                _SmpLoss(DiceLoss(mode, from_logits=True, ignore_index=ignore_index), ignore_index, binary)
            )
    return built[0] if len(built) == 1 else SumOfLosses(built)


def set_class_weights(loss: nn.Module, weights: torch.Tensor) -> None:
    """Give every cross-entropy term of ``loss`` these per-class weights."""
    for module in loss.modules():
        if isinstance(module, CrossEntropy):
            module.class_weight.copy_(weights.to(module.class_weight))
