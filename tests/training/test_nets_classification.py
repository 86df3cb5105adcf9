"""Classification nets (training/nets/classification.py): any band count, a new head, batch norm that
catches up when trained from scratch."""

from __future__ import annotations

import math

import pytest
import torch

from training.nets import BACKBONES, build_classifier


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet_b0", "mobilenet_v2", "mobilenet_v3_small"])
def test_classifiers_take_any_band_count(backbone):
    net = build_classifier(backbone, in_channels=5, num_classes=4).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 5, 64, 64)).shape == (2, 4)


@pytest.mark.parametrize("backbone", ["mobilenet_v3_small", "efficientnet_b0"])
def test_from_scratch_batch_norm_statistics_catch_up_within_a_short_run(backbone):
    # Regression: with torchvision's momentum 0.01 the running mean is ~26 % of the data's after
    # 30 steps, and a from-scratch net predicts one class in eval mode.
    net = build_classifier(backbone, in_channels=3, num_classes=2).train()
    first_norm = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    batch = torch.randn(4, 3, 32, 32) + 5.0
    with torch.no_grad():
        for _ in range(30):
            net(batch)
        conv = net.features[0][0]
        batch_mean = conv(batch).mean(dim=(0, 2, 3))
    assert torch.allclose(first_norm.running_mean, batch_mean, rtol=0.1, atol=0.05)


def test_unknown_backbones_are_refused():
    assert "resnet18" in BACKBONES and "vgg16" not in BACKBONES
    with pytest.raises(ValueError, match="Unknown backbone 'vgg16'"):
        build_classifier("vgg16", in_channels=3, num_classes=2)


@pytest.mark.parametrize(
    ("backbone", "weights"),
    [
        ("resnet18", None),
        ("mobilenet_v2", None),
        ("tf_efficientnet_lite0", None),
        ("tf_efficientnet_lite0", "imagenet-efficientnet-lite0"),
    ],
)
def test_a_new_head_starts_undecided(backbone, weights):
    """A fresh 2-class head starts near ln 2 (torchvision's ResNet-18 leans one way a little, about
    1.0). timm's own EfficientNet head init gave logits of about 10 and a first loss of 3.5, which a
    frozen backbone's head spent its first epochs undoing."""
    torch.manual_seed(0)
    net = build_classifier(backbone, 3, 2, weights).eval()
    with torch.no_grad():
        logits = net(torch.randn(8, 3, 128, 128))
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 2, (8,)))
    assert logits.abs().max() < 2.0 and abs(loss.item() - math.log(2)) < 0.5, (logits, loss)
