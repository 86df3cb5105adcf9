"""Losses: ignored pixels contribute nothing (value or gradient); class weights reach the CE term."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from training.data import IGNORE_INDEX
from training.tasks.losses import build_loss, set_class_weights

LOSSES = ("ce", "focal", "dice", "ce+dice", "focal+dice")


def _batch(mode: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    classes = 2 if mode == "binary" else 4
    logits = torch.randn(2, 1 if mode == "binary" else classes, 8, 8, generator=generator)
    target = torch.randint(0, classes, (2, 8, 8), generator=generator)
    ignored = torch.rand(2, 8, 8, generator=generator) < 0.6  # sparse labels: most pixels unknown
    return logits, target.masked_fill(ignored, IGNORE_INDEX), ignored


@pytest.mark.parametrize("mode", ["multiclass", "binary"])
@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_get_zero_gradient(name, mode):
    logits, target, ignored = _batch(mode)
    logits.requires_grad_(True)
    loss = build_loss(name, 2 if mode == "binary" else 4, IGNORE_INDEX, mode)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value)
    gradient = logits.grad.abs().sum(dim=1)
    assert (gradient[ignored] == 0).all()
    assert (gradient[~ignored] > 0).any()
    # and the loss does not depend on what is predicted there
    changed = logits.detach().clone()
    changed[ignored.unsqueeze(1).expand_as(changed)] = 50.0
    assert torch.allclose(loss(changed, target), value.detach())


@pytest.mark.parametrize("name", LOSSES)
def test_a_batch_without_labels_gives_zero_not_nan(name):
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    target = torch.full((2, 8, 8), IGNORE_INDEX)
    value = build_loss(name, 3, IGNORE_INDEX)(logits, target)
    value.backward()
    assert value.item() == 0.0 and (logits.grad == 0).all()


def test_class_weights_reach_cross_entropy():
    logits, target, _ = _batch("multiclass", seed=3)
    loss = build_loss("ce+dice", 4, IGNORE_INDEX)
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    set_class_weights(loss, weights)
    ce_term = loss.losses[0](logits, target)
    expected = functional.cross_entropy(logits, target, weight=weights, ignore_index=IGNORE_INDEX)
    assert torch.allclose(ce_term, expected)


def test_unknown_and_misplaced_losses_are_refused():
    with pytest.raises(ValueError, match="Unknown loss"):
        build_loss("ce+lovasz", 3, IGNORE_INDEX)
    with pytest.raises(ValueError, match="segmentation"):
        build_loss("dice", 3, IGNORE_INDEX, segmentation=False)
